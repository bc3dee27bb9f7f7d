//! Services from the API server to the datapath: translate what changed (`lb::translate`)
//! and hand it to the owner thread, whose `Datapath` is the only writer of the LB maps. A
//! re-list (or the first listing) syncs everything, removing what no Service explains.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service as K8sService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{info, warn};

use super::server::AgentHandle;
use crate::k8s::Dirty;
use crate::lb::{self, NodeContext, ServiceName};
use crate::metrics::Metrics;

/// Full resync even without events (repairs maps written by hand, catches a missed event).
const RESYNC: Duration = Duration::from_secs(120);

/// The Service reconcile loop of one node.
pub struct ServicesTask {
    pub node: NodeContext,
    pub services: Store<K8sService>,
    pub slices: Store<EndpointSlice>,
    pub dirty: Arc<Dirty>,
    pub changes: tokio::sync::watch::Receiver<u64>,
    pub slice_changes: tokio::sync::watch::Receiver<u64>,
    pub agent: AgentHandle,
    pub metrics: Arc<Metrics>,
}

/// The slices of the Services named in `wanted` (all Services if `None`), by Service.
fn slices_by_service(
    slices: &Store<EndpointSlice>,
    wanted: Option<&HashMap<(String, String), Instant>>,
) -> HashMap<(String, String), Vec<Arc<EndpointSlice>>> {
    // Borrowed keys: a change to one Service looks at every slice, so nothing is allocated for
    // the slices of other Services.
    let wanted: Option<std::collections::HashSet<(&str, &str)>> =
        wanted.map(|w| w.keys().map(|(ns, name)| (ns.as_str(), name.as_str())).collect());
    let mut out: HashMap<(String, String), Vec<Arc<EndpointSlice>>> = HashMap::new();
    for s in slices.state() {
        let Some(ns) = s.metadata.namespace.as_deref() else { continue };
        let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get(lb::SERVICE_NAME_LABEL)) else {
            continue;
        };
        if wanted.as_ref().is_none_or(|w| w.contains(&(ns, svc.as_str()))) {
            out.entry((ns.to_string(), svc.clone())).or_default().push(s);
        }
    }
    out
}

fn translate(
    node: &NodeContext,
    svc: &K8sService,
    slices: Option<&Vec<Arc<EndpointSlice>>>,
) -> lb::Service {
    let refs: Vec<&EndpointSlice> = slices.map(|v| v.iter().map(|s| s.as_ref()).collect()).unwrap_or_default();
    let out = lb::translate(svc, &refs, node);
    for s in &out.skipped {
        warn!(service = %out.name, what = %s.what, why = %s.why, "not programmed");
    }
    out
}

impl ServicesTask {
    pub async fn run(mut self) {
        let mut last_full = Instant::now();
        let mut first = true;
        loop {
            let (all, keys) = self.dirty.take();
            let t = Instant::now();
            let full = first || all.is_some() || last_full.elapsed() >= RESYNC;
            let ok = if full {
                first = false;
                last_full = Instant::now();
                self.sync_all().await
            } else if !keys.is_empty() {
                self.sync_some(keys).await
            } else {
                true
            };
            if full || ok {
                self.metrics.reconciled("services", t.elapsed().as_secs_f64(), ok);
            }
            if !ok {
                // Redo everything shortly: a failed write left the maps behind the API.
                // A fixed, short retry: a Service whose write failed refuses its clients until
                // the next pass, so it is not worth backing off (the other loops do).
                first = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            tokio::select! {
                r = self.changes.changed() => if r.is_err() { return },
                r = self.slice_changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    async fn sync_all(&self) -> bool {
        let t = Instant::now();
        let by_svc = slices_by_service(&self.slices, None);
        let services: Vec<lb::Service> = self
            .services
            .state()
            .iter()
            .map(|svc| {
                let key = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
                translate(&self.node, svc, by_svc.get(&key))
            })
            .collect();
        let n = services.len();
        match self.agent.run(move |a| a.sync_services(&services)).await {
            Ok(Ok(stats)) => {
                info!(services = n, seconds = t.elapsed().as_secs_f64(), ?stats, "Services synced");
                true
            }
            Ok(Err(e)) | Err(e) => {
                warn!(error = %e, "Service sync failed; retrying");
                false
            }
        }
    }

    async fn sync_some(&self, keys: HashMap<(String, String), Instant>) -> bool {
        let by_svc = slices_by_service(&self.slices, Some(&keys));
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (ns, name) in keys.keys() {
            match self.services.get(&ObjectRef::new(name).within(ns)) {
                Some(svc) => upserts.push(translate(&self.node, &svc, by_svc.get(&(ns.clone(), name.clone())))),
                None => deletes.push(ServiceName { namespace: ns.clone(), name: name.clone() }),
            }
        }
        let result = self
            .agent
            .run(move |a| -> Result<(), crate::api::ApiError> {
                for s in &upserts {
                    a.upsert_service(s)?;
                }
                for d in &deletes {
                    a.delete_service(d)?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(Ok(())) => {
                for seen in keys.values() {
                    self.metrics.service_programming.observe(seen.elapsed().as_secs_f64());
                }
                true
            }
            Ok(Err(e)) | Err(e) => {
                warn!(error = %e, "Service update failed; resyncing");
                false
            }
        }
    }
}

/// The node's addresses NodePorts open on.
pub fn node_context(name: &str, addresses: Vec<Ipv4Addr>) -> NodeContext {
    NodeContext {
        name: name.to_owned(),
        addresses,
    }
}
