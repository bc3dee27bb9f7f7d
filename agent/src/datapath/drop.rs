//! Drop counters from `DROP_STATS` and Service path counters from `LB4_STATS`, summed over
//! CPUs and named.

use dataplane_common::maps::{DROP_STATS, LB4_STATS};
use dataplane_common::{DropReason, LbCounter};

use super::{Datapath, DatapathError};

impl Datapath {
    /// Drop counters summed over CPUs, by stable reason name, for every defined reason (zeros
    /// included, in reason-number order).
    pub fn drop_counters(&self) -> Result<Vec<(&'static str, u64)>, DatapathError> {
        DropReason::ALL
            .iter()
            .map(|reason| {
                let per_cpu = self.drop_stats.get(&reason.index(), 0).map_err(|source| {
                    DatapathError::Map {
                        name: DROP_STATS,
                        source,
                    }
                })?;
                Ok((reason.name(), per_cpu.iter().sum()))
            })
            .collect()
    }
}

impl Datapath {
    /// Service path counters (`new_flows`, `ct_miss_established`, `affinity_hits`) summed
    /// over CPUs, in number order.
    pub fn lb_counters(&self) -> Result<Vec<(&'static str, u64)>, DatapathError> {
        LbCounter::ALL
            .iter()
            .map(|c| {
                let per_cpu = self
                    .lb_stats
                    .get(&c.index(), 0)
                    .map_err(|source| DatapathError::Map {
                        name: LB4_STATS,
                        source,
                    })?;
                Ok((c.name(), per_cpu.iter().sum()))
            })
            .collect()
    }
}
