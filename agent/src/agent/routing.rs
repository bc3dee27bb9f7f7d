//! Routes (and the egress masquerade) follow the Nodes: the routing reconciler writes
//! `NODE_ROUTES4` and weft's kernel routes, the egress table is replaced when what it depends
//! on changes, and `weft status` gets the routes programmed.

use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipnetwork::Ipv4Network;
use tracing::{error, info, warn};

use super::options::RoutingMode;
use super::retry::Backoff;
use super::ClusterView;
use crate::api::RouteInfo;
use crate::datapath::NodeRoutes;
use crate::egress::{self, EgressSpec};
use crate::k8s::node::{node_info, NodeInfo};
use crate::metrics::{Metrics, Readiness, Stage};
use crate::netlink::Netlink;
use crate::routing::kernel::NetlinkTable;
use crate::routing::{Reconciler, Uplink};

/// Full re-reconcile even without watch events (repairs routes someone deleted by hand).
const RESYNC: Duration = Duration::from_secs(60);

/// The long-running routing (and egress) reconcile loop.
pub struct RoutingTask {
    pub node: String,
    pub mode: RoutingMode,
    pub uplink: Uplink,
    pub vxlan: Option<u32>,
    pub pin_dir: std::path::PathBuf,
    pub pod_cidr: Ipv4Network,
    pub cluster_cidr: Option<Ipv4Network>,
    pub masquerade: bool,
    pub nl: Arc<Netlink>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub view: Arc<RwLock<ClusterView>>,
}

impl RoutingTask {
    pub async fn run(
        self,
        nodes: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Node>,
        mut changes: tokio::sync::watch::Receiver<u64>,
    ) {
        let map = match NodeRoutes::open(&self.pin_dir) {
            Ok(m) => m,
            Err(e) => {
                error!(error = %e, "opening NODE_ROUTES4: no routes to other nodes");
                return;
            }
        };
        let mut rec = Reconciler::new(
            self.node.clone(),
            self.mode,
            self.uplink.clone(),
            self.vxlan,
            map,
            NetlinkTable::new(self.nl.clone()),
        );
        let mut applied_egress: Option<EgressSpec> = None;
        let mut backoff = Backoff::default();
        loop {
            let infos: Vec<NodeInfo> = nodes.state().iter().map(|n| node_info(n)).collect();
            self.metrics.nodes.set(infos.len() as i64);
            let t = Instant::now();
            let routed = rec.reconcile(&infos).await;
            let egress = self.egress(&infos, &mut applied_egress).await;
            let ok = routed.is_ok() && egress.is_ok();
            self.metrics.reconciled("routing", t.elapsed().as_secs_f64(), ok);
            match &routed {
                Ok(out) => {
                    self.metrics.node_routes.set(out.routes as i64);
                    if out.written + out.removed > 0 {
                        info!(routes = out.routes, written = out.written, removed = out.removed,
                            ms = t.elapsed().as_millis() as u64, "routes reconciled");
                    }
                    self.publish(&rec);
                }
                Err(e) => warn!(error = %e, "routing reconcile failed; retrying"),
            }
            if let Err(e) = &egress {
                warn!(error = %e, "egress masquerade failed; retrying");
            }
            if ok {
                self.readiness.done(Stage::Routes);
                backoff.succeeded();
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(RESYNC) => {}
                }
            } else {
                backoff.sleep().await;
            }
        }
    }

    /// Apply the masquerade table when what it depends on changed (or on a resync).
    async fn egress(
        &self,
        nodes: &[NodeInfo],
        applied: &mut Option<EgressSpec>,
    ) -> Result<(), egress::EgressError> {
        if !self.masquerade {
            return Ok(());
        }
        let cluster = match self.cluster_cidr {
            Some(c) => vec![c],
            None => nodes.iter().flat_map(|n| n.pod_cidrs.iter().copied()).chain([self.pod_cidr]).collect(),
        };
        let spec = EgressSpec {
            pod_cidr: self.pod_cidr,
            cluster,
            nodes: nodes.iter().filter_map(|n| n.internal_ip).collect::<Vec<Ipv4Addr>>(),
        };
        let s = spec.clone();
        tokio::task::spawn_blocking(move || egress::apply(&s))
            .await
            .expect("nft task panicked")?;
        if applied.as_ref() != Some(&spec) {
            info!(cluster = ?spec.cluster, nodes = spec.nodes.len(), "egress masquerade applied");
        }
        *applied = Some(spec);
        Ok(())
    }

    fn publish<M, T>(&self, rec: &Reconciler<M, T>)
    where
        M: crate::routing::reconcile::HopMap,
        T: crate::routing::RouteTable,
    {
        let via = match self.mode {
            RoutingMode::Native => "native",
            RoutingMode::Vxlan => "vxlan",
        };
        let routes = rec
            .routes()
            .iter()
            .map(|(cidr, peer)| RouteInfo {
                pod_cidr: *cidr,
                node: peer.node.clone(),
                node_ip: peer.ip,
                via: via.to_owned(),
            })
            .collect();
        if let Ok(mut v) = self.view.write() {
            v.routes = routes;
        }
    }
}
