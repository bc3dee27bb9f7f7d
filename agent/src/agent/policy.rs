//! NetworkPolicy from the API server to the datapath: translate the cluster's pods,
//! namespaces and policies (`policy::translate`) for this node's pods and hand the result to
//! the policy reconciler, the one writer of the policy maps, on a blocking thread of its own
//! (map syscalls; the owner thread's queue serves CNI requests). The last state is published
//! for `weft policy list|trace`.
//!
//! A pass that sees both pods and policies (or namespaces) changed runs as two: first the new
//! pods under the old policies, then the new policies. The translation emits keys only for
//! identities in use, and each pass alone is make-before-break (see the reconciler).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::Store;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::retry::Backoff;
use crate::api::{PolicyDirectionRow, PolicyEndpointRow, PolicyRuleRow, TraceReport};
use crate::datapath::policy::{Desired, PolicyReconciler};
use crate::datapath::PolicyMaps;
use crate::k8s::pod::Pod;
use crate::metrics::Metrics;
use crate::policy::{
    self, namespace_labels, trace, Identities, Inputs, LabelSet, Labels, PodInfo, PolicyState,
    FIRST_LABEL, WORLD,
};

/// Full pass even without events (repairs maps written by hand).
const RESYNC: Duration = Duration::from_secs(120);

/// What a translation reads, as parsed from the stores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub namespaces: BTreeMap<String, Labels>,
    pub pods: Vec<PodInfo>,
    pub policies: Vec<policy::Policy>,
}

impl Snapshot {
    fn inputs<'a>(&'a self, node_addresses: &'a [Ipv4Addr]) -> Inputs<'a> {
        Inputs {
            namespaces: &self.namespaces,
            pods: &self.pods,
            policies: &self.policies,
            node_addresses,
        }
    }
}

/// The last translation, for the CLI.
#[derive(Debug)]
pub struct PolicyView {
    pub snapshot: Snapshot,
    pub node_addresses: Vec<Ipv4Addr>,
    /// This node's endpoints.
    pub state: PolicyState,
}

/// The NetworkPolicy loop of one node.
pub struct PolicyTask {
    pub node: String,
    pub node_addresses: Vec<Ipv4Addr>,
    pub pods: Store<Pod>,
    pub namespaces: Store<Namespace>,
    pub policies: Store<NetworkPolicy>,
    pub changes: [watch::Receiver<u64>; 3],
    pub pin_dir: PathBuf,
    pub metrics: Arc<Metrics>,
    pub view: Arc<RwLock<super::ClusterView>>,
}

/// The translation state carried across passes, moved into the blocking thread and back.
struct Work {
    rec: PolicyReconciler<PolicyMaps>,
    ids: Identities,
    applied: Option<Snapshot>,
}

