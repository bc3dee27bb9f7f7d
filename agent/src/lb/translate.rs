//! Service + EndpointSlices -> frontends and backends, as kube-proxy reads them.
//!
//! - Frontends: every IPv4 ClusterIP (`spec.clusterIPs`), NodePort on each node address,
//!   `spec.externalIPs` and `status.loadBalancer.ingress[].ip` (unless `ipMode: Proxy`), for
//!   each TCP or UDP Service port. Headless and ExternalName Services have none.
//! - Backends: the EndpointSlices' IPv4 endpoints with the port of the same name and protocol
//!   (so a named targetPort resolves per slice); ready ones take new flows, and only when no
//!   endpoint is ready do serving+terminating ones (KEP-1669). Endpoints left out of new flows
//!   stay listed so established connections to them keep working.
//! - internalTrafficPolicy Local: ClusterIPs use local endpoints only. externalTrafficPolicy
//!   Local: outside clients of the external frontends get local endpoints only and keep their
//!   address; in-node clients get every endpoint (an `Internal` scope entry). Cluster: every
//!   endpoint, and outside clients of a remote one are translated to a node address.
//! - Not translated, each with a `Skipped` entry and a warning: SCTP ports (the datapath
//!   would have to recompute SCTP's CRC32c over the whole packet on every port rewrite),
//!   IPv6 addresses of dual-stack objects (the cluster's datapath is IPv4), IPv6 and FQDN
//!   EndpointSlices, unparsable addresses. Topology hints and trafficDistribution are ignored.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Service as K8sService, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use tracing::warn;

use super::model::{
    Backend, BackendState, Frontend, FrontendKind, FrontendSpec, Protocol, Scope, Service,
    ServiceName, Skipped,
};

/// sessionAffinityConfig.clientIP.timeoutSeconds when unset (Kubernetes' default, 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10800;
/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the translation needs to know about the node it runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    /// This node's name: endpoints with this `nodeName` are local.
    pub name: String,
    /// This node's IPv4 addresses: NodePort frontends are opened on each. The first is the
    /// source address of translated outside flows to externalIPs and load-balancer IPs.
    pub addresses: Vec<Ipv4Addr>,
}

/// The desired datapath state of `svc` given the EndpointSlices that belong to it (slices of
/// other Services, by namespace or `kubernetes.io/service-name`, are ignored).
pub fn translate(svc: &K8sService, slices: &[&EndpointSlice], node: &NodeContext) -> Service {
    let name = ServiceName {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
    };
    let mut t = Translation {
        out: Service {
            name,
            frontends: Vec::new(),
            skipped: Vec::new(),
        },
    };
    t.service(svc, slices, node);
    t.out.frontends.sort_by_key(|f| f.frontend);
    for s in &t.out.skipped {
        warn!(service = %t.out.name, what = %s.what, why = %s.why, "not translated");
    }
    t.out
}

struct Translation {
    out: Service,
}

/// One endpoint as kube-proxy classifies it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: Ipv4Addr,
    port: u16,
    local: bool,
    ready: bool,
    serving: bool,
    terminating: bool,
}

