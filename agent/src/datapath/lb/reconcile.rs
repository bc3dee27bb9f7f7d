//! The LB reconciler: the only writer of `LB4_SERVICES`, `LB4_SLOTS`, `LB4_BACKENDS` and
//! `LB4_REVNAT`. It keeps what it programmed, compares it with the desired state from
//! [`crate::lb`], and writes only the difference, in an order that never shows a packet half a
//! Service:
//!
//! 1. backends (new ones, changed flags);
//! 2. per changed frontend: its new slots, its reverse-NAT entry (new frontends), then the
//!    frontend entry itself in one update (count + generation + flags), then the slots of the
//!    generation it no longer uses;
//! 3. removed frontends: the frontend entry first, then its slots and reverse-NAT entry;
//! 4. backends no frontend lists any more.
//!
//! Appending backends keeps the generation (a packet reading the old count never reads the new
//! slots); any other change writes the whole set under the other generation and flips.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use dataplane_common::lb::{
    LB4_BACKEND_F_LOCAL, LB4_BACKEND_F_NOT_SERVING, LB4_BACKEND_F_TERMINATING,
    LB4_KIND_CLUSTER_IP, LB4_KIND_EXTERNAL_IP, LB4_KIND_LOAD_BALANCER, LB4_KIND_NODE_PORT,
    LB4_SCOPE_EXT, LB4_SCOPE_INT, LB4_SVC_F_AFFINITY, LB4_SVC_F_SNAT_REMOTE,
    LB4_SVC_F_TWO_SCOPES,
};
use dataplane_common::{Lb4Backend, Lb4Key, Lb4RevNat, Lb4Service, Lb4Slot, Lb4SlotKey};
use tracing::{debug, info, warn};

use super::store::LbStore;
use super::{BackendId, RevNatId};
use crate::datapath::DatapathError;
use crate::lb::{
    Backend, BackendState, Frontend, FrontendKind, FrontendSpec, Protocol, Scope, Service,
    ServiceName,
};

/// What one reconcile call (or all of them, see [`Reconciler::totals`]) did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReconcileStats {
    pub frontends_added: u64,
    pub frontends_updated: u64,
    pub frontends_removed: u64,
    pub frontends_unchanged: u64,
    pub backends_added: u64,
    pub backends_updated: u64,
    pub backends_removed: u64,
    pub slots_written: u64,
    pub slots_removed: u64,
    pub affinity_purged: u64,
}

impl ReconcileStats {
    fn add(&mut self, o: &Self) {
        self.frontends_added += o.frontends_added;
        self.frontends_updated += o.frontends_updated;
        self.frontends_removed += o.frontends_removed;
        self.frontends_unchanged += o.frontends_unchanged;
        self.backends_added += o.backends_added;
        self.backends_updated += o.backends_updated;
        self.backends_removed += o.backends_removed;
        self.slots_written += o.slots_written;
        self.slots_removed += o.slots_removed;
        self.affinity_purged += o.affinity_purged;
    }

    /// Map entries written or removed.
    pub fn writes(&self) -> u64 {
        self.frontends_added
            + self.frontends_updated
            + self.frontends_removed
            + self.backends_added
            + self.backends_updated
            + self.backends_removed
            + self.slots_written
            + self.slots_removed
    }
}

/// A backend's identity: one `LB4_BACKENDS` entry per address, port and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
}

/// A programmed frontend.
#[derive(Debug, Clone)]
struct Programmed {
    owner: Option<ServiceName>,
    /// The spec last applied (`None` right after a resume: unknown, so any spec differs).
    spec: Option<FrontendSpec>,
    value: Lb4Service,
    /// Backend of each slot of the current generation.
    slots: Vec<BackendId>,
    /// Backends this frontend lists (any state).
    refs: BTreeSet<BackendAddr>,
}

/// A programmed backend and which frontends list it, in which state.
#[derive(Debug, Clone)]
struct BackendEntry {
    id: BackendId,
    value: Lb4Backend,
    refs: BTreeMap<Frontend, Backend>,
}

/// One frontend as programmed, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgrammedFrontend {
    pub frontend: Frontend,
    pub owner: Option<ServiceName>,
    pub port_name: Option<String>,
    pub rev_nat_id: RevNatId,
}

