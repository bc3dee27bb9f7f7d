//! The Kubernetes objects policy reads, parsed into what the translation needs: pods (labels,
//! address, named ports), namespaces (labels) and NetworkPolicies (selectors, rules, ports).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::select::{Labels, Selector};
use crate::k8s::pod::Pod;

/// An L4 protocol a NetworkPolicy port names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The IP protocol number, as the datapath keys it.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }

    /// From the API's spelling; absent means TCP.
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// From an IP protocol number.
    pub fn from_number(n: u8) -> Option<Self> {
        [Self::Tcp, Self::Udp, Self::Sctp]
            .into_iter()
            .find(|p| p.number() == n)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// `namespace/name` of a pod or a NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ObjectName {
    fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// A pod as policy sees it: one that can send and receive on a pod address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: ObjectName,
    pub node: String,
    pub ip: Ipv4Addr,
    pub labels: Labels,
    /// Container ports with a name: (name, protocol, number).
    pub named_ports: Vec<(String, Proto, u16)>,
}

impl PodInfo {
    /// The pod's view for policy, or `None` for a pod policy never selects: host-network pods
    /// (they hold the node's address), finished pods, and pods without an IPv4 address yet.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref()?;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return None;
        }
        let ip = status
            .pod_ips
            .iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .chain(status.pod_ip.as_deref())
            .find_map(|s| match s.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => Some(v4),
                _ => None,
            })?;
        // Sidecars (init containers that keep running) serve named ports as containers do.
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let named_ports = spec
            .containers
            .iter()
            .chain(sidecars)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let name = p.name.clone()?;
                let proto = Proto::parse(p.protocol.as_deref())?;
                Some((name, proto, u16::try_from(p.container_port).ok()?))
            })
            .collect();
        Some(Self {
            name: ObjectName::of(&pod.metadata),
            node: spec.node_name.clone().unwrap_or_default(),
            ip,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            named_ports,
        })
    }

    /// The number this pod serves `name` on for `proto`, if it has such a port.
    pub fn named_port(&self, name: &str, proto: Proto) -> Option<u16> {
        self.named_ports
            .iter()
            .find(|(n, p, _)| n == name && *p == proto)
            .map(|(_, _, port)| *port)
    }
}

/// A namespace's name and labels.
pub fn namespace_labels(ns: &Namespace) -> (String, Labels) {
    (
        ns.metadata.name.clone().unwrap_or_default(),
        ns.metadata.labels.clone().unwrap_or_default(),
    )
}

/// Which pods a selector peer picks namespaces from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// The policy's own namespace (no `namespaceSelector`).
    Own,
    Matching(Selector),
}

/// One `from`/`to` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Pods matching `pods` in the namespaces `namespaces` picks.
    Pods {
        namespaces: Namespaces,
        pods: Selector,
    },
    /// Addresses in `cidr` but in none of `except`.
    Block {
        cidr: Ipv4Network,
        except: Vec<Ipv4Network>,
    },
    /// A peer that cannot match anything here (malformed, or IPv6 on this IPv4 datapath).
    Nothing,
}

/// The destination ports one `ports` entry opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// Every port of the protocol.
    All,
    /// `port` to `endPort` (both inclusive; one port when there is no `endPort`).
    Range(u16, u16),
    /// A container port name, resolved on the destination pod.
    Named(String),
}

/// One `ports` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub proto: Proto,
    pub ports: Ports,
}

/// One ingress or egress rule. `None` is the API's "empty or missing": everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Option<Vec<PortSpec>>,
}

/// A NetworkPolicy, parsed. `ingress`/`egress` are `None` when the policy does not isolate
/// that direction, and `Some(rules)` (possibly empty: deny all) when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: ObjectName,
    pub pods: Selector,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    /// Parts that match nothing, with the reason (logged once by the caller).
    pub problems: Vec<String>,
}

impl Policy {
    /// Parse a NetworkPolicy. Malformed parts match nothing and are listed in `problems`;
    /// they never widen what the policy allows.
    pub fn parse(np: &NetworkPolicy) -> Self {
        let name = ObjectName::of(&np.metadata);
        let mut problems = Vec::new();
        let spec = np.spec.clone().unwrap_or_default();
        let pods = match spec.pod_selector.as_ref().map(Selector::parse) {
            None => Selector::everything(),
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                problems.push(format!("podSelector: {e}; the policy selects no pod"));
                Selector::nothing()
            }
        };
        let types = spec.policy_types.clone().unwrap_or_else(|| {
            let mut t = vec!["Ingress".to_owned()];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                t.push("Egress".to_owned());
            }
            t
        });
        let has = |t: &str| types.iter().any(|x| x == t);
        let ingress = has("Ingress").then(|| {
            spec.ingress
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, r)| {
                    rule(
                        r.from.as_deref(),
                        r.ports.as_deref(),
                        &format!("ingress[{i}]"),
                        &mut problems,
                    )
                })
                .collect()
        });
        let egress = has("Egress").then(|| {
            spec.egress
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, r)| {
                    rule(
                        r.to.as_deref(),
                        r.ports.as_deref(),
                        &format!("egress[{i}]"),
                        &mut problems,
                    )
                })
                .collect()
        });
        Self {
            name,
            pods,
            ingress,
            egress,
            problems,
        }
    }
}

