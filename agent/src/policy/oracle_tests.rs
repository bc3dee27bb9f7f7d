//! The translation checked against a direct reading of the NetworkPolicy API: random clusters
//! (namespaces, pods with named ports, policies with every kind of peer and port), and for
//! every pair of addresses and a spread of protocols and ports, `trace` over the translated
//! state (identities, prefixes, LPM-style lookups) must say what the plain rules say.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::objects::{Namespaces, Peer, PortSpec, Ports, Rule};
use super::*;

/// xorshift64*: deterministic, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 11);
const OUTSIDE: [Ipv4Addr; 2] = [Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(10, 201, 0, 1)];

fn labels(rng: &mut Rng) -> Labels {
    let mut l = Labels::new();
    for (k, vs) in [
        ("app", &["a", "b", "c"][..]),
        ("tier", &["front", "back"][..]),
    ] {
        if rng.chance(70) {
            l.insert(k.into(), (*rng.pick(vs)).into());
        }
    }
    l
}

fn selector(rng: &mut Rng) -> Selector {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    let mut s = LabelSelector::default();
    if rng.chance(40) {
        let l = labels(rng);
        if !l.is_empty() {
            s.match_labels = Some(l);
        }
    }
    if rng.chance(40) {
        let key = (*rng.pick(&["app", "tier", "ns"])).to_owned();
        let values = Some(vec![(*rng.pick(&["a", "b", "front", "x", "y"])).to_owned()]);
        let (operator, values) = match rng.below(4) {
            0 => ("In", values),
            1 => ("NotIn", values),
            2 => ("Exists", None),
            _ => ("DoesNotExist", None),
        };
        s.match_expressions = Some(vec![LabelSelectorRequirement {
            key,
            operator: operator.into(),
            values,
        }]);
    }
    Selector::parse(&s).unwrap()
}

fn net(s: &str) -> Ipv4Network {
    s.parse().unwrap()
}

fn peer(rng: &mut Rng, pods: &[PodInfo]) -> Peer {
    match rng.below(4) {
        0 => Peer::Pods {
            namespaces: Namespaces::Own,
            pods: selector(rng),
        },
        1 => Peer::Pods {
            namespaces: Namespaces::Matching(selector(rng)),
            pods: selector(rng),
        },
        2 => Peer::Pods {
            namespaces: Namespaces::Matching(selector(rng)),
            pods: Selector::everything(),
        },
        _ => {
            let some_pod = rng.pick(pods).ip;
            let cidrs = [
                net("10.200.0.0/16"),
                net("10.200.1.0/24"),
                net("10.0.0.0/8"),
                net("203.0.113.0/24"),
                Ipv4Network::new(some_pod, 32).unwrap(),
                Ipv4Network::new(some_pod, 30)
                    .unwrap()
                    .network()
                    .to_string()
                    .parse::<Ipv4Addr>()
                    .map(|a| Ipv4Network::new(a, 30).unwrap())
                    .unwrap(),
            ];
            let cidr = *rng.pick(&cidrs);
            let except = cidrs
                .iter()
                .filter(|e| {
                    e.prefix() > cidr.prefix() && cidr.contains(e.network()) && rng.chance(50)
                })
                .copied()
                .collect();
            Peer::Block { cidr, except }
        }
    }
}

fn port(rng: &mut Rng) -> PortSpec {
    let proto = *rng.pick(&[Proto::Tcp, Proto::Tcp, Proto::Udp, Proto::Sctp]);
    let ports = match rng.below(4) {
        0 => Ports::All,
        1 => Ports::Range(80, 80),
        2 => Ports::Range(80, 90),
        _ => Ports::Named((*rng.pick(&["http", "dns"])).into()),
    };
    PortSpec { proto, ports }
}

fn rules(rng: &mut Rng, pods: &[PodInfo]) -> Option<Vec<Rule>> {
    rng.chance(70).then(|| {
        (0..rng.below(3))
            .map(|_| Rule {
                peers: rng
                    .chance(75)
                    .then(|| (0..1 + rng.below(2)).map(|_| peer(rng, pods)).collect()),
                ports: rng
                    .chance(70)
                    .then(|| (0..1 + rng.below(2)).map(|_| port(rng)).collect()),
            })
            .collect()
    })
}

fn cluster(rng: &mut Rng) -> (BTreeMap<String, Labels>, Vec<PodInfo>, Vec<Policy>) {
    let namespaces = NAMESPACES
        .iter()
        .map(|n| {
            let mut l = Labels::from([("kubernetes.io/metadata.name".to_owned(), n.to_string())]);
            if rng.chance(60) {
                l.insert("ns".into(), (*rng.pick(&["x", "y"])).into());
            }
            (n.to_string(), l)
        })
        .collect();
    let pods: Vec<PodInfo> = (0..3 + rng.below(8))
        .map(|i| {
            let mut named_ports = Vec::new();
            if rng.chance(70) {
                named_ports.push(("http".into(), Proto::Tcp, *rng.pick(&[80, 85, 8080])));
            }
            if rng.chance(40) {
                named_ports.push(("dns".into(), Proto::Udp, 80));
            }
            PodInfo {
                name: ObjectName {
                    namespace: (*rng.pick(&NAMESPACES)).into(),
                    name: format!("p{i}"),
                },
                node: "node-1".into(),
                ip: Ipv4Addr::new(10, 200, 1 + (i % 2) as u8, 10 + i as u8),
                labels: labels(rng),
                named_ports,
            }
        })
        .collect();
    let policies = (0..1 + rng.below(4))
        .map(|i| Policy {
            name: ObjectName {
                namespace: (*rng.pick(&NAMESPACES)).into(),
                name: format!("np{i}"),
            },
            pods: selector(rng),
            ingress: rules(rng, &pods),
            egress: rules(rng, &pods),
            problems: Vec::new(),
        })
        .collect();
    (namespaces, pods, policies)
}

