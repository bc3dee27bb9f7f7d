//! The policy reconciler: the one writer of `IPCACHE4`, `POLICY4` and `POLICY_EP4`.
//!
//! Make-before-break. An endpoint's allowed keys live under a policy id; a change writes the
//! new keys under a fresh id, flips the endpoint's `POLICY_EP4` entry to it (one atomic
//! update) and only then removes the old keys, so a packet sees the old set or the new one.
//! When the address table changes in the same pass (a pod relabelled, an identity moved), its
//! entries cannot flip together with the endpoints', so the changed endpoints first get the
//! union of old and new keys, isolated only where both are, then the table is written, then
//! the new keys: traffic that the old and the new policy both allow is never dropped, traffic
//! they both deny never passes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use tracing::debug;

use super::maps::{PolicyEndpoint, PolicyMaps};
use crate::datapath::DatapathError;
use crate::policy::{Direction, EndpointPolicy, IpIdentity, RuleKey};

/// The writes the reconciler makes; [`PolicyMaps`] in the agent, a recorder in tests.
pub trait PolicyWriter {
    fn set_identity(&mut self, net: Ipv4Network, id: IpIdentity) -> Result<(), DatapathError>;
    fn remove_identity(&mut self, net: Ipv4Network) -> Result<(), DatapathError>;
    fn insert_rule(
        &mut self,
        policy_id: u32,
        dir: Direction,
        key: &RuleKey,
    ) -> Result<(), DatapathError>;
    fn remove_rule(
        &mut self,
        policy_id: u32,
        dir: Direction,
        key: &RuleKey,
    ) -> Result<(), DatapathError>;
    fn set_endpoint(&mut self, ip: Ipv4Addr, ep: &PolicyEndpoint) -> Result<(), DatapathError>;
    fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), DatapathError>;
}

impl PolicyWriter for PolicyMaps {
    fn set_identity(&mut self, net: Ipv4Network, id: IpIdentity) -> Result<(), DatapathError> {
        PolicyMaps::set_identity(self, net, id)
    }
    fn remove_identity(&mut self, net: Ipv4Network) -> Result<(), DatapathError> {
        PolicyMaps::remove_identity(self, net)
    }
    fn insert_rule(
        &mut self,
        policy_id: u32,
        dir: Direction,
        key: &RuleKey,
    ) -> Result<(), DatapathError> {
        PolicyMaps::insert_rule(self, policy_id, dir, key)
    }
    fn remove_rule(
        &mut self,
        policy_id: u32,
        dir: Direction,
        key: &RuleKey,
    ) -> Result<(), DatapathError> {
        PolicyMaps::remove_rule(self, policy_id, dir, key)
    }
    fn set_endpoint(&mut self, ip: Ipv4Addr, ep: &PolicyEndpoint) -> Result<(), DatapathError> {
        PolicyMaps::set_endpoint(self, ip, ep)
    }
    fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), DatapathError> {
        PolicyMaps::remove_endpoint(self, ip)
    }
}

/// What one local endpoint should hold: isolation per direction and its allowed keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub ingress: bool,
    pub egress: bool,
    pub rules: BTreeSet<(Direction, RuleKey)>,
}

impl Desired {
    /// The endpoint's entry, or `None` when no policy selects it (it stays untracked).
    pub fn of(ep: &EndpointPolicy) -> Option<Self> {
        if !ep.ingress.isolated() && !ep.egress.isolated() {
            return None;
        }
        let keys = |d: Direction| ep.direction(d).allow.keys().map(move |k| (d, *k));
        Some(Self {
            ingress: ep.ingress.isolated(),
            egress: ep.egress.isolated(),
            rules: keys(Direction::Ingress)
                .chain(keys(Direction::Egress))
                .collect(),
        })
    }

