//! The tc programs of the embedded object: their names and where each is attached.

use aya::programs::TcAttachType;
use dataplane_common::maps::{
    PROG_FROM_NETDEV, PROG_FROM_OVERLAY, PROG_FROM_POD, PROG_TO_OVERLAY, PROG_TO_POD,
};

/// One tc program of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prog {
    /// Ingress of every pod's host-side veth.
    FromPod,
    /// Egress of every pod's host-side veth.
    ToPod,
    /// Ingress of the node's uplink.
    FromNetdev,
    /// Ingress of the VXLAN device.
    FromOverlay,
    /// Egress of the VXLAN device.
    ToOverlay,
}

impl Prog {
    pub const ALL: [Prog; 5] = [
        Prog::FromPod,
        Prog::ToPod,
        Prog::FromNetdev,
        Prog::FromOverlay,
        Prog::ToOverlay,
    ];

    /// The program's name in the object, its pin name and its link pins' prefix.
    pub const fn name(self) -> &'static str {
        match self {
            Prog::FromPod => PROG_FROM_POD,
            Prog::ToPod => PROG_TO_POD,
            Prog::FromNetdev => PROG_FROM_NETDEV,
            Prog::FromOverlay => PROG_FROM_OVERLAY,
            Prog::ToOverlay => PROG_TO_OVERLAY,
        }
    }

    pub const fn attach_type(self) -> TcAttachType {
        match self {
            Prog::ToOverlay | Prog::ToPod => TcAttachType::Egress,
            _ => TcAttachType::Ingress,
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}
