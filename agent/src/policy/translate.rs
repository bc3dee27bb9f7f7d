//! Pods, namespaces and NetworkPolicies -> identities, the address table and each selected
//! endpoint's allowed keys, with the whole `networking.k8s.io/v1` semantics:
//!
//! - A policy selects the pods of its namespace that match `podSelector`, for the directions
//!   of `policyTypes` (absent: Ingress, plus Egress when egress rules exist). A pod selected
//!   for a direction is isolated there; policies add up; only allows exist.
//! - A rule's peers (OR): pods by `podSelector` in the policy's namespace, by
//!   `namespaceSelector`, or both (AND); `ipBlock` CIDRs minus `except`. An empty or missing
//!   peer list is every peer, an empty or missing port list every port of every protocol.
//! - ipBlocks cover pod addresses too (upstream's tests expect egress to a pod's IP allowed by
//!   an ipBlock holding it): every ipBlock CIDR and `except` is a prefix identity, a pod's
//!   address carries its label identity and the identity of the longest prefix holding it, and
//!   a rule allows each prefix inside its CIDR that lies in none of its excepts. Prefixes nest
//!   or are disjoint, so the longest prefix alone decides.
//! - Ports by number, ranges (`endPort`, as LPM blocks) and name. A name resolves on the
//!   destination pod: for ingress the selected pod itself, for egress each peer pod, grouped by
//!   identity when the identity's pods agree and per pod (a /32 prefix identity) when they do
//!   not. A pod without the name matches nothing; a named port towards an ipBlock matches
//!   nothing (no pod to resolve it on).
//! - Host-network pods are never selected and are no pod peers (they hold node addresses).
//!   Traffic from this node's own addresses into its pods is always allowed (kubelet probes),
//!   as every implementation does; replies of allowed connections are the datapath's
//!   (conntrack), not rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::identity::{Identities, LabelSet, ANY, HOST, WORLD};
use super::model::{
    Direction, DirectionPolicy, EndpointPolicy, IpIdentity, PolicyState, PortMatch, RuleKey,
    RuleRef,
};
use super::objects::{Namespaces, Peer, PodInfo, Policy, PortSpec, Ports, Proto};
use super::ports::{blocks, PortBlock};
use super::select::Labels;

/// What the translation reads.
pub struct Inputs<'a> {
    /// Namespace labels by name.
    pub namespaces: &'a BTreeMap<String, Labels>,
    /// Every pod of the cluster that has a pod address.
    pub pods: &'a [PodInfo],
    pub policies: &'a [Policy],
    /// This node's addresses: the `HOST` identity.
    pub node_addresses: &'a [Ipv4Addr],
}

/// How a named egress port resolves on the pods of one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// All of them serve the name on this port (or none has it).
    Agreed(Option<u16>),
    /// They differ: each pod is its own /32 prefix peer.
    Split,
}

/// The peers one rule resolves to.
#[derive(Debug, Default, Clone)]
struct Resolved {
    any: bool,
    labels: BTreeSet<u32>,
    prefixes: BTreeSet<u32>,
}

