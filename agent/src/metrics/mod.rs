//! The agent's Prometheus metrics (prometheus-client) and its HTTP endpoint (`/metrics`,
//! `/healthz`, `/readyz`).

mod collector;
mod http;
mod readiness;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use collector::{DatapathStats, StatsSource};
pub use http::serve;
pub use readiness::{Readiness, Stage};

/// Label of per-reconciler metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcilerLabel {
    pub reconciler: &'static str,
}

/// Label of per-resource watch metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: &'static str,
}

/// Label of the CNI step histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CniStepLabel {
    pub verb: &'static str,
    pub step: &'static str,
}

/// Every metric the agent updates as it works. Datapath counters (drops, map occupancy) are
/// read from the maps at scrape time by [`StatsSource`].
#[derive(Debug)]
pub struct Metrics {
    pub reconcile_runs: Family<ReconcilerLabel, Counter>,
    pub reconcile_errors: Family<ReconcilerLabel, Counter>,
    pub reconcile_seconds: Family<ReconcilerLabel, Histogram, fn() -> Histogram>,
    pub watch_events: Family<ResourceLabel, Counter>,
    pub watch_errors: Family<ResourceLabel, Counter>,
    pub nodes: Gauge,
    pub node_routes: Gauge,
    pub ipam_released_gone_pods: Counter,
    /// Expired conntrack entries the periodic sweep removed.
    pub conntrack_gc_removed: Counter,
    /// From a Service or EndpointSlice change seen by the watch to the LB maps updated.
    pub service_programming: Histogram,
    /// From a pass of the policy task starting (woken by a Pod, Namespace or NetworkPolicy
    /// change) to the policy maps written, for passes that wrote something.
    pub policy_programming: Histogram,
    /// Local pods NetworkPolicy isolates in at least one direction.
    pub policy_endpoints: Gauge,
    /// Time of each step of the CNI calls, the plugin's and the agent's.
    pub cni_step_seconds: Family<CniStepLabel, Histogram, fn() -> Histogram>,
}

fn cni_step_histogram() -> Histogram {
    // 10 µs .. ~2.6 s.
    Histogram::new(exponential_buckets(0.00001, 4.0, 10))
}

fn reconcile_histogram() -> Histogram {
    // 100 µs .. ~3 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 9))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            reconcile_runs: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_seconds: Family::new_with_constructor(reconcile_histogram),
            watch_events: Family::default(),
            watch_errors: Family::default(),
            nodes: Gauge::default(),
            node_routes: Gauge::default(),
            ipam_released_gone_pods: Counter::default(),
            conntrack_gc_removed: Counter::default(),
            // 1 ms .. ~4 s.
            service_programming: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            policy_programming: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            policy_endpoints: Gauge::default(),
            cni_step_seconds: Family::new_with_constructor(cni_step_histogram),
        }
    }

    /// Register every metric under the `weft_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("weft");
        r.register(
            "reconcile_runs",
            "Reconcile passes, by reconciler",
            self.reconcile_runs.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconcile passes that failed (and will be retried), by reconciler",
            self.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time of one reconcile pass, by reconciler",
            self.reconcile_seconds.clone(),
        );
        r.register(
            "k8s_watch_events",
            "Watch events received from the API server, by resource",
            self.watch_events.clone(),
        );
        r.register(
            "k8s_watch_errors",
            "Watch errors (retried with backoff), by resource",
            self.watch_errors.clone(),
        );
        r.register("nodes", "Nodes known from the API server", self.nodes.clone());
        r.register(
            "node_routes",
            "Other nodes' pod CIDRs programmed into the datapath and the routing table",
            self.node_routes.clone(),
        );
        r.register(
            "service_programming_seconds",
            "From a Service or EndpointSlice change seen by the watch to the LB maps updated",
            self.service_programming.clone(),
        );
        r.register(
            "policy_programming_seconds",
            "From a Pod, Namespace or NetworkPolicy change to the policy maps written (passes that wrote)",
            self.policy_programming.clone(),
        );
        r.register(
            "policy_endpoints",
            "Local pods NetworkPolicy isolates in at least one direction",
            self.policy_endpoints.clone(),
        );
        r.register(
            "conntrack_gc_removed",
            "Expired conntrack (CT4) entries removed by the agent's periodic sweep",
            self.conntrack_gc_removed.clone(),
        );
        r.register(
            "cni_step_seconds",
            "Time of each step of the CNI ADD and DEL calls (plugin and agent), by verb and step",
            self.cni_step_seconds.clone(),
        );
        r.register(
            "ipam_released_gone_pods",
            "Addresses released at start because their pod no longer exists",
            self.ipam_released_gone_pods.clone(),
        );
    }

    /// Record how long a step of a CNI call took (unknown steps are ignored).
    pub fn cni_step(&self, t: crate::api::StepTime) {
        if t.step == crate::api::CniStep::Unknown {
            return;
        }
        let l = CniStepLabel {
            verb: t.step.verb(),
            step: t.step.name(),
        };
        self.cni_step_seconds
            .get_or_create(&l)
            .observe(t.micros as f64 / 1e6);
    }

    /// Count one reconcile pass of `reconciler` that took `seconds` and succeeded or not.
    pub fn reconciled(&self, reconciler: &'static str, seconds: f64, ok: bool) {
        let l = ReconcilerLabel { reconciler };
        self.reconcile_runs.get_or_create(&l).inc();
        self.reconcile_seconds.get_or_create(&l).observe(seconds);
        if !ok {
            self.reconcile_errors.get_or_create(&l).inc();
        }
    }
}
