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

/// tc ingress program on the host side of every pod veth.
pub const PROG_FROM_POD: &str = "from_pod";

/// Every pinned map name, for listing and cleanup.
pub const ALL_MAPS: &[&str] = &[ENDPOINTS4, DROP_STATS];

const fn fits_obj_name(name: &str) -> bool {
    name.len() <= 15
}
const _: () = assert!(fits_obj_name(ENDPOINTS4));
const _: () = assert!(fits_obj_name(DROP_STATS));
const _: () = assert!(fits_obj_name(PROG_FROM_POD));