/// Translate. `endpoint` picks the pods to compute rules for (this node's, or the two ends of
/// a trace); identities are carried in `ids` from the previous translation.
pub fn translate(
    inputs: &Inputs<'_>,
    ids: &mut Identities,
    endpoint: impl Fn(&PodInfo) -> bool,
) -> PolicyState {
    let set_of = |p: &PodInfo| LabelSet {
        namespace: p.name.namespace.clone(),
        labels: p.labels.clone(),
    };
    ids.labels.assign(inputs.pods.iter().map(set_of));
    let mut members: BTreeMap<u32, Vec<&PodInfo>> = BTreeMap::new();
    for p in inputs.pods {
        if let Some(id) = ids.labels.get(&set_of(p)) {
            members.entry(id).or_default().push(p);
        }
    }

    // Named egress ports: per (name, protocol), how each identity resolves it.
    let mut named: BTreeMap<(String, Proto), BTreeMap<u32, Named>> = BTreeMap::new();
    for spec in inputs
        .policies
        .iter()
        .flat_map(|p| p.egress.iter().flatten())
    {
        for ps in spec.ports.iter().flatten() {
            let Ports::Named(name) = &ps.ports else {
                continue;
            };
            named.entry((name.clone(), ps.proto)).or_insert_with(|| {
                members
                    .iter()
                    .map(|(id, pods)| {
                        let mut values = pods.iter().map(|p| p.named_port(name, ps.proto));
                        let first = values.next().flatten();
                        let agreed = values.all(|v| v == first);
                        (
                            *id,
                            if agreed {
                                Named::Agreed(first)
                            } else {
                                Named::Split
                            },
                        )
                    })
                    .collect()
            });
        }
    }
    let split_ids: BTreeSet<u32> = named
        .values()
        .flat_map(|m| {
            m.iter()
                .filter(|(_, n)| **n == Named::Split)
                .map(|(id, _)| *id)
        })
        .collect();
    let host_net = |ip: Ipv4Addr| Ipv4Network::new(ip, 32).expect("/32 is valid");

    // Prefix identities: every ipBlock CIDR and except, and the pods of split identities.
    let mut prefixes: BTreeSet<Ipv4Network> = BTreeSet::new();
    for p in inputs.policies {
        for rule in p.ingress.iter().chain(p.egress.iter()).flatten() {
            for peer in rule.peers.iter().flatten() {
                if let Peer::Block { cidr, except } = peer {
                    prefixes.insert(*cidr);
                    prefixes.extend(except.iter().copied());
                }
            }
        }
    }
    for id in &split_ids {
        prefixes.extend(members[id].iter().map(|p| host_net(p.ip)));
    }
    ids.prefixes.assign(prefixes.iter().copied());
    let mut by_length: Vec<(Ipv4Network, u32)> = prefixes
        .iter()
        .filter_map(|n| Some((*n, ids.prefixes.get(n)?)))
        .collect();
    by_length.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix()));
    let longest = |ip: Ipv4Addr| {
        by_length
            .iter()
            .find(|(n, _)| n.contains(ip))
            .map_or(0, |(_, id)| *id)
    };

    let mut state = PolicyState {
        identities: ids.labels.iter().map(|(k, v)| (v, k.clone())).collect(),
        prefixes: ids.prefixes.iter().map(|(k, v)| (v, *k)).collect(),
        ..PolicyState::default()
    };
    for (net, id) in &by_length {
        state.ipcache.insert(
            *net,
            IpIdentity {
                label: WORLD,
                prefix: *id,
            },
        );
    }
    for a in inputs.node_addresses {
        state.ipcache.insert(
            host_net(*a),
            IpIdentity {
                label: HOST,
                prefix: longest(*a),
            },
        );
    }
    for (id, pods) in &members {
        for p in pods {
            state.ipcache.insert(
                host_net(p.ip),
                IpIdentity {
                    label: *id,
                    prefix: longest(p.ip),
                },
            );
        }
    }
    for p in inputs.policies {
        state
            .problems
            .extend(p.problems.iter().map(|why| (p.name.clone(), why.clone())));
    }

    let ctx = Ctx {
        inputs,
        ids,
        members: &members,
        named: &named,
        split_ids: &split_ids,
        host_net: &host_net,
    };
    let mut resolved: HashMap<(usize, Direction, usize), Resolved> = HashMap::new();
    let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in inputs.policies.iter().enumerate() {
        by_namespace
            .entry(p.name.namespace.as_str())
            .or_default()
            .push(i);
    }
    for pod in inputs.pods.iter().filter(|p| endpoint(p)) {
        let Some(identity) = ids.labels.get(&set_of(pod)) else {
            continue;
        };
        let mut ep = EndpointPolicy {
            pod: pod.name.clone(),
            ip: pod.ip,
            identity,
            ingress: DirectionPolicy::default(),
            egress: DirectionPolicy::default(),
        };
        for &pi in by_namespace
            .get(pod.name.namespace.as_str())
            .into_iter()
            .flatten()
        {
            let policy = &inputs.policies[pi];
            if !policy.pods.matches(&pod.labels) {
                continue;
            }
            for (dir, rules, out) in [
                (Direction::Ingress, &policy.ingress, &mut ep.ingress),
                (Direction::Egress, &policy.egress, &mut ep.egress),
            ] {
                let Some(rules) = rules else { continue };
                out.isolated_by.push(policy.name.clone());
                for (ri, rule) in rules.iter().enumerate() {
                    let peers = resolved
                        .entry((pi, dir, ri))
                        .or_insert_with(|| ctx.resolve(policy, rule.peers.as_deref()));
                    let r = RuleRef {
                        policy: policy.name.clone(),
                        direction: dir,
                        index: ri,
                    };
                    for key in ctx.keys(pod, dir, peers, rule.ports.as_deref()) {
                        let refs = out.allow.entry(key).or_default();
                        if refs.last() != Some(&r) {
                            refs.push(r.clone());
                        }
                    }
                }
            }
        }
        state.endpoints.insert(pod.ip, ep);
    }
    state
}

