//! `NODE_ROUTES4` value: where to send traffic for another node's pod CIDR.
//!
//! The key is an LPM trie key, `{prefix_len: u32, data: [u8; 4]}` (the pod CIDR, address in
//! header byte order), spelled by aya on each side (`maps::lpm_trie::Key<[u8; 4]>`).

use core::mem::size_of;

/// Bit in [`NodeRoute4Value::flags`]: reach the node through the VXLAN device (tunnel key =
/// the node's address) instead of natively through the uplink.
pub const NODE_ROUTE_F_TUNNEL: u32 = 1;

/// Value of `NODE_ROUTES4`.
///
/// Layout (12 bytes, align 4): `node_ip_be` 0..4, `ifindex` 4..8, `flags` 8..12.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeRoute4Value {
    /// The node's underlay address (its InternalIP), network byte order: the next hop in native
    /// mode, the tunnel's remote end in VXLAN mode.
    pub node_ip_be: [u8; 4],
    /// Native mode: the uplink's ifindex, target of `bpf_redirect_neigh`. VXLAN mode: 0 (the
    /// device is in `DpConfig::vxlan_ifindex`).
    pub ifindex: u32,
    /// Bit set of `NODE_ROUTE_F_*`.
    pub flags: u32,
}
const _: () = assert!(size_of::<NodeRoute4Value>() == 12);
const _: () = assert!(core::mem::align_of::<NodeRoute4Value>() == 4);

impl NodeRoute4Value {
    pub const fn is_tunnel(&self) -> bool {
        self.flags & NODE_ROUTE_F_TUNNEL != 0
    }
}

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` data without implicit padding (asserted above).
unsafe impl aya::Pod for NodeRoute4Value {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn node_route4_value_layout_is_stable() {
        assert_eq!(offset_of!(NodeRoute4Value, node_ip_be), 0);
        assert_eq!(offset_of!(NodeRoute4Value, ifindex), 4);
        assert_eq!(offset_of!(NodeRoute4Value, flags), 8);
    }
}
