//! Datapath figures read at scrape time: drops by reason, Service path counters and map
//! occupancy.

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
    /// Service path counters (`new_flows`, `reply_restored`, …), by name.
    pub service_path: Vec<(&'static str, u64)>,
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
struct CounterLabel {
    counter: &'static str,
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

/// One counter family `name`, a sample per named value, labelled by `label`.
fn counters<L>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(&'static str, u64)],
    label: impl Fn(&'static str) -> L,
) -> Result<(), std::fmt::Error>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let fam = Family::<L, Counter>::default();
    for (n, v) in values {
        fam.get_or_create(&label(n)).inc_by(*v);
    }
    let e = encoder.encode_descriptor(name, help, None, fam.metric_type())?;
    fam.encode(e)
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
        counters(
            &mut encoder,
            "weft_datapath_drops",
            "Packets the eBPF datapath dropped, by reason",
            &stats.drops,
            |reason| Reason { reason },
        )?;
        counters(
            &mut encoder,
            "weft_service_path",
            "Service path events of the eBPF datapath (new flows, established segments without a conntrack entry, affinity hits, restored reply entries)",
            &stats.service_path,
            |counter| CounterLabel { counter },
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn a_scrape_shows_drops_service_path_counters_and_map_occupancy() {
        let source: StatsSource = Arc::new(|| {
            Ok(DatapathStats {
                drops: vec![("ct_full", 3)],
                service_path: vec![("new_flows", 10), ("reply_restored", 2)],
                map_entries: vec![("CT4", 7)],
                map_capacity: vec![("CT4", 131072)],
            })
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(DatapathCollector(source)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"weft_datapath_drops_total{reason="ct_full"} 3"#,
            r#"weft_service_path_total{counter="new_flows"} 10"#,
            r#"weft_service_path_total{counter="reply_restored"} 2"#,
            r#"weft_map_entries{map="CT4"} 7"#,
            r#"weft_map_capacity{map="CT4"} 131072"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
    }
}