/// Programmed LB state and the rules for changing it.
#[derive(Debug, Default)]
pub struct Reconciler {
    frontends: BTreeMap<Frontend, Programmed>,
    backends: BTreeMap<BackendAddr, BackendEntry>,
    ids: HashMap<BackendId, BackendAddr>,
    rev_nat_ids: BTreeSet<RevNatId>,
    next_backend_id: u32,
    next_rev_nat_id: u16,
    totals: ReconcileStats,
}

impl Reconciler {
    /// Take over what the pinned maps hold (after an agent restart): frontends, their current
    /// slots and backends are adopted without an owner; slots of unused generations and
    /// reverse-NAT entries without a frontend (leftovers of an interrupted update) are removed.
    /// A full [`Reconciler::sync`] should follow once the desired state is known.
    pub fn resume(store: &mut impl LbStore) -> Result<Self, DatapathError> {
        let mut r = Self {
            next_backend_id: 1,
            next_rev_nat_id: 1,
            ..Self::default()
        };
        for (id, value) in store.read_backends()? {
            let Some(protocol) = Protocol::from_number(value.proto) else {
                warn!(id = id.0, proto = value.proto, "removing a backend of an unknown protocol");
                store.delete_backend(id)?;
                continue;
            };
            let addr = BackendAddr {
                addr: Ipv4Addr::from(value.addr_be),
                port: u16::from_be(value.port_be),
                protocol,
            };
            r.ids.insert(id, addr);
            r.backends.insert(
                addr,
                BackendEntry {
                    id,
                    value,
                    refs: BTreeMap::new(),
                },
            );
            r.next_backend_id = r.next_backend_id.max(id.0.wrapping_add(1)).max(1);
        }
        let mut by_rev: HashMap<RevNatId, Frontend> = HashMap::new();
        for (key, value) in store.read_services()? {
            let Some(frontend) = frontend_of(&key) else {
                warn!(?key, "removing a frontend of an unknown protocol or scope");
                store.delete_service(&key)?;
                continue;
            };
            let id = RevNatId(value.rev_nat_id);
            by_rev.insert(id, frontend);
            r.rev_nat_ids.insert(id);
            r.next_rev_nat_id = r.next_rev_nat_id.max(id.0.wrapping_add(1)).max(1);
            r.frontends.insert(
                frontend,
                Programmed {
                    owner: None,
                    spec: None,
                    value,
                    slots: vec![BackendId(0); value.count as usize],
                    refs: BTreeSet::new(),
                },
            );
        }
        for (key, slot) in store.read_slots()? {
            let current = by_rev
                .get(&RevNatId(key.rev_nat_id))
                .and_then(|f| r.frontends.get_mut(f))
                .filter(|p| {
                    p.value.generation == key.generation && (key.slot as usize) < p.slots.len()
                });
            match current {
                Some(p) => p.slots[key.slot as usize] = BackendId(slot.backend_id),
                None => {
                    debug!(?key, "removing a slot of an unused generation");
                    store.delete_slot(&key)?;
                }
            }
        }
        for (id, _) in store.read_revnats()? {
            if !by_rev.contains_key(&id) {
                debug!(id = id.0, "removing a reverse-NAT entry without a frontend");
                store.delete_revnat(id)?;
            }
        }
        for (frontend, p) in &mut r.frontends {
            if p.slots.contains(&BackendId(0)) {
                warn!(%frontend, "frontend with missing slots; it is rewritten on the next sync");
                p.slots.clear();
            }
            for id in &p.slots {
                if let Some(addr) = r.ids.get(id) {
                    p.refs.insert(*addr);
                    let b = r.backends.get_mut(addr).expect("ids and backends agree");
                    b.refs.insert(
                        *frontend,
                        Backend {
                            addr: addr.addr,
                            port: addr.port,
                            state: BackendState::Active,
                            terminating: false,
                            local: b.value.flags & LB4_BACKEND_F_LOCAL != 0,
                        },
                    );
                }
            }
        }
        info!(
            frontends = r.frontends.len(),
            backends = r.backends.len(),
            "LB state resumed from the pinned maps"
        );
        Ok(r)
    }

