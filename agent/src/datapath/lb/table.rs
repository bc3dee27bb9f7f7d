//! What the LB maps hold, in words: rows for `weft service list` and the numbers for metrics.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use dataplane_common::lb::{
    LB4_BACKEND_F_LOCAL, LB4_BACKEND_F_NOT_SERVING, LB4_BACKEND_F_TERMINATING,
    LB4_KIND_CLUSTER_IP, LB4_KIND_EXTERNAL_IP, LB4_KIND_LOAD_BALANCER, LB4_KIND_NODE_PORT,
    LB4_SVC_F_AFFINITY, LB4_SVC_F_SNAT_REMOTE, LB4_SVC_F_TWO_SCOPES,
};
use dataplane_common::maps::CT4_MAX_ENTRIES;
use serde::{Deserialize, Serialize};

use super::store::LbStore;
use crate::api::{BackendRow, ServiceRow};
use super::{frontend_of, BackendId};
use crate::datapath::{Datapath, DatapathError};
use crate::lb::Scope;

/// Sizes for the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbMetrics {
    /// Kubernetes Services with at least one frontend programmed by this agent.
    pub services: usize,
    /// `LB4_SERVICES` entries.
    pub frontends: usize,
    /// `LB4_BACKENDS` entries.
    pub backends: usize,
    /// `CT4` entries (two per translated flow) and its capacity.
    pub conntrack_entries: usize,
    pub conntrack_capacity: usize,
    /// Service path counters since the maps were created (`new_flows`,
    /// `ct_miss_established`: established connections that found no entry, the sign of a
    /// `CT4` too small for the node's flows; `affinity_hits`).
    pub counters: Vec<(String, u64)>,
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        LB4_KIND_CLUSTER_IP => "ClusterIP",
        LB4_KIND_NODE_PORT => "NodePort",
        LB4_KIND_EXTERNAL_IP => "ExternalIP",
        LB4_KIND_LOAD_BALANCER => "LoadBalancer",
        _ => "unknown",
    }
}

impl Datapath {
    /// Every frontend in `LB4_SERVICES` with its slots' backends, ordered by address, port,
    /// protocol and scope.
    pub fn services(&self) -> Result<Vec<ServiceRow>, DatapathError> {
        let maps = &self.lb_maps;
        let backends: HashMap<BackendId, _> = maps.read_backends()?.into_iter().collect();
        let slots: HashMap<(u16, u8, u16), u32> = maps
            .read_slots()?
            .into_iter()
            .map(|(k, v)| ((k.rev_nat_id, k.generation, k.slot), v.backend_id))
            .collect();
        let owners: HashMap<_, _> = self
            .lb
            .frontends()
            .into_iter()
            .map(|p| (p.frontend, p))
            .collect();
        let mut rows = Vec::new();
        let mut services = maps.read_services()?;
        services.sort_by_key(|(k, _)| frontend_of(k));
        for (key, svc) in services {
            let Some(frontend) = frontend_of(&key) else {
                continue;
            };
            let mut flags = Vec::new();
            if svc.flags & LB4_SVC_F_AFFINITY != 0 {
                flags.push(format!("affinity={}s", svc.affinity_timeout_s));
            }
            if svc.flags & LB4_SVC_F_TWO_SCOPES != 0 {
                flags.push("two-scopes".into());
            }
            if svc.flags & LB4_SVC_F_SNAT_REMOTE != 0 {
                flags.push(format!("snat-remote={}", Ipv4Addr::from(svc.snat_addr_be)));
            }
            let backend_rows = (0..svc.count)
                .map(|slot| {
                    let id = slots
                        .get(&(svc.rev_nat_id, svc.generation, slot))
                        .copied()
                        .unwrap_or(0);
                    let b = backends.get(&BackendId(id));
                    let mut flags = Vec::new();
                    if let Some(b) = b {
                        for (bit, name) in [
                            (LB4_BACKEND_F_LOCAL, "local"),
                            (LB4_BACKEND_F_TERMINATING, "terminating"),
                            (LB4_BACKEND_F_NOT_SERVING, "not-serving"),
                        ] {
                            if b.flags & bit != 0 {
                                flags.push(name.to_owned());
                            }
                        }
                    } else {
                        flags.push("missing".into());
                    }
                    BackendRow {
                        id,
                        slot,
                        address: b.map(|b| Ipv4Addr::from(b.addr_be)),
                        port: b.map(|b| u16::from_be(b.port_be)).unwrap_or(0),
                        flags,
                    }
                })
                .collect();
            let owner = owners.get(&frontend);
            rows.push(ServiceRow {
                id: svc.rev_nat_id,
                address: frontend.addr,
                port: frontend.port,
                protocol: frontend.protocol.to_string(),
                scope: match frontend.scope {
                    Scope::External => "external",
                    Scope::Internal => "in-node",
                }
                .into(),
                kind: kind_name(svc.kind).into(),
                service: owner.and_then(|o| o.owner.as_ref()).map(|n| n.to_string()),
                port_name: owner.and_then(|o| o.port_name.clone()),
                flags,
                generation: svc.generation,
                backends: backend_rows,
            });
        }
        Ok(rows)
    }

    /// Service, frontend, backend and conntrack counts (walks `CT4`: one syscall per entry).
    pub fn lb_metrics(&self) -> Result<LbMetrics, DatapathError> {
        let services: BTreeSet<_> = self
            .lb
            .frontends()
            .into_iter()
            .filter_map(|p| p.owner)
            .collect();
        let (frontends, backends) = self.lb.counts();
        Ok(LbMetrics {
            services: services.len(),
            frontends,
            backends,
            conntrack_entries: self.conntrack_len()?,
            conntrack_capacity: CT4_MAX_ENTRIES as usize,
            counters: self
                .lb_counters()?
                .into_iter()
                .map(|(n, c)| (n.to_owned(), c))
                .collect(),
        })
    }
}
