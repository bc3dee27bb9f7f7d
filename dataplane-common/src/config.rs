//! `DP_CONFIG`: the node-wide datapath settings, one entry written by the agent at start.

use core::mem::size_of;

/// Bit in [`DpConfig::flags`]: forward in eBPF (redirect to local pods with
/// `bpf_redirect_peer`, to other nodes with `bpf_redirect_neigh` or the tunnel). Without it
/// every program hands packets to the node's stack, which routes them with the kernel routes
/// the agent keeps: slower, but the stack's netfilter sees every packet (needed when
/// kube-proxy, not weft, translates Services).
pub const DP_F_BPF_HOST_ROUTING: u32 = 1;
/// Bit in [`DpConfig::flags`]: the programs emit aya-log debug lines (off by default).
pub const DP_F_LOG: u32 = 2;
/// Bit in [`DpConfig::flags`]: a build with another `CT4` layout ran before this one and its
/// map is still pinned (`CT4_OTHER_LAYOUT`): a `CT4` miss looks there and carries the entry
/// over, so a flow whose packets straddle the swap of a link's program keeps its translation.
/// Set from the agent's start until its migration finished (`agent::datapath::migrate`).
pub const DP_F_CT4_MIGRATING: u32 = 4;
/// Bit in [`DpConfig::flags`]: the node's kernel conntrack may hold Service connections that
/// kube-proxy translated (a switch from kube-proxy to weft, or back, is under way). A TCP
/// segment to a frontend that is not a connection's first (no SYN) and has no `CT4` entry is
/// left to the stack, whose conntrack keeps kube-proxy's translation; weft's own flows keep
/// theirs. Needs kernel host routing, so that the stack sees both directions of those flows.
pub const DP_F_HANDOFF: u32 = 8;
/// Bit in [`DpConfig::flags`]: new Service connections are the stack's (kube-proxy's), not
/// weft's: a packet to a frontend without a live `CT4` entry is left to the stack. Set while weft
/// hands a node back to kube-proxy, so the flows it translated keep their translation to the end.
pub const DP_F_KERNEL_NEW_FLOWS: u32 = 16;

/// The single value of `DP_CONFIG` (array map, index 0).
///
/// Layout (16 bytes): `flags` 0..4, `vxlan_ifindex` 4..8, `vni` 8..12, `uplink_ifindex` 12..16
/// (was padding, always 0, before the field existed: 0 still means "unknown").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpConfig {
    /// Bit set of `DP_F_*`. All zero (a map never written) means: no eBPF forwarding, no logs.
    pub flags: u32,
    /// ifindex of the VXLAN device (collect-metadata mode) in VXLAN mode, else 0.
    pub vxlan_ifindex: u32,
    /// VXLAN network identifier used for every tunnel key.
    pub vni: u32,
    /// ifindex of the node's uplink (the device holding its InternalIP), or 0 if unknown:
    /// replies whose source the datapath translated back to a node address (NodePort) leave
    /// through it directly, since the stack would drop a forwarded packet from a local source.
    pub uplink_ifindex: u32,
}
const _: () = assert!(size_of::<DpConfig>() == 16);

impl DpConfig {
    pub const fn bpf_host_routing(&self) -> bool {
        self.flags & DP_F_BPF_HOST_ROUTING != 0
    }
    pub const fn log(&self) -> bool {
        self.flags & DP_F_LOG != 0
    }
    pub const fn ct4_migrating(&self) -> bool {
        self.flags & DP_F_CT4_MIGRATING != 0
    }
    pub const fn handoff(&self) -> bool {
        self.flags & DP_F_HANDOFF != 0
    }
    pub const fn kernel_new_flows(&self) -> bool {
        self.flags & DP_F_KERNEL_NEW_FLOWS != 0
    }
}

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` data without implicit padding (asserted above).
unsafe impl aya::Pod for DpConfig {}