fn rule(
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    at: &str,
    problems: &mut Vec<String>,
) -> Rule {
    let peers = peers.filter(|p| !p.is_empty()).map(|ps| {
        ps.iter()
            .enumerate()
            .map(|(i, p)| {
                peer(p).unwrap_or_else(|why| {
                    problems.push(format!("{at}: peer {i}: {why}"));
                    Peer::Nothing
                })
            })
            .collect()
    });
    let ports = ports.filter(|p| !p.is_empty()).map(|ps| {
        ps.iter()
            .enumerate()
            .filter_map(|(i, p)| {
                port(p)
                    .map_err(|why| problems.push(format!("{at}: port {i}: {why}")))
                    .ok()
            })
            .collect()
    });
    Rule { peers, ports }
}

fn peer(p: &NetworkPolicyPeer) -> Result<Peer, String> {
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (Some(block), None, None) => ip_block(block),
        (Some(_), _, _) => Err("ipBlock cannot be combined with selectors".into()),
        (None, None, None) => Err("a peer needs a selector or an ipBlock".into()),
        (None, ns, pods) => {
            let namespaces = match ns {
                None => Namespaces::Own,
                Some(s) => Namespaces::Matching(
                    Selector::parse(s).map_err(|e| format!("namespaceSelector: {e}"))?,
                ),
            };
            let pods = match pods {
                None => Selector::everything(),
                Some(s) => Selector::parse(s).map_err(|e| format!("podSelector: {e}"))?,
            };
            Ok(Peer::Pods { namespaces, pods })
        }
    }
}

fn ip_block(b: &IPBlock) -> Result<Peer, String> {
    let net = |s: &str| -> Result<Option<Ipv4Network>, String> {
        match s.parse::<ipnetwork::IpNetwork>() {
            // Host bits are ignored, as the API's own CIDR parsing does.
            Ok(ipnetwork::IpNetwork::V4(n)) => Ok(Some(
                Ipv4Network::new(n.network(), n.prefix()).map_err(|e| e.to_string())?,
            )),
            Ok(ipnetwork::IpNetwork::V6(_)) => Ok(None),
            Err(e) => Err(format!("ipBlock {s:?}: {e}")),
        }
    };
    let Some(cidr) = net(&b.cidr)? else {
        return Ok(Peer::Nothing); // IPv6: no IPv4 address is in it
    };
    let mut except = Vec::new();
    for e in b.except.iter().flatten() {
        match net(e)? {
            Some(n) if cidr.contains(n.network()) && n.prefix() >= cidr.prefix() => except.push(n),
            Some(n) => return Err(format!("except {n} is not inside {cidr}")),
            None => return Err(format!("except {e:?} is IPv6 in an IPv4 block")),
        }
    }
    Ok(Peer::Block { cidr, except })
}

fn port(p: &NetworkPolicyPort) -> Result<PortSpec, String> {
    let proto = Proto::parse(p.protocol.as_deref())
        .ok_or_else(|| format!("unknown protocol {:?}", p.protocol))?;
    let ports = match (&p.port, p.end_port) {
        (None, None) => Ports::All,
        (None, Some(_)) => return Err("endPort without port".into()),
        (Some(IntOrString::String(name)), None) => match name.parse::<u16>() {
            Ok(n) if n > 0 => Ports::Range(n, n),
            _ => Ports::Named(name.clone()),
        },
        (Some(IntOrString::String(_)), Some(_)) => return Err("endPort with a named port".into()),
        (Some(IntOrString::Int(n)), end) => {
            let lo = u16::try_from(*n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("port {n}"))?;
            let hi = match end {
                None => lo,
                Some(e) => u16::try_from(e)
                    .ok()
                    .filter(|e| *e >= lo)
                    .ok_or(format!("endPort {e}"))?,
            };
            Ports::Range(lo, hi)
        }
    };
    Ok(PortSpec { proto, ports })
}