struct Ctx<'a, H> {
    inputs: &'a Inputs<'a>,
    ids: &'a Identities,
    members: &'a BTreeMap<u32, Vec<&'a PodInfo>>,
    named: &'a BTreeMap<(String, Proto), BTreeMap<u32, Named>>,
    split_ids: &'a BTreeSet<u32>,
    host_net: &'a H,
}

impl<H: Fn(Ipv4Addr) -> Ipv4Network> Ctx<'_, H> {
    fn namespace_labels(&self, ns: &str) -> Labels {
        self.inputs.namespaces.get(ns).cloned().unwrap_or_else(|| {
            // The API server sets this label on every namespace; an unseen one has at least it.
            Labels::from([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())])
        })
    }

    fn resolve(&self, policy: &Policy, peers: Option<&[Peer]>) -> Resolved {
        let mut out = Resolved::default();
        let Some(peers) = peers else {
            out.any = true;
            return out;
        };
        let mut ns_match: HashMap<&str, bool> = HashMap::new();
        for peer in peers {
            match peer {
                Peer::Nothing => {}
                Peer::Pods { namespaces, pods } => {
                    for (set, id) in self.ids.labels.iter() {
                        let in_ns = *ns_match.entry(set.namespace.as_str()).or_insert_with(|| {
                            match namespaces {
                                Namespaces::Own => set.namespace == policy.name.namespace,
                                Namespaces::Matching(sel) => {
                                    sel.matches(&self.namespace_labels(&set.namespace))
                                }
                            }
                        });
                        if in_ns && pods.matches(&set.labels) {
                            out.labels.insert(id);
                        }
                    }
                    ns_match.clear(); // the cache holds this peer's namespace answers
                }
                Peer::Block { cidr, except } => {
                    for (net, id) in self.ids.prefixes.iter() {
                        let inside = |outer: &Ipv4Network| {
                            outer.prefix() <= net.prefix() && outer.contains(net.network())
                        };
                        if inside(cidr) && !except.iter().any(inside) {
                            out.prefixes.insert(id);
                        }
                    }
                }
            }
        }
        out
    }

    /// The allowed keys of one rule for endpoint `pod` in direction `dir`.
    fn keys(
        &self,
        pod: &PodInfo,
        dir: Direction,
        peers: &Resolved,
        ports: Option<&[PortSpec]>,
    ) -> Vec<RuleKey> {
        let peer_ids: Vec<u32> = if peers.any {
            vec![ANY]
        } else {
            peers
                .labels
                .iter()
                .chain(&peers.prefixes)
                .copied()
                .collect()
        };
        let Some(ports) = ports else {
            return peer_ids
                .iter()
                .map(|&peer| RuleKey {
                    peer,
                    ports: PortMatch::AnyProto,
                })
                .collect();
        };
        let mut out = Vec::new();
        for spec in ports {
            let range = |lo, hi| {
                blocks(lo, hi)
                    .into_iter()
                    .map(|b| PortMatch::Proto(spec.proto, b))
            };
            match (&spec.ports, dir) {
                (Ports::All, _) => {
                    let all = PortMatch::Proto(spec.proto, PortBlock { port: 0, bits: 0 });
                    out.extend(peer_ids.iter().map(|&peer| RuleKey { peer, ports: all }));
                }
                (Ports::Range(lo, hi), _) => {
                    for m in range(*lo, *hi) {
                        out.extend(peer_ids.iter().map(|&peer| RuleKey { peer, ports: m }));
                    }
                }
                (Ports::Named(name), Direction::Ingress) => {
                    if let Some(n) = pod.named_port(name, spec.proto) {
                        out.extend(range(n, n).flat_map(|m| {
                            peer_ids.iter().map(move |&peer| RuleKey { peer, ports: m })
                        }));
                    }
                }
                (Ports::Named(name), Direction::Egress) => {
                    let by_id = &self.named[&(name.clone(), spec.proto)];
                    let labels: Box<dyn Iterator<Item = u32>> = if peers.any {
                        Box::new(self.members.keys().copied())
                    } else {
                        Box::new(peers.labels.iter().copied())
                    };
                    for id in labels {
                        match by_id.get(&id) {
                            Some(Named::Agreed(Some(n))) => {
                                out.extend(range(*n, *n).map(|m| RuleKey { peer: id, ports: m }))
                            }
                            Some(Named::Split) if self.split_ids.contains(&id) => {
                                for p in &self.members[&id] {
                                    let (Some(n), Some(pid)) = (
                                        p.named_port(name, spec.proto),
                                        self.ids.prefixes.get(&(self.host_net)(p.ip)),
                                    ) else {
                                        continue;
                                    };
                                    out.extend(range(n, n).map(|m| RuleKey {
                                        peer: pid,
                                        ports: m,
                                    }));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        out
    }
}