    /// Make the maps hold exactly `services`: every frontend not among them is removed. For the
    /// first sync after a (re)start and after a watcher re-list.
    pub fn sync(
        &mut self,
        store: &mut impl LbStore,
        services: &[Service],
    ) -> Result<ReconcileStats, DatapathError> {
        let mut desired: BTreeMap<Frontend, (ServiceName, FrontendSpec)> = BTreeMap::new();
        let mut sorted: Vec<&Service> = services.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for svc in sorted {
            for spec in &svc.frontends {
                if let Some((other, _)) = desired.get(&spec.frontend) {
                    warn!(frontend = %spec.frontend, kept = %other, ignored = %svc.name,
                        "two Services claim the same frontend");
                    continue;
                }
                desired.insert(spec.frontend, (svc.name.clone(), spec.clone()));
            }
        }
        let remove: Vec<Frontend> = self
            .frontends
            .keys()
            .filter(|f| !desired.contains_key(f))
            .copied()
            .collect();
        let mut stats = self.apply(store, desired.into_values().collect(), remove)?;
        // Backends adopted on resume that no frontend lists (draining ones are not visible in
        // the slots) go now.
        let orphans: Vec<BackendAddr> = self
            .backends
            .iter()
            .filter(|(_, e)| e.refs.is_empty())
            .map(|(a, _)| *a)
            .collect();
        for addr in orphans {
            let entry = self.backends.remove(&addr).expect("listed above");
            self.ids.remove(&entry.id);
            store.delete_backend(entry.id)?;
            stats.backends_removed += 1;
            self.totals.backends_removed += 1;
        }
        Ok(stats)
    }

    /// Program one Service (added or changed): its frontends as given, and none of the
    /// frontends it had before and no longer has. A frontend another Service owns is left alone.
    pub fn upsert(
        &mut self,
        store: &mut impl LbStore,
        svc: &Service,
    ) -> Result<ReconcileStats, DatapathError> {
        let mut desired = Vec::new();
        for spec in &svc.frontends {
            match self.frontends.get(&spec.frontend).and_then(|p| p.owner.as_ref()) {
                Some(owner) if *owner != svc.name => {
                    warn!(frontend = %spec.frontend, kept = %owner, ignored = %svc.name,
                        "two Services claim the same frontend");
                }
                _ => desired.push((svc.name.clone(), spec.clone())),
            }
        }
        let wanted: BTreeSet<Frontend> = svc.frontends.iter().map(|s| s.frontend).collect();
        let remove = self.owned_by(&svc.name, |f| !wanted.contains(f));
        self.apply(store, desired, remove)
    }

    /// Remove every frontend of a deleted Service.
    pub fn delete(
        &mut self,
        store: &mut impl LbStore,
        name: &ServiceName,
    ) -> Result<ReconcileStats, DatapathError> {
        let remove = self.owned_by(name, |_| true);
        self.apply(store, Vec::new(), remove)
    }

    /// Everything done since this reconciler started.
    pub fn totals(&self) -> ReconcileStats {
        self.totals
    }

    /// Frontends as programmed, in order.
    pub fn frontends(&self) -> Vec<ProgrammedFrontend> {
        self.frontends
            .iter()
            .map(|(f, p)| ProgrammedFrontend {
                frontend: *f,
                owner: p.owner.clone(),
                port_name: p.spec.as_ref().map(|s| s.port_name.clone()),
                rev_nat_id: RevNatId(p.value.rev_nat_id),
            })
            .collect()
    }

    /// Number of programmed frontends and backends.
    pub fn counts(&self) -> (usize, usize) {
        (self.frontends.len(), self.backends.len())
    }

    fn owned_by(&self, name: &ServiceName, keep: impl Fn(&Frontend) -> bool) -> Vec<Frontend> {
        self.frontends
            .iter()
            .filter(|(f, p)| p.owner.as_ref() == Some(name) && keep(f))
            .map(|(f, _)| *f)
            .collect()
    }