    /// The intermediate entry of a switch from `self` to `next`: both key sets, isolated only
    /// where both are.
    fn union(&self, next: &Self) -> Self {
        Self {
            ingress: self.ingress && next.ingress,
            egress: self.egress && next.egress,
            rules: self.rules.union(&next.rules).copied().collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Written {
    policy_id: u32,
    want: Desired,
}

/// What one pass wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Endpoints whose entry changed.
    pub endpoints: usize,
    /// Map entries written and removed.
    pub written: usize,
    pub removed: usize,
}

/// The writer of the policy maps and what it last wrote.
pub struct PolicyReconciler<W> {
    maps: W,
    ipcache: BTreeMap<Ipv4Network, IpIdentity>,
    endpoints: BTreeMap<Ipv4Addr, Written>,
    next_id: u32,
}

impl<W: PolicyWriter> PolicyReconciler<W> {
    /// A reconciler over maps that hold nothing yet.
    pub fn new(maps: W) -> Self {
        Self {
            maps,
            ipcache: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            next_id: 1,
        }
    }

    pub fn maps(&self) -> &W {
        &self.maps
    }

    /// The address table as last written.
    pub fn ipcache(&self) -> &BTreeMap<Ipv4Network, IpIdentity> {
        &self.ipcache
    }

    /// Make the maps hold `ipcache` and `endpoints` (the tracked local pods).
    pub fn apply(
        &mut self,
        ipcache: &BTreeMap<Ipv4Network, IpIdentity>,
        endpoints: &BTreeMap<Ipv4Addr, Desired>,
    ) -> Result<ApplyStats, DatapathError> {
        let mut stats = ApplyStats::default();
        let changed: Vec<Ipv4Addr> = self
            .endpoints
            .keys()
            .chain(endpoints.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|ip| self.endpoints.get(ip).map(|w| &w.want) != endpoints.get(ip))
            .copied()
            .collect();
        stats.endpoints = changed.len();
        let mut retired: Vec<(u32, Desired)> = Vec::new();

        if *ipcache != self.ipcache {
            // Endpoints first get both key sets, so neither table entry nor key is missing
            // while the table changes.
            let untracked = Desired::default();
            for ip in &changed {
                // An endpoint going untracked is let through in both directions meanwhile;
                // one becoming tracked waits for the last step (untracked lets all through).
                let Some(old) = self.endpoints.get(ip) else {
                    continue;
                };
                let union = old.want.union(endpoints.get(ip).unwrap_or(&untracked));
                if union != old.want {
                    self.write(*ip, union, &mut retired, &mut stats)?;
                }
            }
            for (net, id) in ipcache {
                if self.ipcache.get(net) != Some(id) {
                    self.maps.set_identity(*net, *id)?;
                    self.ipcache.insert(*net, *id);
                    stats.written += 1;
                }
            }
            let stale: Vec<Ipv4Network> = self
                .ipcache
                .keys()
                .filter(|n| !ipcache.contains_key(n))
                .copied()
                .collect();
            for net in stale {
                self.maps.remove_identity(net)?;
                self.ipcache.remove(&net);
                stats.removed += 1;
            }
        }
        for ip in &changed {
            match endpoints.get(ip) {
                Some(want) => {
                    if self.endpoints.get(ip).map(|w| &w.want) != Some(want) {
                        self.write(*ip, want.clone(), &mut retired, &mut stats)?;
                    }
                }
                None => {
                    if let Some(old) = self.endpoints.remove(ip) {
                        self.maps.remove_endpoint(*ip)?;
                        stats.removed += 1;
                        retired.push((old.policy_id, old.want));
                    }
                }
            }
        }
        for (id, want) in retired {
            for (dir, key) in &want.rules {
                self.maps.remove_rule(id, *dir, key)?;
                stats.removed += 1;
            }
        }
        if stats != ApplyStats::default() {
            debug!(?stats, "policy maps written");
        }
        Ok(stats)
    }

    /// Write `want` under a fresh id and point the endpoint at it; the old id's keys are the
    /// caller's to remove once every flip is done.
    fn write(
        &mut self,
        ip: Ipv4Addr,
        want: Desired,
        retired: &mut Vec<(u32, Desired)>,
        stats: &mut ApplyStats,
    ) -> Result<(), DatapathError> {
        let id = self.fresh_id();
        for (dir, key) in &want.rules {
            self.maps.insert_rule(id, *dir, key)?;
        }
        let ep = PolicyEndpoint {
            policy_id: id,
            ingress_isolated: want.ingress,
            egress_isolated: want.egress,
        };
        self.maps.set_endpoint(ip, &ep)?;
        stats.written += want.rules.len() + 1;
        if let Some(old) = self.endpoints.insert(
            ip,
            Written {
                policy_id: id,
                want,
            },
        ) {
            retired.push((old.policy_id, old.want));
        }
        Ok(())
    }

    /// The next policy id no endpoint uses (never 0; wraps around after 2^32 - 1).
    fn fresh_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if id != 0 && !self.endpoints.values().any(|w| w.policy_id == id) {
                return id;
            }
        }
    }
}

impl PolicyReconciler<PolicyMaps> {
    /// Adopt what an earlier agent wrote: the address table and each endpoint's entry with
    /// its keys become "what was written" (the next [`Self::apply`] changes only what
    /// differs); keys no endpoint points at (an interrupted switch) are removed.
    pub fn resume(mut maps: PolicyMaps) -> Result<Self, DatapathError> {
        let ipcache: BTreeMap<_, _> = maps.identities()?.into_iter().collect();
        let eps = maps.endpoints()?;
        let mut by_id: BTreeMap<u32, BTreeSet<(Direction, RuleKey)>> = BTreeMap::new();
        let mut orphans = Vec::new();
        for (len, data) in maps.raw_rules()? {
            match super::maps::decode_rule(len, &data) {
                Some((id, dir, key)) if eps.iter().any(|(_, e)| e.policy_id == id) => {
                    by_id.entry(id).or_default().insert((dir, key));
                }
                _ => orphans.push((len, data)),
            }
        }
        for (len, data) in orphans {
            maps.remove_raw_rule(len, data)?;
        }
        let endpoints: BTreeMap<Ipv4Addr, Written> = eps
            .into_iter()
            .map(|(ip, e)| {
                let want = Desired {
                    ingress: e.ingress_isolated,
                    egress: e.egress_isolated,
                    rules: by_id.get(&e.policy_id).cloned().unwrap_or_default(),
                };
                (
                    ip,
                    Written {
                        policy_id: e.policy_id,
                        want,
                    },
                )
            })
            .collect();
        let next_id = endpoints
            .values()
            .map(|w| w.policy_id)
            .max()
            .unwrap_or(0)
            .wrapping_add(1)
            .max(1);
        Ok(Self {
            maps,
            ipcache,
            endpoints,
            next_id,
        })
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