impl PolicyTask {
    pub async fn run(mut self) {
        let _ = tokio::join!(
            self.pods.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.policies.wait_until_ready(),
        );
        let first = self.snapshot();
        let dir = self.pin_dir.clone();
        let opened = tokio::task::spawn_blocking(move || -> Result<Work, String> {
            let maps = PolicyMaps::open(&dir).map_err(|e| e.to_string())?;
            let rec = PolicyReconciler::resume(maps).map_err(|e| e.to_string())?;
            let ids = adopt_identities(&rec, &first);
            Ok(Work {
                rec,
                ids,
                applied: None,
            })
        })
        .await;
        let mut work = match opened {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                return error!(error = %e, "opening the policy maps: NetworkPolicy is not enforced")
            }
            Err(e) => return error!(error = %e, "opening the policy maps panicked"),
        };
        let mut backoff = Backoff::default();
        loop {
            let seen = Instant::now();
            let snap = self.snapshot();
            let t = Instant::now();
            let node = self.node.clone();
            let addrs = self.node_addresses.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let r = pass(&mut work, snap, &node, &addrs);
                (work, r)
            })
            .await;
            let (w, result) = match joined {
                Ok(x) => x,
                Err(e) => {
                    return error!(error = %e, "the policy pass panicked: NetworkPolicy enforcement stopped")
                }
            };
            work = w;
            let ok = result.is_ok();
            self.metrics
                .reconciled("policy", t.elapsed().as_secs_f64(), ok);
            match result {
                Ok((view, stats)) => {
                    if stats.endpoints > 0 || stats.written + stats.removed > 0 {
                        self.metrics
                            .policy_programming
                            .observe(seen.elapsed().as_secs_f64());
                        info!(
                            endpoints = view.state.endpoints.len(),
                            changed = stats.endpoints,
                            written = stats.written,
                            removed = stats.removed,
                            ms = t.elapsed().as_millis() as u64,
                            "policy maps written"
                        );
                    }
                    for (name, why) in &view.state.problems {
                        warn!(policy = %name, %why, "part of a NetworkPolicy matches nothing");
                    }
                    self.metrics.policy_endpoints.set(
                        view.state
                            .endpoints
                            .values()
                            .filter(|e| e.ingress.isolated() || e.egress.isolated())
                            .count() as i64,
                    );
                    if let Ok(mut v) = self.view.write() {
                        v.policy = Some(Arc::new(view));
                    }
                    backoff.succeeded();
                }
                Err(e) => {
                    warn!(error = %e, "writing the policy maps failed; resyncing from the maps");
                    work.applied = None;
                    let dir = self.pin_dir.clone();
                    if let Ok(Ok(rec)) = tokio::task::spawn_blocking(move || {
                        PolicyMaps::open(&dir).and_then(PolicyReconciler::resume)
                    })
                    .await
                    {
                        work.rec = rec;
                    }
                    backoff.sleep().await;
                    continue;
                }
            }
            let [a, b, c] = &mut self.changes;
            tokio::select! {
                r = a.changed() => if r.is_err() { return },
                r = b.changed() => if r.is_err() { return },
                r = c.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC) => {}
            }
            // Let a burst of events (a Deployment scaled, a manifest applied) settle into one pass.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut pods: Vec<PodInfo> = self
            .pods
            .state()
            .iter()
            .filter_map(|p| PodInfo::from_pod(p))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let mut policies: Vec<policy::Policy> = self
            .policies
            .state()
            .iter()
            .map(|p| policy::Policy::parse(p))
            .collect();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let namespaces = self
            .namespaces
            .state()
            .iter()
            .map(|n| namespace_labels(n))
            .collect();
        Snapshot {
            namespaces,
            pods,
            policies,
        }
    }
}

/// One pass (two when pods and policies both changed); the view of its final state.
fn pass(
    work: &mut Work,
    snap: Snapshot,
    node: &str,
    addrs: &[Ipv4Addr],
) -> Result<(PolicyView, crate::datapath::policy::ApplyStats), crate::datapath::DatapathError> {
    let local = |p: &PodInfo| p.node == node;
    let mut total = crate::datapath::policy::ApplyStats::default();
    if let Some(old) = &work.applied {
        let rules_changed = old.policies != snap.policies || old.namespaces != snap.namespaces;
        if rules_changed && old.pods != snap.pods {
            let mid = Snapshot {
                pods: snap.pods.clone(),
                ..old.clone()
            };
            let state = policy::translate(&mid.inputs(addrs), &mut work.ids, local);
            add(&mut total, apply(&mut work.rec, &state)?);
        }
    }
    let state = policy::translate(&snap.inputs(addrs), &mut work.ids, local);
    add(&mut total, apply(&mut work.rec, &state)?);
    work.applied = Some(snap.clone());
    Ok((
        PolicyView {
            snapshot: snap,
            node_addresses: addrs.to_vec(),
            state,
        },
        total,
    ))
}

fn add(total: &mut crate::datapath::policy::ApplyStats, s: crate::datapath::policy::ApplyStats) {
    total.endpoints += s.endpoints;
    total.written += s.written;
    total.removed += s.removed;
}

fn apply(
    rec: &mut PolicyReconciler<PolicyMaps>,
    state: &PolicyState,
) -> Result<crate::datapath::policy::ApplyStats, crate::datapath::DatapathError> {
    let endpoints: BTreeMap<Ipv4Addr, Desired> = state
        .endpoints
        .iter()
        .filter_map(|(ip, ep)| Some((*ip, Desired::of(ep)?)))
        .collect();
    rec.apply(&state.ipcache, &endpoints)
}