    fn apply(
        &mut self,
        store: &mut impl LbStore,
        desired: Vec<(ServiceName, FrontendSpec)>,
        remove: Vec<Frontend>,
    ) -> Result<ReconcileStats, DatapathError> {
        let mut stats = ReconcileStats::default();
        let mut changed = Vec::new();
        for (owner, spec) in desired {
            match self.frontends.get_mut(&spec.frontend) {
                Some(p) if p.spec.as_ref() == Some(&spec) => {
                    p.owner = Some(owner);
                    stats.frontends_unchanged += 1;
                }
                _ => changed.push((owner, spec)),
            }
        }

        // 1. Backends first: new ones and changed flags, so every slot written below names an
        //    existing backend.
        let mut touched: BTreeSet<BackendAddr> = BTreeSet::new();
        for (_, spec) in &changed {
            touched.extend(self.set_refs(spec.frontend, Some(spec)));
        }
        for f in &remove {
            touched.extend(self.set_refs(*f, None));
        }
        let mut unused = Vec::new();
        for addr in &touched {
            let entry = self.backends.get(addr).expect("set_refs creates entries");
            if entry.refs.is_empty() {
                unused.push(*addr);
                continue;
            }
            let value = backend_value(addr, entry.refs.values());
            let new = entry.value == Lb4Backend::default();
            if new || value != entry.value {
                store.put_backend(entry.id, &value)?;
                if new {
                    stats.backends_added += 1;
                } else {
                    stats.backends_updated += 1;
                }
                self.backends.get_mut(addr).expect("present").value = value;
            }
        }

        // 2. Changed frontends.
        for (owner, spec) in changed {
            self.program(store, owner, spec, &mut stats)?;
        }

        // 3. Removed frontends: the frontend entry first.
        for f in remove {
            let Some(p) = self.frontends.remove(&f) else {
                continue;
            };
            store.delete_service(&key_of(&f))?;
            self.delete_slots(store, &p.value, p.slots.len(), &mut stats)?;
            let id = RevNatId(p.value.rev_nat_id);
            store.delete_revnat(id)?;
            if p.value.flags & LB4_SVC_F_AFFINITY != 0 {
                stats.affinity_purged += store.purge_affinity(id, &[])? as u64;
            }
            self.rev_nat_ids.remove(&id);
            stats.frontends_removed += 1;
            info!(frontend = %f, owner = ?p.owner.map(|o| o.to_string()), "frontend removed");
        }

        // 4. Backends nobody lists any more.
        for addr in unused {
            if let Some(entry) = self.backends.remove(&addr) {
                if entry.value != Lb4Backend::default() {
                    store.delete_backend(entry.id)?;
                    stats.backends_removed += 1;
                }
                self.ids.remove(&entry.id);
            }
        }
        self.totals.add(&stats);
        if stats.writes() > 0 {
            info!(?stats, "LB maps updated");
        }
        Ok(stats)
    }

