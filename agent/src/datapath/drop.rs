//! Drop counters from `DROP_STATS`, summed over CPUs and named by reason.

use dataplane_common::maps::DROP_STATS;
use dataplane_common::DropReason;

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