/// Identities an earlier agent wrote, read back from the address table: a pod /32 names its
/// label set's id; the largest prefix carrying a prefix id is that id's prefix.
fn adopt_identities(rec: &PolicyReconciler<PolicyMaps>, snap: &Snapshot) -> Identities {
    let mut ids = Identities::default();
    let table = rec.ipcache();
    let labels = snap.pods.iter().filter_map(|p| {
        let id = table
            .get(&ipnetwork::Ipv4Network::new(p.ip, 32).ok()?)?
            .label;
        let set = LabelSet {
            namespace: p.name.namespace.clone(),
            labels: p.labels.clone(),
        };
        (id >= FIRST_LABEL).then_some((set, id))
    });
    ids.labels.adopt(labels.collect::<Vec<_>>());
    let mut owner: BTreeMap<u32, ipnetwork::Ipv4Network> = BTreeMap::new();
    for (net, id) in table {
        if id.prefix != 0 && (id.label == WORLD || net.prefix() == 32) {
            let e = owner.entry(id.prefix).or_insert(*net);
            if net.prefix() < e.prefix() {
                *e = *net;
            }
        }
    }
    ids.prefixes
        .adopt(owner.into_iter().map(|(id, net)| (net, id)));
    ids
}

impl PolicyView {
    /// `weft policy list`: every local pod with its isolation and allowed keys.
    pub fn rows(&self) -> Vec<PolicyEndpointRow> {
        let dir = |d: &policy::DirectionPolicy| PolicyDirectionRow {
            isolated_by: d.isolated_by.iter().map(ToString::to_string).collect(),
            allow: d
                .allow
                .iter()
                .map(|(k, refs)| PolicyRuleRow {
                    peer: policy::render_peer(&self.state, k.peer),
                    ports: k.ports.to_string(),
                    rules: refs.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        };
        self.state
            .endpoints
            .values()
            .map(|ep| PolicyEndpointRow {
                pod: ep.pod.to_string(),
                ip: ep.ip,
                ingress: dir(&ep.ingress),
                egress: dir(&ep.egress),
            })
            .collect()
    }

    /// `weft policy trace`: `from`/`to` are pod names (`ns/name`, or `name` in `default`) or
    /// addresses; the answer comes from the same translation, for the two ends wherever they
    /// run.
    pub fn trace(
        &self,
        from: &str,
        to: &str,
        protocol: &str,
        port: u16,
    ) -> Result<TraceReport, String> {
        let proto = match protocol.to_ascii_uppercase().as_str() {
            "TCP" => 6,
            "UDP" => 17,
            "SCTP" => 132,
            "ICMP" => 1,
            other => {
                return Err(format!(
                    "unknown protocol {other:?} (TCP, UDP, SCTP or ICMP)"
                ))
            }
        };
        let (src, dst) = (self.resolve(from)?, self.resolve(to)?);
        let mut ids = Identities::default();
        let state = policy::translate(&self.snapshot.inputs(&self.node_addresses), &mut ids, |p| {
            p.ip == src || p.ip == dst
        });
        let t = trace(&state, src, dst, proto, port);
        Ok(TraceReport {
            from: format!("{from} ({src})"),
            to: format!("{to} ({dst})"),
            protocol: protocol.to_ascii_uppercase(),
            port,
            egress: t.egress.to_string(),
            ingress: t.ingress.to_string(),
            allowed: t.allowed(),
        })
    }

    fn resolve(&self, who: &str) -> Result<Ipv4Addr, String> {
        if let Ok(ip) = who.parse::<Ipv4Addr>() {
            return Ok(ip);
        }
        let (ns, name) = who.split_once('/').unwrap_or(("default", who));
        self.snapshot
            .pods
            .iter()
            .find(|p| p.name.namespace == ns && p.name.name == name)
            .map(|p| p.ip)
            .ok_or_else(|| format!("no pod {ns}/{name} with an address (or give an IPv4 address)"))
    }
}
