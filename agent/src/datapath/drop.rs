//! Drop counters from `DROP_STATS` and Service path counters from `LB4_STATS`, summed over
//! CPUs and named.

use aya::maps::{MapData, PerCpuArray};
use dataplane_common::maps::{DROP_STATS, LB4_STATS};
use dataplane_common::{DropReason, LbCounter};

use super::{Datapath, DatapathError};

/// Each of `items` (index, name) summed over CPUs in the per-CPU array `map`, named `map_name`.
fn named_sums(
    map: &PerCpuArray<MapData, u64>,
    map_name: &'static str,
    items: impl Iterator<Item = (u32, &'static str)>,
) -> Result<Vec<(&'static str, u64)>, DatapathError> {
    items
        .map(|(index, name)| {
            let per_cpu = map
                .get(&index, 0)
                .map_err(|source| DatapathError::Map { name: map_name, source })?;
            Ok((name, per_cpu.iter().sum()))
        })
        .collect()
}

/// Drop counters of `DROP_STATS` for every defined reason (zeros included, in number order).
pub(super) fn drops_in(map: &PerCpuArray<MapData, u64>) -> Result<Vec<(&'static str, u64)>, DatapathError> {
    named_sums(map, DROP_STATS, DropReason::ALL.iter().map(|r| (r.index(), r.name())))
}

/// Service path counters of `LB4_STATS`, in number order.
pub(super) fn lb_counters_in(map: &PerCpuArray<MapData, u64>) -> Result<Vec<(&'static str, u64)>, DatapathError> {
    named_sums(map, LB4_STATS, LbCounter::ALL.iter().map(|c| (c.index(), c.name())))
}

impl Datapath {
    /// Drop counters summed over CPUs, by stable reason name, for every defined reason (zeros
    /// included, in reason-number order).
    pub fn drop_counters(&self) -> Result<Vec<(&'static str, u64)>, DatapathError> {
        drops_in(&self.drop_stats)
    }

    /// Service path counters (`new_flows`, `ct_miss_established`, `affinity_hits`,
    /// `reply_restored`) summed over CPUs, in number order.
    pub fn lb_counters(&self) -> Result<Vec<(&'static str, u64)>, DatapathError> {
        lb_counters_in(&self.lb_stats)
    }
}