    /// Record which backends `frontend` lists (none when `spec` is `None`), allocating ids for
    /// new backends. Returns the backend addresses whose references changed.
    fn set_refs(&mut self, frontend: Frontend, spec: Option<&FrontendSpec>) -> Vec<BackendAddr> {
        let protocol = frontend.protocol;
        let new: BTreeMap<BackendAddr, Backend> = spec
            .map(|s| {
                s.backends
                    .iter()
                    .map(|b| {
                        let addr = BackendAddr {
                            addr: b.addr,
                            port: b.port,
                            protocol,
                        };
                        (addr, *b)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let old: BTreeSet<BackendAddr> = self
            .frontends
            .get(&frontend)
            .map(|p| p.refs.clone())
            .unwrap_or_default();
        let mut touched: Vec<BackendAddr> = Vec::new();
        for addr in old.iter().filter(|a| !new.contains_key(a)) {
            if let Some(e) = self.backends.get_mut(addr) {
                e.refs.remove(&frontend);
                touched.push(*addr);
            }
        }
        for (addr, b) in &new {
            if !self.backends.contains_key(addr) {
                let id = self.alloc_backend_id();
                self.ids.insert(id, *addr);
                self.backends.insert(
                    *addr,
                    BackendEntry {
                        id,
                        value: Lb4Backend::default(),
                        refs: BTreeMap::new(),
                    },
                );
            }
            let e = self.backends.get_mut(addr).expect("inserted above");
            if e.refs.insert(frontend, *b) != Some(*b) {
                touched.push(*addr);
            }
        }
        if let Some(p) = self.frontends.get_mut(&frontend) {
            p.refs = new.keys().copied().collect();
        }
        touched
    }

    /// Write one new or changed frontend: slots, reverse NAT, the frontend entry, then the old
    /// generation's slots go.
    fn program(
        &mut self,
        store: &mut impl LbStore,
        owner: ServiceName,
        spec: FrontendSpec,
        stats: &mut ReconcileStats,
    ) -> Result<(), DatapathError> {
        let f = spec.frontend;
        let mut active: Vec<BackendId> = Vec::new();
        for b in spec.active() {
            let addr = BackendAddr {
                addr: b.addr,
                port: b.port,
                protocol: f.protocol,
            };
            active.push(self.backends[&addr].id);
        }
        if active.len() > u16::MAX as usize {
            warn!(frontend = %f, backends = active.len(), "more backends than slots; extra ones unused");
            active.truncate(u16::MAX as usize);
        }
        let old = self.frontends.get(&f).cloned();
        // Survivors keep their slots; new backends are appended.
        let order: Vec<BackendId> = match &old {
            Some(p) => {
                let mut v: Vec<BackendId> =
                    p.slots.iter().filter(|id| active.contains(id)).copied().collect();
                let mut added: Vec<BackendId> =
                    active.iter().filter(|id| !v.contains(id)).copied().collect();
                added.sort();
                v.extend(added);
                v
            }
            None => {
                let mut v = active.clone();
                v.sort();
                v
            }
        };
        let (rev_nat_id, is_new) = match &old {
            Some(p) => (RevNatId(p.value.rev_nat_id), false),
            None => (self.alloc_rev_nat_id()?, true),
        };
        let append_only = old.as_ref().is_some_and(|p| order.starts_with(&p.slots));
        let (generation, first) = match &old {
            Some(p) if append_only => (p.value.generation, p.slots.len()),
            Some(p) => (p.value.generation ^ 1, 0),
            None => (0, 0),
        };
        for (slot, id) in order.iter().enumerate().skip(first) {
            let key = slot_key(rev_nat_id, generation, slot as u16);
            store.put_slot(&key, &Lb4Slot { backend_id: id.0 })?;
            stats.slots_written += 1;
        }
        if is_new {
            store.put_revnat(
                rev_nat_id,
                &Lb4RevNat {
                    addr_be: f.addr.octets(),
                    port_be: f.port.to_be(),
                    _pad: 0,
                },
            )?;
        }
        let value = service_value(&spec, rev_nat_id, order.len() as u16, generation);
        if old.as_ref().map(|p| p.value) != Some(value) {
            store.put_service(&key_of(&f), &value)?;
        }
        if let Some(p) = &old {
            if !append_only {
                self.delete_slots(store, &p.value, p.slots.len(), stats)?;
            }
            if value.flags & LB4_SVC_F_AFFINITY != 0 {
                let gone: Vec<BackendId> =
                    p.slots.iter().filter(|id| !order.contains(id)).copied().collect();
                if !gone.is_empty() {
                    stats.affinity_purged += store.purge_affinity(rev_nat_id, &gone)? as u64;
                }
            }
            stats.frontends_updated += 1;
            debug!(frontend = %f, backends = order.len(), generation, "frontend updated");
        } else {
            stats.frontends_added += 1;
            info!(frontend = %f, service = %owner, backends = order.len(), "frontend added");
        }
        let refs = spec
            .backends
            .iter()
            .map(|b| BackendAddr {
                addr: b.addr,
                port: b.port,
                protocol: f.protocol,
            })
            .collect();
        self.frontends.insert(
            f,
            Programmed {
                owner: Some(owner),
                spec: Some(spec),
                value,
                slots: order,
                refs,
            },
        );
        Ok(())
    }

    fn delete_slots(
        &self,
        store: &mut impl LbStore,
        value: &Lb4Service,
        n: usize,
        stats: &mut ReconcileStats,
    ) -> Result<(), DatapathError> {
        for slot in 0..n {
            store.delete_slot(&slot_key(
                RevNatId(value.rev_nat_id),
                value.generation,
                slot as u16,
            ))?;
            stats.slots_removed += 1;
        }
        Ok(())
    }

    fn alloc_backend_id(&mut self) -> BackendId {
        loop {
            let id = BackendId(self.next_backend_id.max(1));
            self.next_backend_id = id.0.wrapping_add(1);
            if !self.ids.contains_key(&id) {
                return id;
            }
        }
    }

    /// Round robin over 1..=65535, so a removed frontend's id is not reused soon (stale
    /// conntrack replies name it until they expire).
    fn alloc_rev_nat_id(&mut self) -> Result<RevNatId, DatapathError> {
        for _ in 0..u16::MAX {
            let id = RevNatId(self.next_rev_nat_id.max(1));
            self.next_rev_nat_id = id.0.wrapping_add(1);
            if self.rev_nat_ids.insert(id) {
                return Ok(id);
            }
        }
        Err(DatapathError::LbIdsExhausted { what: "frontend" })
    }
}

/// The `LB4_BACKENDS` value of `addr` given every frontend's view of it: not serving only if
/// no frontend lists it as serving.
fn backend_value<'a>(addr: &BackendAddr, refs: impl Iterator<Item = &'a Backend>) -> Lb4Backend {
    let mut flags = LB4_BACKEND_F_NOT_SERVING;
    for b in refs {
        if b.state != BackendState::NotServing {
            flags &= !LB4_BACKEND_F_NOT_SERVING;
        }
        if b.terminating {
            flags |= LB4_BACKEND_F_TERMINATING;
        }
        if b.local {
            flags |= LB4_BACKEND_F_LOCAL;
        }
    }
    Lb4Backend {
        addr_be: addr.addr.octets(),
        port_be: addr.port.to_be(),
        proto: addr.protocol.number(),
        flags,
    }
}

fn service_value(spec: &FrontendSpec, id: RevNatId, count: u16, generation: u8) -> Lb4Service {
    let mut flags = 0;
    if spec.affinity_timeout_s.is_some() {
        flags |= LB4_SVC_F_AFFINITY;
    }
    if spec.two_scopes {
        flags |= LB4_SVC_F_TWO_SCOPES;
    }
    if spec.snat_remote.is_some() {
        flags |= LB4_SVC_F_SNAT_REMOTE;
    }
    Lb4Service {
        rev_nat_id: id.0,
        count,
        flags,
        generation,
        kind: match spec.kind {
            FrontendKind::ClusterIp => LB4_KIND_CLUSTER_IP,
            FrontendKind::NodePort => LB4_KIND_NODE_PORT,
            FrontendKind::ExternalIp => LB4_KIND_EXTERNAL_IP,
            FrontendKind::LoadBalancer => LB4_KIND_LOAD_BALANCER,
        },
        affinity_timeout_s: spec.affinity_timeout_s.unwrap_or(0),
        snat_addr_be: spec.snat_remote.map(|a| a.octets()).unwrap_or([0; 4]),
    }
}

fn slot_key(id: RevNatId, generation: u8, slot: u16) -> Lb4SlotKey {
    Lb4SlotKey {
        rev_nat_id: id.0,
        slot,
        generation,
        _pad: [0; 3],
    }
}

/// The `LB4_SERVICES` key of a frontend.
pub fn key_of(f: &Frontend) -> Lb4Key {
    Lb4Key {
        addr_be: f.addr.octets(),
        port_be: f.port.to_be(),
        proto: f.protocol.number(),
        scope: match f.scope {
            Scope::External => LB4_SCOPE_EXT,
            Scope::Internal => LB4_SCOPE_INT,
        },
    }
}

/// The frontend of an `LB4_SERVICES` key (`None` for a protocol or scope this build does not
/// know).
pub fn frontend_of(k: &Lb4Key) -> Option<Frontend> {
    Some(Frontend {
        addr: Ipv4Addr::from(k.addr_be),
        port: u16::from_be(k.port_be),
        protocol: Protocol::from_number(k.proto)?,
        scope: match k.scope {
            LB4_SCOPE_EXT => Scope::External,
            LB4_SCOPE_INT => Scope::Internal,
            _ => return None,
        },
    })
}
