//! Names and sizes of the pinned maps and programs, spelled once for both sides.
//!
//! Kernel object names are at most 15 bytes (`BPF_OBJ_NAME_LEN` is 16 with the NUL). The eBPF
//! crate names its map statics exactly like these constants (the `#[map]` macro needs a literal);
//! the agent's packet tests fail if the two ever disagree.

/// Local pod IPv4 address ([`crate::Endpoint4Key`]) -> where to deliver it
/// ([`crate::Endpoint4Value`]). Hash map, pinned by name.
pub const ENDPOINTS4: &str = "ENDPOINTS4";
/// Capacity of [`ENDPOINTS4`]: local pods on one node (Kubernetes' default limit is 110).
pub const ENDPOINTS4_MAX_ENTRIES: u32 = 4096;

/// Per-CPU array indexed by [`crate::DropReason`] number -> packets dropped for that reason.
pub const DROP_STATS: &str = "DROP_STATS";
/// Capacity of [`DROP_STATS`]. Fixed (not derived from the number of reasons in use) so that
/// appending a new reason never changes the size of the pinned map.
pub const DROP_STATS_MAX_ENTRIES: u32 = 64;

/// Other nodes' pod CIDRs (LPM trie, key `{prefix_len, [u8; 4]}`) -> how to reach that node
/// ([`crate::NodeRoute4Value`]). Written only by the agent's routing reconciler.
pub const NODE_ROUTES4: &str = "NODE_ROUTES4";
/// Capacity of [`NODE_ROUTES4`]: nodes in the cluster (Kubernetes supports 5,000).
pub const NODE_ROUTES4_MAX_ENTRIES: u32 = 16384;

/// Array with one [`crate::DpConfig`] at index 0: node-wide datapath settings.
pub const DP_CONFIG: &str = "DP_CONFIG";

/// tc ingress program on the host side of every pod veth.
pub const PROG_FROM_POD: &str = "from_pod";
/// tc ingress program on the node's uplink: traffic from other nodes to local pods.
pub const PROG_FROM_NETDEV: &str = "from_netdev";
/// tc ingress program on the VXLAN device: decapsulated traffic to local pods.
pub const PROG_FROM_OVERLAY: &str = "from_overlay";
/// tc egress program on the VXLAN device: sets the tunnel key of packets the node's stack
/// routes into the tunnel (the node's own traffic to remote pods).
pub const PROG_TO_OVERLAY: &str = "to_overlay";

/// Every pinned map name, for listing and cleanup.
pub const ALL_MAPS: &[&str] = &[ENDPOINTS4, DROP_STATS, NODE_ROUTES4, DP_CONFIG];

const fn fits_obj_name(name: &str) -> bool {
    name.len() <= 15
}
const _: () = assert!(fits_obj_name(ENDPOINTS4));
const _: () = assert!(fits_obj_name(DROP_STATS));
const _: () = assert!(fits_obj_name(PROG_FROM_POD));
const _: () = assert!(fits_obj_name(NODE_ROUTES4));
const _: () = assert!(fits_obj_name(DP_CONFIG));
const _: () = assert!(fits_obj_name(PROG_FROM_NETDEV));
const _: () = assert!(fits_obj_name(PROG_FROM_OVERLAY));
const _: () = assert!(fits_obj_name(PROG_TO_OVERLAY));
