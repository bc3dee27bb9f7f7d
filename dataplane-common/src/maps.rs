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

/// Service frontends ([`crate::Lb4Key`] -> [`crate::Lb4Service`]). Hash, no preallocation
/// (replaced elements are freed after an RCU grace period, so a reader never sees an element
/// reused by a concurrent update).
pub const LB4_SERVICES: &str = "LB4_SERVICES";
/// Frontends: 65536 is the most 16-bit `rev_nat_id`s can name.
pub const LB4_SERVICES_MAX_ENTRIES: u32 = 65536;
/// Backend slots ([`crate::Lb4SlotKey`] -> [`crate::Lb4Slot`]). Hash, no preallocation.
pub const LB4_SLOTS: &str = "LB4_SLOTS";
pub const LB4_SLOTS_MAX_ENTRIES: u32 = 262144;
/// Backends (`u32` id -> [`crate::Lb4Backend`]). Hash, no preallocation.
pub const LB4_BACKENDS: &str = "LB4_BACKENDS";
pub const LB4_BACKENDS_MAX_ENTRIES: u32 = 131072;
/// Reverse NAT (`u16` rev_nat_id -> [`crate::Lb4RevNat`]). Hash, no preallocation.
pub const LB4_REVNAT: &str = "LB4_REVNAT";
pub const LB4_REVNAT_MAX_ENTRIES: u32 = 65536;
/// sessionAffinity ClientIP ([`crate::Lb4AffinityKey`] -> [`crate::Lb4Affinity`]). LRU hash.
pub const LB4_AFFINITY: &str = "LB4_AFFINITY";
pub const LB4_AFFINITY_MAX_ENTRIES: u32 = 65536;
/// Socket-level reverse NAT ([`crate::Lb4SockKey`] -> [`crate::Lb4SockRevNat`]). LRU hash.
pub const LB4_SOCK_REVNAT: &str = "LB4_SOCK_REVNAT";
pub const LB4_SOCK_REVNAT_MAX_ENTRIES: u32 = 65536;
/// Socket-level backend choice per (socket, Service) ([`crate::Lb4SockKey`] ->
/// [`crate::Lb4SockFwd`]). LRU hash.
pub const LB4_SOCK_FWD: &str = "LB4_SOCK_FWD";
pub const LB4_SOCK_FWD_MAX_ENTRIES: u32 = 65536;
/// Connection tracking ([`crate::Ct4Key`] -> [`crate::Ct4Value`]). LRU hash, two entries per
/// translated flow.
#[cfg(not(feature = "layout-bump"))]
pub const CT4: &str = "CT4";
/// The test build's `CT4` (feature `layout-bump`): values 8 bytes longer, so another name.
#[cfg(feature = "layout-bump")]
pub const CT4: &str = "CT4_V2";
/// The other layout of `CT4` whose pinned entries this build carries over (an upgrade from, or
/// a rollback from, the `layout-bump` test build): its map name and value size. Its values
/// share their leading bytes with this build's; the rest is zero or dropped.
#[cfg(not(feature = "layout-bump"))]
pub const CT4_OTHER_LAYOUT: (&str, usize) = ("CT4_V2", 40);
#[cfg(feature = "layout-bump")]
pub const CT4_OTHER_LAYOUT: (&str, usize) = ("CT4", 32);
pub const CT4_MAX_ENTRIES: u32 = 131072;

/// Per-CPU array indexed by [`crate::LbCounter`] number -> count.
pub const LB4_STATS: &str = "LB4_STATS";
/// Fixed, like `DROP_STATS`, so appending a counter never resizes the pinned map.
pub const LB4_STATS_MAX_ENTRIES: u32 = 16;

/// `BPF_F_NO_PREALLOC`, the map flag of the agent-written hash maps.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// Other nodes' pod CIDRs (LPM trie, key `{prefix_len, [u8; 4]}`) -> how to reach that node
/// ([`crate::NodeRoute4Value`]). Written only by the agent's routing reconciler.
pub const NODE_ROUTES4: &str = "NODE_ROUTES4";
/// Capacity of [`NODE_ROUTES4`]: nodes in the cluster (Kubernetes supports 5,000).
pub const NODE_ROUTES4_MAX_ENTRIES: u32 = 16384;

