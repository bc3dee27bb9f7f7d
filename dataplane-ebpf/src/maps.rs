//! The map definitions. Static names equal `dataplane_common::maps` constants (the agent's
//! packet tests fail otherwise); all are pinned by name under the agent's bpffs directory.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use dataplane_common::{
    maps::{
        BPF_F_NO_PREALLOC, CT4_MAX_ENTRIES, CT4_OTHER_LAYOUT, DROP_STATS_MAX_ENTRIES, ENDPOINTS4_MAX_ENTRIES,
        LB4_AFFINITY_MAX_ENTRIES, LB4_BACKENDS_MAX_ENTRIES, LB4_REVNAT_MAX_ENTRIES,
        LB4_SERVICES_MAX_ENTRIES, LB4_SLOTS_MAX_ENTRIES, LB4_SOCK_FWD_MAX_ENTRIES, LB4_SOCK_REVNAT_MAX_ENTRIES,
        LB4_STATS_MAX_ENTRIES, NODE_ROUTES4_MAX_ENTRIES, IPCACHE4_MAX_ENTRIES, POLICY4_MAX_ENTRIES,
        POLICY_EP4_MAX_ENTRIES,
    },
    Ct4Key, Ct4Value, DpConfig, Endpoint4Key, Endpoint4Value, Lb4Affinity, Lb4AffinityKey,
    Lb4Backend, Lb4Key, Lb4RevNat, Lb4Service, Lb4Slot, Lb4SlotKey, Lb4SockFwd, Lb4SockKey, Lb4SockRevNat,
    NodeRoute4Value, IpCache4Value, Policy4Data, Policy4Value, PolicyEp4Value,
};

/// Local pods by IPv4 address; written only by the agent.
#[map]
pub static ENDPOINTS4: HashMap<Endpoint4Key, Endpoint4Value> =
    HashMap::pinned(ENDPOINTS4_MAX_ENTRIES, 0);

/// Packets dropped, per CPU, indexed by `DropReason` number.
#[map]
pub static DROP_STATS: PerCpuArray<u64> = PerCpuArray::pinned(DROP_STATS_MAX_ENTRIES, 0);

/// Other nodes' pod CIDRs -> the node (LPM on the destination address); written only by the
/// agent's routing reconciler.
#[map]
pub static NODE_ROUTES4: LpmTrie<[u8; 4], NodeRoute4Value> =
    LpmTrie::pinned(NODE_ROUTES4_MAX_ENTRIES, 0);

/// Node-wide settings at index 0; written by the agent when it starts.
#[map]
pub static DP_CONFIG: Array<DpConfig> = Array::pinned(1, 0);

/// Service frontends; written only by the agent (last on add, first on delete).
#[map]
pub static LB4_SERVICES: HashMap<Lb4Key, Lb4Service> =
    HashMap::pinned(LB4_SERVICES_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// Backend slots of each frontend generation; written only by the agent.
#[map]
pub static LB4_SLOTS: HashMap<Lb4SlotKey, Lb4Slot> =
    HashMap::pinned(LB4_SLOTS_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// Backends by id; written only by the agent.
#[map]
pub static LB4_BACKENDS: HashMap<u32, Lb4Backend> =
    HashMap::pinned(LB4_BACKENDS_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// Frontend address of each rev_nat_id; written only by the agent.
#[map]
pub static LB4_REVNAT: HashMap<u16, Lb4RevNat> =
    HashMap::pinned(LB4_REVNAT_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// sessionAffinity ClientIP: last backend per client and frontend; written by the datapath.
#[map]
pub static LB4_AFFINITY: LruHashMap<Lb4AffinityKey, Lb4Affinity> =
    LruHashMap::pinned(LB4_AFFINITY_MAX_ENTRIES, 0);

/// Socket hooks: the Service address behind each (socket, backend); written by `sock4_*`.
#[map]
pub static LB4_SOCK_REVNAT: LruHashMap<Lb4SockKey, Lb4SockRevNat> =
    LruHashMap::pinned(LB4_SOCK_REVNAT_MAX_ENTRIES, 0);

/// Socket hooks: the backend each (socket, Service) was sent to; written by `sock4_*`.
#[map]
pub static LB4_SOCK_FWD: LruHashMap<Lb4SockKey, Lb4SockFwd> =
    LruHashMap::pinned(LB4_SOCK_FWD_MAX_ENTRIES, 0);

/// Connection tracking of translated flows; written by the datapath. Pinned as `CT4`, or
/// `CT4_V2` in the `layout-bump` test build (its values are longer).
#[cfg_attr(not(feature = "layout-bump"), map)]
#[cfg_attr(feature = "layout-bump", map(name = "CT4_V2"))]
pub static CT4: LruHashMap<Ct4Key, Ct4Value> = LruHashMap::pinned(CT4_MAX_ENTRIES, 0);

/// The other layout's `CT4` while a migration runs (`DP_F_CT4_MIGRATING`): the map of the build
/// that ran before, when it is pinned, else a one-entry placeholder the agent unpins at once.
/// Read on a `CT4` miss only.
#[cfg_attr(not(feature = "layout-bump"), map(name = "CT4_V2"))]
#[cfg_attr(feature = "layout-bump", map(name = "CT4"))]
pub static CT4_PREV: LruHashMap<Ct4Key, [u8; CT4_OTHER_LAYOUT.1]> = LruHashMap::pinned(1, 0);

/// Service path counters, per CPU, indexed by `LbCounter` number.
#[map]
pub static LB4_STATS: PerCpuArray<u64> = PerCpuArray::pinned(LB4_STATS_MAX_ENTRIES, 0);

/// NetworkPolicy: addresses -> identities (LPM on the peer address); written only by the
/// agent's policy reconciler.
#[map]
pub static IPCACHE4: LpmTrie<[u8; 4], IpCache4Value> =
    LpmTrie::pinned(IPCACHE4_MAX_ENTRIES, 0);

/// NetworkPolicy: allowed {policy id, direction, peer, protocol, port block}; written only by
/// the agent's policy reconciler.
#[map]
pub static POLICY4: LpmTrie<Policy4Data, Policy4Value> =
    LpmTrie::pinned(POLICY4_MAX_ENTRIES, 0);

/// NetworkPolicy: local pods it tracks -> their policy id and isolation; written only by the
/// agent's policy reconciler.
#[map]
pub static POLICY_EP4: HashMap<Endpoint4Key, PolicyEp4Value> =
    HashMap::pinned(POLICY_EP4_MAX_ENTRIES, BPF_F_NO_PREALLOC);
