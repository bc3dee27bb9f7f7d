//! The reconciler on an in-memory copy of the maps, checked after every single write: a
//! packet never meets a state in which traffic both the old and the new policy allow is
//! denied, or traffic both deny is allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::*;
use crate::policy::{PortBlock, PortMatch, Proto, ANY, WORLD};

/// The maps as a packet would see them, and every state they passed through.
#[derive(Default, Clone)]
struct Memory {
    ipcache: BTreeMap<Ipv4Network, IpIdentity>,
    rules: BTreeSet<(u32, Direction, RuleKey)>,
    endpoints: BTreeMap<Ipv4Addr, PolicyEndpoint>,
}

#[derive(Default)]
struct Recorder {
    now: Memory,
    states: Vec<Memory>,
}

impl Recorder {
    fn step(&mut self) -> Result<(), DatapathError> {
        self.states.push(self.now.clone());
        Ok(())
    }
}

impl PolicyWriter for Recorder {
    fn set_identity(&mut self, net: Ipv4Network, id: IpIdentity) -> Result<(), DatapathError> {
        self.now.ipcache.insert(net, id);
        self.step()
    }
    fn remove_identity(&mut self, net: Ipv4Network) -> Result<(), DatapathError> {
        self.now.ipcache.remove(&net);
        self.step()
    }
    fn insert_rule(&mut self, id: u32, dir: Direction, key: &RuleKey) -> Result<(), DatapathError> {
        self.now.rules.insert((id, dir, *key));
        self.step()
    }
    fn remove_rule(&mut self, id: u32, dir: Direction, key: &RuleKey) -> Result<(), DatapathError> {
        self.now.rules.remove(&(id, dir, *key));
        self.step()
    }
    fn set_endpoint(&mut self, ip: Ipv4Addr, ep: &PolicyEndpoint) -> Result<(), DatapathError> {
        self.now.endpoints.insert(ip, *ep);
        self.step()
    }
    fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), DatapathError> {
        self.now.endpoints.remove(&ip);
        self.step()
    }
}

impl Memory {
    /// The datapath's verdict on a new TCP flow to `port` between local pod `ep` and `peer`.
    fn allows(&self, ep: Ipv4Addr, dir: Direction, peer: Ipv4Addr, port: u16) -> bool {
        let Some(e) = self.endpoints.get(&ep) else {
            return true;
        };
        let isolated = match dir {
            Direction::Ingress => e.ingress_isolated,
            Direction::Egress => e.egress_isolated,
        };
        if !isolated {
            return true;
        }
        let id = self
            .ipcache
            .iter()
            .filter(|(n, _)| n.contains(peer))
            .max_by_key(|(n, _)| n.prefix())
            .map_or(
                IpIdentity {
                    label: WORLD,
                    prefix: 0,
                },
                |(_, v)| *v,
            );
        let keys = [
            PortMatch::AnyProto,
            PortMatch::Proto(Proto::Tcp, PortBlock { port: 0, bits: 0 }),
            PortMatch::Proto(Proto::Tcp, PortBlock { port, bits: 16 }),
        ];
        [id.label, id.prefix, ANY].iter().any(|&peer| {
            keys.iter().any(|&ports| {
                self.rules
                    .contains(&(e.policy_id, dir, RuleKey { peer, ports }))
            })
        })
    }
}

/// xorshift64*, deterministic.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

const EPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 200, 0, 5), Ipv4Addr::new(10, 200, 0, 7)];
const PEERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 200, 1, 1),
    Ipv4Addr::new(10, 200, 1, 2),
    Ipv4Addr::new(10, 200, 1, 3),
];

type State = (
    BTreeMap<Ipv4Network, IpIdentity>,
    BTreeMap<Ipv4Addr, Desired>,
);

/// A policy: per endpoint, isolation and allowed (direction, label, ports), labels as ids
/// whose meaning never changes (as the translation's identities).
type Policy = BTreeMap<Ipv4Addr, Desired>;
/// Which label each peer carries (or none: gone).
type Labels = BTreeMap<Ipv4Addr, u32>;

fn random_policy(rng: &mut Rng) -> Policy {
    let mut eps = BTreeMap::new();
    for ep in EPS {
        if rng.below(4) == 0 {
            continue;
        }
        let mut rules = BTreeSet::new();
        for _ in 0..rng.below(4) {
            let dir = if rng.below(2) == 0 {
                Direction::Ingress
            } else {
                Direction::Egress
            };
            let peer = [ANY, 300, 301, 302][rng.below(4) as usize];
            let ports = match rng.below(3) {
                0 => PortMatch::AnyProto,
                1 => PortMatch::Proto(Proto::Tcp, PortBlock { port: 80, bits: 16 }),
                _ => PortMatch::Proto(Proto::Tcp, PortBlock { port: 0, bits: 0 }),
            };
            rules.insert((dir, RuleKey { peer, ports }));
        }
        eps.insert(
            ep,
            Desired {
                ingress: rng.below(2) == 0,
                egress: rng.below(2) == 0,
                rules,
            },
        );
    }
    eps
}

