//! The map definitions. Static names equal `dataplane_common::maps` constants (the agent's
//! packet tests fail otherwise); all are pinned by name under the agent's bpffs directory.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use dataplane_common::{
    maps::{DROP_STATS_MAX_ENTRIES, ENDPOINTS4_MAX_ENTRIES},
    Endpoint4Key, Endpoint4Value,
};

/// Local pods by IPv4 address; written only by the agent.
#[map]
pub static ENDPOINTS4: HashMap<Endpoint4Key, Endpoint4Value> =
    HashMap::pinned(ENDPOINTS4_MAX_ENTRIES, 0);

/// Packets dropped, per CPU, indexed by `DropReason` number.
#[map]
pub static DROP_STATS: PerCpuArray<u64> = PerCpuArray::pinned(DROP_STATS_MAX_ENTRIES, 0);
