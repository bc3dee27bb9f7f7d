//! The map definitions. Static names equal `dataplane_common::maps` constants (the agent's
//! packet tests fail otherwise); all are pinned by name under the agent's bpffs directory.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use dataplane_common::{
    maps::{DROP_STATS_MAX_ENTRIES, ENDPOINTS4_MAX_ENTRIES, NODE_ROUTES4_MAX_ENTRIES},
    DpConfig, Endpoint4Key, Endpoint4Value, NodeRoute4Value,
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