fn random_labels(rng: &mut Rng) -> Labels {
    let mut out = Labels::new();
    for p in PEERS {
        if rng.below(4) > 0 {
            out.insert(p, 300 + rng.below(3) as u32);
        }
    }
    out
}

/// What the translation would produce: the table from the labels, and keys only for labels
/// in use (as the translation emits keys for existing identities only).
fn state(policy: &Policy, labels: &Labels) -> State {
    let ipcache = labels
        .iter()
        .map(|(p, l)| {
            (
                Ipv4Network::new(*p, 32).unwrap(),
                IpIdentity {
                    label: *l,
                    prefix: 0,
                },
            )
        })
        .collect();
    let in_use: BTreeSet<u32> = labels.values().copied().collect();
    let eps = policy
        .iter()
        .map(|(ip, d)| {
            let rules = d
                .rules
                .iter()
                .filter(|(_, k)| k.peer == ANY || in_use.contains(&k.peer))
                .copied()
                .collect();
            (*ip, Desired { rules, ..d.clone() })
        })
        .collect();
    (ipcache, eps)
}

fn check_every_state(seed: u64, pass: usize, before: &Memory, after: &Memory, states: &[Memory]) {
    for (i, state) in states.iter().enumerate() {
        for ep in EPS {
            for dir in [Direction::Ingress, Direction::Egress] {
                for peer in PEERS {
                    for port in [80, 81] {
                        let (a, b) = (
                            before.allows(ep, dir, peer, port),
                            after.allows(ep, dir, peer, port),
                        );
                        if a == b {
                            assert_eq!(
                                state.allows(ep, dir, peer, port),
                                a,
                                "seed {seed}, pass {pass}, step {i}: {ep} {dir} {peer}:{port} (before and after say {a})"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn no_state_between_two_policies_opens_what_both_deny_or_closes_what_both_allow() {
    for seed in 1..=500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (p0, l0) = (random_policy(&mut rng), random_labels(&mut rng));
        // A pass changes the policy or the labels; both at once is two passes, the labels
        // under the old policy first (what the policy task does): the translation emits keys
        // only for identities in use, so the new policy alone could not know a new label yet.
        let (p1, l1) = match rng.below(3) {
            0 => (random_policy(&mut rng), l0.clone()),
            1 => (p0.clone(), random_labels(&mut rng)),
            _ => (random_policy(&mut rng), random_labels(&mut rng)),
        };
        let mut rec = PolicyReconciler::new(Recorder::default());
        let first = state(&p0, &l0);
        rec.apply(&first.0, &first.1).unwrap();
        // Each pass is one change seen from both sides: its before and after must agree with
        // every state in between.
        for (pass, next) in [state(&p0, &l1), state(&p1, &l1)].into_iter().enumerate() {
            let before = rec.maps.now.clone();
            rec.maps.states.clear();
            rec.apply(&next.0, &next.1).unwrap();
            let after = rec.maps.now.clone();
            check_every_state(seed, pass, &before, &after, &rec.maps.states);
        }
        let new = state(&p1, &l1);
        let after = rec.maps.now.clone();
        // The end state is exactly the new one: no stale keys or table entries.
        let mut fresh = PolicyReconciler::new(Recorder::default());
        fresh.apply(&new.0, &new.1).unwrap();
        assert_eq!(after.ipcache, fresh.maps.now.ipcache, "seed {seed}");
        let keys = |m: &Memory| -> BTreeMap<Ipv4Addr, BTreeSet<(Direction, RuleKey)>> {
            m.endpoints
                .iter()
                .map(|(ip, e)| {
                    let rules = m
                        .rules
                        .iter()
                        .filter(|(id, ..)| *id == e.policy_id)
                        .map(|(_, d, k)| (*d, *k))
                        .collect();
                    (*ip, rules)
                })
                .collect()
        };
        assert_eq!(keys(&after), keys(&fresh.maps.now), "seed {seed}");
        let live: BTreeSet<u32> = after.endpoints.values().map(|e| e.policy_id).collect();
        assert!(
            after.rules.iter().all(|(id, ..)| live.contains(id)),
            "seed {seed}: keys of a retired id remain"
        );
    }
}

#[test]
fn an_unchanged_state_writes_nothing() {
    let mut rng = Rng(7);
    let (ipcache, eps) = state(&random_policy(&mut rng), &random_labels(&mut rng));
    let mut rec = PolicyReconciler::new(Recorder::default());
    rec.apply(&ipcache, &eps).unwrap();
    assert_eq!(rec.apply(&ipcache, &eps).unwrap(), ApplyStats::default());
}