/// The API's meaning, read directly from the objects.
struct Oracle<'a> {
    namespaces: &'a BTreeMap<String, Labels>,
    pods: &'a [PodInfo],
    policies: &'a [Policy],
}

impl Oracle<'_> {
    fn pod(&self, ip: Ipv4Addr) -> Option<&PodInfo> {
        self.pods.iter().find(|p| p.ip == ip)
    }

    fn peer_matches(&self, policy: &Policy, peer: &Peer, ip: Ipv4Addr) -> bool {
        match peer {
            Peer::Nothing => false,
            Peer::Block { cidr, except } => {
                cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))
            }
            Peer::Pods { namespaces, pods } => self.pod(ip).is_some_and(|p| {
                let ns_ok = match namespaces {
                    Namespaces::Own => p.name.namespace == policy.name.namespace,
                    Namespaces::Matching(s) => s.matches(&self.namespaces[&p.name.namespace]),
                };
                ns_ok && pods.matches(&p.labels)
            }),
        }
    }

    /// Whether `spec` opens `proto`/`port` on `dest` (the destination address).
    fn port_matches(&self, spec: &PortSpec, dest: Ipv4Addr, proto: u8, port: u16) -> bool {
        spec.proto.number() == proto
            && match &spec.ports {
                Ports::All => true,
                Ports::Range(lo, hi) => (*lo..=*hi).contains(&port),
                Ports::Named(n) => {
                    self.pod(dest).and_then(|p| p.named_port(n, spec.proto)) == Some(port)
                }
            }
    }

    fn allows(
        &self,
        at: &PodInfo,
        dir: Direction,
        peer_ip: Ipv4Addr,
        proto: u8,
        port: u16,
    ) -> bool {
        if dir == Direction::Ingress && peer_ip == NODE {
            return true;
        }
        let dest = if dir == Direction::Ingress {
            at.ip
        } else {
            peer_ip
        };
        let mut isolated = false;
        for p in self
            .policies
            .iter()
            .filter(|p| p.name.namespace == at.name.namespace && p.pods.matches(&at.labels))
        {
            let Some(rules) = (if dir == Direction::Ingress {
                &p.ingress
            } else {
                &p.egress
            }) else {
                continue;
            };
            isolated = true;
            for r in rules {
                let peers: Vec<Option<&Peer>> = match &r.peers {
                    None => vec![None],
                    Some(ps) => ps.iter().map(Some).collect(),
                };
                for peer in peers {
                    if peer.is_some_and(|pe| !self.peer_matches(p, pe, peer_ip)) {
                        continue;
                    }
                    let ok = match &r.ports {
                        None => true,
                        Some(specs) => specs.iter().any(|s| {
                            // A named egress port towards an ipBlock peer resolves nowhere.
                            let blocked = dir == Direction::Egress
                                && matches!(s.ports, Ports::Named(_))
                                && matches!(peer, Some(Peer::Block { .. }));
                            !blocked && self.port_matches(s, dest, proto, port)
                        }),
                    };
                    if ok {
                        return true;
                    }
                }
            }
        }
        !isolated
    }

    fn allowed(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, port: u16) -> bool {
        let egress = self
            .pod(src)
            .is_none_or(|p| self.allows(p, Direction::Egress, dst, proto, port));
        let ingress = self
            .pod(dst)
            .is_none_or(|p| self.allows(p, Direction::Ingress, src, proto, port));
        egress && ingress
    }
}

#[test]
fn trace_over_the_translation_agrees_with_the_api_semantics() {
    let mut checked = 0usize;
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (namespaces, pods, policies) = cluster(&mut rng);
        let inputs = Inputs {
            namespaces: &namespaces,
            pods: &pods,
            policies: &policies,
            node_addresses: &[NODE],
        };
        let mut ids = Identities::default();
        let state = translate(&inputs, &mut ids, |_| true);
        let oracle = Oracle {
            namespaces: &namespaces,
            pods: &pods,
            policies: &policies,
        };
        let addrs: Vec<Ipv4Addr> = pods
            .iter()
            .map(|p| p.ip)
            .chain(OUTSIDE)
            .chain([NODE])
            .collect();
        for &src in &addrs {
            for &dst in &addrs {
                if src == dst {
                    continue;
                }
                for (proto, port) in [
                    (6, 80),
                    (6, 85),
                    (6, 8080),
                    (6, 443),
                    (17, 80),
                    (132, 80),
                    (1, 0),
                ] {
                    let want = oracle.allowed(src, dst, proto, port);
                    let got = trace(&state, src, dst, proto, port);
                    assert_eq!(
                        got.allowed(),
                        want,
                        "seed {seed}: {src} -> {dst} proto {proto} port {port}: trace says {got:?}\n\
                         pods: {pods:#?}\npolicies: {policies:#?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} cases");
}