impl Translation {
    fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.out.skipped.push(Skipped {
            what: what.into(),
            why: why.into(),
        });
    }

    fn service(&mut self, svc: &K8sService, slices: &[&EndpointSlice], node: &NodeContext) {
        let Some(spec) = &svc.spec else {
            self.skip("spec", "missing");
            return;
        };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty == "ExternalName" {
            self.skip("Service", "type ExternalName (a DNS name, no frontend)");
            return;
        }
        let cluster_ips: Vec<String> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.clone(),
            _ => spec.cluster_ip.iter().cloned().collect(),
        };
        if cluster_ips.iter().any(|ip| ip == "None") {
            self.skip("Service", "headless (clusterIP None, no frontend)");
            return;
        }
        let cluster_ips = self.ipv4s("clusterIP", &cluster_ips);
        if cluster_ips.is_empty() {
            self.skip("Service", "no IPv4 clusterIP");
            return;
        }
        let external_ips = self.ipv4s(
            "externalIP",
            spec.external_ips.as_deref().unwrap_or_default(),
        );
        let lb_ips = self.load_balancer_ips(svc);
        let node_port_type = ty == "NodePort" || ty == "LoadBalancer";
        let lb_ips = if ty == "LoadBalancer" {
            lb_ips
        } else {
            Vec::new()
        };
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_S)
        });
        let itp_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let etp_local = spec.external_traffic_policy.as_deref() == Some("Local");

        let slices = self.own_slices(svc, slices);
        for port in spec.ports.as_deref().unwrap_or_default() {
            let port_name = port.name.clone().unwrap_or_default();
            let Some(protocol) = self.protocol(port, &port_name) else {
                continue;
            };
            let Ok(svc_port) = u16::try_from(port.port) else {
                self.skip(format!("port {port_name:?}"), format!("port {} out of range", port.port));
                continue;
            };
            let candidates = self.candidates(&slices, &port_name, protocol, node);
            let cluster = select(&candidates, false);
            let local = select(&candidates, true);
            let spec_for = |frontend, kind, backends: &Vec<Backend>| FrontendSpec {
                frontend,
                kind,
                port_name: port_name.clone(),
                backends: backends.clone(),
                affinity_timeout_s: affinity,
                two_scopes: false,
                snat_remote: None,
            };
            for &addr in &cluster_ips {
                let f = Frontend {
                    addr,
                    port: svc_port,
                    protocol,
                    scope: Scope::External,
                };
                let backends = if itp_local { &local } else { &cluster };
                self.out
                    .frontends
                    .push(spec_for(f, FrontendKind::ClusterIp, backends));
            }
            let mut external: Vec<(Ipv4Addr, u16, FrontendKind, Option<Ipv4Addr>)> = Vec::new();
            if node_port_type {
                if let Some(np) = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
                    for &addr in &node.addresses {
                        external.push((addr, np, FrontendKind::NodePort, Some(addr)));
                    }
                }
            }
            let primary = node.addresses.first().copied();
            for &addr in &external_ips {
                external.push((addr, svc_port, FrontendKind::ExternalIp, primary));
            }
            for &addr in &lb_ips {
                external.push((addr, svc_port, FrontendKind::LoadBalancer, primary));
            }
            for (addr, port, kind, snat) in external {
                let ext = Frontend {
                    addr,
                    port,
                    protocol,
                    scope: Scope::External,
                };
                if etp_local {
                    let mut outside = spec_for(ext, kind, &local);
                    outside.two_scopes = true;
                    self.out.frontends.push(outside);
                    let inside = Frontend {
                        scope: Scope::Internal,
                        ..ext
                    };
                    self.out.frontends.push(spec_for(inside, kind, &cluster));
                } else {
                    let mut spec = spec_for(ext, kind, &cluster);
                    spec.snat_remote = snat;
                    self.out.frontends.push(spec);
                }
            }
        }
    }

    /// IPv4 addresses of `ips`; IPv6 ones and garbage are skipped.
    fn ipv4s(&mut self, what: &str, ips: &[String]) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for ip in ips {
            match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => {
                    if !out.contains(&v4) {
                        out.push(v4);
                    }
                }
                Ok(IpAddr::V6(_)) => self.skip(
                    format!("{what} {ip}"),
                    "IPv6 (the datapath is IPv4-only)",
                ),
                Err(_) => self.skip(format!("{what} {ip:?}"), "not an IP address"),
            }
        }
        out
    }

    fn load_balancer_ips(&mut self, svc: &K8sService) -> Vec<Ipv4Addr> {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_deref())
            .unwrap_or_default();
        let mut ips = Vec::new();
        for i in ingress {
            let Some(ip) = &i.ip else { continue };
            if i.ip_mode.as_deref() == Some("Proxy") {
                // KEP-1860: the load balancer proxies to the nodes itself; kube-proxy does not
                // capture this address either.
                self.skip(format!("loadBalancer ingress {ip}"), "ipMode Proxy");
                continue;
            }
            ips.push(ip.clone());
        }
        self.ipv4s("loadBalancer ingress", &ips)
    }

    fn protocol(&mut self, port: &ServicePort, port_name: &str) -> Option<Protocol> {
        match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => {
                self.skip(
                    format!("port {port_name:?} ({}/SCTP)", port.port),
                    "SCTP is not supported: rewriting an SCTP port means recomputing its CRC32c \
                     over the whole packet",
                );
                None
            }
            other => {
                self.skip(
                    format!("port {port_name:?} ({}/{other})", port.port),
                    "unknown protocol",
                );
                None
            }
        }
    }

    /// The slices of this Service (same namespace and service-name label), IPv4 only.
    fn own_slices<'a>(&mut self, svc: &K8sService, slices: &[&'a EndpointSlice]) -> Vec<&'a EndpointSlice> {
        let mut own = Vec::new();
        for &s in slices {
            let label = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if s.metadata.namespace != svc.metadata.namespace
                || label != svc.metadata.name.as_ref()
            {
                continue;
            }
            if s.address_type != "IPv4" {
                let slice = s.metadata.name.clone().unwrap_or_default();
                self.skip(
                    format!("EndpointSlice {slice}"),
                    format!("addressType {} (the datapath is IPv4-only)", s.address_type),
                );
                continue;
            }
            own.push(s);
        }
        own
    }

    /// Every endpoint of `slices` for the Service port `port_name`/`protocol`, one per address
    /// (the first slice listing an address wins, as endpoints move between slices).
    fn candidates(
        &mut self,
        slices: &[&EndpointSlice],
        port_name: &str,
        protocol: Protocol,
        node: &NodeContext,
    ) -> Vec<Candidate> {
        let mut by_addr: BTreeMap<Ipv4Addr, Candidate> = BTreeMap::new();
        for s in slices {
            let port = s
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol.to_string()
                })
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok());
            let Some(port) = port else { continue };
            for ep in s.endpoints.as_deref().unwrap_or_default() {
                let Some(c) = self.candidate(ep, port, node) else {
                    continue;
                };
                by_addr.entry(c.addr).or_insert(c);
            }
        }
        by_addr.into_values().collect()
    }

    fn candidate(&mut self, ep: &Endpoint, port: u16, node: &NodeContext) -> Option<Candidate> {
        // The API allows one address per endpoint (the field is a list for the future).
        let addr = ep.addresses.first()?;
        let addr = match addr.parse::<Ipv4Addr>() {
            Ok(a) => a,
            Err(_) => {
                self.skip(format!("endpoint {addr:?}"), "not an IPv4 address");
                return None;
            }
        };
        let c = ep.conditions.as_ref();
        // As kube-proxy: unset ready/serving mean true, unset terminating false.
        let ready = c.and_then(|c| c.ready).unwrap_or(true);
        let serving = c.and_then(|c| c.serving).unwrap_or(true);
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        Some(Candidate {
            addr,
            port,
            local: ep.node_name.as_deref() == Some(node.name.as_str()),
            ready,
            serving,
            terminating,
        })
    }
}

/// The backends of one scope (`local_only`: this node's endpoints only): ready endpoints take
/// new flows; if there are none, serving+terminating ones do; the rest stay listed.
fn select(candidates: &[Candidate], local_only: bool) -> Vec<Backend> {
    let pool: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !local_only || c.local)
        .collect();
    let any_ready = pool.iter().any(|c| c.ready);
    let mut out: Vec<Backend> = pool
        .iter()
        .map(|c| {
            let state = if c.ready {
                BackendState::Active
            } else if c.serving && c.terminating {
                if any_ready {
                    BackendState::Draining
                } else {
                    BackendState::Active
                }
            } else {
                BackendState::NotServing
            };
            Backend {
                addr: c.addr,
                port: c.port,
                state,
                terminating: c.terminating,
                local: c.local,
            }
        })
        .collect();
    out.sort();
    out
}