/// Addresses -> identities for NetworkPolicy (LPM trie, key `{prefix_len, [u8; 4]}`, value
/// [`crate::IpCache4Value`]): every pod, this node's addresses, every policy prefix.
pub const IPCACHE4: &str = "IPCACHE4";
/// Pods of the cluster plus policy prefixes (the Kubernetes limit is 150,000 pods).
pub const IPCACHE4_MAX_ENTRIES: u32 = 262144;
/// Allowed {policy id, direction, peer, protocol, port block} (LPM trie, key
/// `{prefix_len, `[`crate::Policy4Data`]`}`, value [`crate::Policy4Value`]).
pub const POLICY4: &str = "POLICY4";
/// Entries of every local endpoint, twice during a make-before-break switch.
pub const POLICY4_MAX_ENTRIES: u32 = 1 << 20;
/// Local pods NetworkPolicy tracks ([`crate::Endpoint4Key`] -> [`crate::PolicyEp4Value`]).
/// Hash, no preallocation. A pod without an entry is judged by nothing (one lookup).
pub const POLICY_EP4: &str = "POLICY_EP4";
pub const POLICY_EP4_MAX_ENTRIES: u32 = ENDPOINTS4_MAX_ENTRIES;

/// Array with one [`crate::DpConfig`] at index 0: node-wide datapath settings.
pub const DP_CONFIG: &str = "DP_CONFIG";

/// tc ingress program on the host side of every pod veth.
pub const PROG_FROM_POD: &str = "from_pod";
/// tc egress program on the host side of every pod veth: reverse NAT of what the stack
/// delivers to the pod.
pub const PROG_TO_POD: &str = "to_pod";
/// tc ingress program on the node's uplink: traffic from other nodes to local pods.
pub const PROG_FROM_NETDEV: &str = "from_netdev";
/// tc ingress program on the VXLAN device: decapsulated traffic to local pods.
pub const PROG_FROM_OVERLAY: &str = "from_overlay";
/// tc egress program on the VXLAN device: sets the tunnel key of packets the node's stack
/// routes into the tunnel (the node's own traffic to remote pods).
pub const PROG_TO_OVERLAY: &str = "to_overlay";
/// Test entry point of the uplink's Service path (`lb::netdev` + local delivery), run only by
/// `BPF_PROG_TEST_RUN`; the node uplink's own program calls the same functions.
pub const PROG_NETDEV_LB: &str = "netdev_lb";
/// Socket-level load balancing (cgroup sock_addr programs).
pub const PROG_SOCK4_CONNECT: &str = "sock4_connect";
pub const PROG_SOCK4_SENDMSG: &str = "sock4_sendmsg";
pub const PROG_SOCK4_RECVMSG: &str = "sock4_recvmsg";
pub const PROG_SOCK4_GETPEER: &str = "sock4_getpeer";

/// Every pinned map name, for listing and cleanup.
pub const ALL_MAPS: &[&str] = &[
    ENDPOINTS4,
    DROP_STATS,
    LB4_SERVICES,
    LB4_SLOTS,
    LB4_BACKENDS,
    LB4_REVNAT,
    LB4_AFFINITY,
    LB4_SOCK_REVNAT,
    LB4_SOCK_FWD,
    CT4,
    LB4_STATS,
    NODE_ROUTES4,
    DP_CONFIG,
    IPCACHE4,
    POLICY4,
    POLICY_EP4,
];

const fn fits_obj_name(name: &str) -> bool {
    name.len() <= 15
}
const _: () = assert!(fits_obj_name(ENDPOINTS4));
const _: () = assert!(fits_obj_name(DROP_STATS));
const _: () = assert!(fits_obj_name(PROG_FROM_POD));
const _: () = {
    let mut i = 0;
    while i < ALL_MAPS.len() {
        assert!(fits_obj_name(ALL_MAPS[i]));
        i += 1;
    }
    let progs = [
        PROG_FROM_POD,
        PROG_TO_POD,
        PROG_FROM_NETDEV,
        PROG_FROM_OVERLAY,
        PROG_TO_OVERLAY,
        PROG_NETDEV_LB,
        PROG_SOCK4_CONNECT,
        PROG_SOCK4_SENDMSG,
        PROG_SOCK4_RECVMSG,
        PROG_SOCK4_GETPEER,
    ];
    let mut i = 0;
    while i < progs.len() {
        assert!(fits_obj_name(progs[i]));
        i += 1;
    }
};
