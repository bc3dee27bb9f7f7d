//! Datapath figures read at scrape time: drops by reason and map occupancy.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// What the datapath reports at one scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatapathStats {
    /// Packets dropped, by stable reason name.
    pub drops: Vec<(&'static str, u64)>,
    /// Entries in each map, by map name.
    pub map_entries: Vec<(&'static str, u64)>,
    /// Capacity of each map, by map name.
    pub map_capacity: Vec<(&'static str, u64)>,
}

/// Where the figures come from (a closure over read-only map handles).
pub type StatsSource = Arc<dyn Fn() -> Result<DatapathStats, String> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabel {
    map: &'static str,
}

pub(super) struct DatapathCollector(pub StatsSource);

impl std::fmt::Debug for DatapathCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatapathCollector")
    }
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = match (self.0)() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading datapath statistics for /metrics");
                return Ok(());
            }
        };
        let drops = Family::<Reason, Counter>::default();
        for (reason, n) in &stats.drops {
            drops.get_or_create(&Reason { reason }).inc_by(*n);
        }
        let e = encoder.encode_descriptor(
            "weft_datapath_drops",
            "Packets the eBPF datapath dropped, by reason",
            None,
            drops.metric_type(),
        )?;
        drops.encode(e)?;
        for (name, help, values) in [
            ("weft_map_entries", "Entries in each BPF map", &stats.map_entries),
            ("weft_map_capacity", "Capacity (max entries) of each BPF map", &stats.map_capacity),
        ] {
            let fam = Family::<MapLabel, Gauge>::default();
            for (map, n) in values {
                fam.get_or_create(&MapLabel { map }).set(*n as i64);
            }
            let e = encoder.encode_descriptor(name, help, None, fam.metric_type())?;
            fam.encode(e)?;
        }
        Ok(())
    }
}
