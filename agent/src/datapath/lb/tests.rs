//! Reconciler tests on the in-memory store: what is written, and in which order.

use std::net::Ipv4Addr;

use dataplane_common::lb::{LB4_BACKEND_F_LOCAL, LB4_BACKEND_F_NOT_SERVING, LB4_SVC_F_AFFINITY};

use super::store::{MemStore, Op};
use super::*;
use crate::lb::{
    Backend, BackendState, Frontend, FrontendKind, FrontendSpec, Protocol, Scope, Service,
    ServiceName,
};

fn name(n: &str) -> ServiceName {
    ServiceName {
        namespace: "default".into(),
        name: n.into(),
    }
}

fn frontend(last: u8, port: u16) -> Frontend {
    Frontend {
        addr: Ipv4Addr::new(10, 32, 0, last),
        port,
        protocol: Protocol::Tcp,
        scope: Scope::External,
    }
}

fn backend(last: u8, state: BackendState) -> Backend {
    Backend {
        addr: Ipv4Addr::new(10, 200, 0, last),
        port: 8080,
        state,
        terminating: false,
        local: last < 100,
    }
}

fn spec(f: Frontend, backends: &[Backend]) -> FrontendSpec {
    FrontendSpec {
        frontend: f,
        kind: FrontendKind::ClusterIp,
        port_name: String::new(),
        backends: backends.to_vec(),
        affinity_timeout_s: None,
        two_scopes: false,
        snat_remote: None,
    }
}

fn service(n: &str, frontends: Vec<FrontendSpec>) -> Service {
    Service {
        name: name(n),
        frontends,
        skipped: Vec::new(),
    }
}

fn active(lasts: &[u8]) -> Vec<Backend> {
    lasts
        .iter()
        .map(|l| backend(*l, BackendState::Active))
        .collect()
}

/// Position of the first op matching `pred`.
fn pos(ops: &[Op], pred: impl Fn(&Op) -> bool) -> usize {
    ops.iter()
        .position(pred)
        .unwrap_or_else(|| panic!("op not found in {ops:#?}"))
}

fn service_value(store: &MemStore, f: &Frontend) -> dataplane_common::Lb4Service {
    let key = key_of(f);
    store
        .services
        .values()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .expect("frontend programmed")
}

/// The backend addresses a packet can reach through `f`'s current slots.
fn reachable(store: &MemStore, f: &Frontend) -> Vec<Ipv4Addr> {
    let v = service_value(store, f);
    (0..v.count)
        .map(|slot| {
            let id = store.slots[&(v.rev_nat_id, v.generation, slot)].backend_id;
            Ipv4Addr::from(store.backends[&BackendId(id)].addr_be)
        })
        .collect()
}

#[test]
fn a_new_service_writes_backends_then_slots_then_revnat_then_the_frontend() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let f = frontend(10, 80);
    let stats = r
        .upsert(&mut store, &service("web", vec![spec(f, &active(&[2, 1]))]))
        .unwrap();

    let ops = &store.ops;
    let last_backend = ops.iter().rposition(|o| matches!(o, Op::PutBackend(_))).unwrap();
    let first_slot = pos(ops, |o| matches!(o, Op::PutSlot(..)));
    let revnat = pos(ops, |o| matches!(o, Op::PutRevNat(_)));
    let svc = pos(ops, |o| matches!(o, Op::PutService(..)));
    assert!(last_backend < first_slot && first_slot < revnat && revnat < svc, "{ops:#?}");
    assert_eq!(svc, ops.len() - 1, "the frontend is the last write");
    assert_eq!(
        reachable(&store, &f),
        [Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2)]
    );
    assert_eq!(stats.frontends_added, 1);
    assert_eq!(stats.backends_added, 2);
    assert_eq!(stats.slots_written, 2);
    let b = store.backends.values().next().unwrap();
    assert_eq!(b.flags & LB4_BACKEND_F_LOCAL, LB4_BACKEND_F_LOCAL);
}

#[test]
fn an_unchanged_service_writes_nothing() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let svc = service("web", vec![spec(frontend(10, 80), &active(&[1, 2]))]);
    r.upsert(&mut store, &svc).unwrap();
    let before = store.ops.len();
    let stats = r.upsert(&mut store, &svc).unwrap();
    assert_eq!(store.ops.len(), before, "{:#?}", &store.ops[before..]);
    assert_eq!(stats.writes(), 0);
    assert_eq!(stats.frontends_unchanged, 1);
}

#[test]
fn appending_a_backend_writes_only_its_slot_then_the_count() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let f = frontend(10, 80);
    r.upsert(&mut store, &service("web", vec![spec(f, &active(&[1, 2]))]))
        .unwrap();
    let generation = service_value(&store, &f).generation;
    store.ops.clear();

    r.upsert(&mut store, &service("web", vec![spec(f, &active(&[1, 2, 3]))]))
        .unwrap();

    let ops = &store.ops;
    assert!(matches!(ops[0], Op::PutBackend(_)), "{ops:#?}");
    assert!(
        matches!(ops[1], Op::PutSlot(k, _) if k.slot == 2 && k.generation == generation),
        "{ops:#?}"
    );
    assert!(matches!(ops[2], Op::PutService(_, v) if v.count == 3 && v.generation == generation));
    assert_eq!(ops.len(), 3, "{ops:#?}");
}

#[test]
fn removing_a_backend_flips_the_generation_before_anything_is_deleted() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let f = frontend(10, 80);
    r.upsert(&mut store, &service("web", vec![spec(f, &active(&[1, 2, 3]))]))
        .unwrap();
    let old = service_value(&store, &f);
    store.ops.clear();

    let stats = r
        .upsert(&mut store, &service("web", vec![spec(f, &active(&[1, 3]))]))
        .unwrap();

    let ops = &store.ops;
    let flip = pos(ops, |o| matches!(o, Op::PutService(..)));
    let new_slots: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Op::PutSlot(k, _) if k.generation != old.generation))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(new_slots.len(), 2, "{ops:#?}");
    assert!(new_slots.iter().all(|i| *i < flip), "new slots before the flip: {ops:#?}");
    let deletes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Op::DeleteSlot(_) | Op::DeleteBackend(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(deletes.iter().all(|i| *i > flip), "deletes after the flip: {ops:#?}");
    assert!(matches!(ops.last(), Some(Op::DeleteBackend(_))), "{ops:#?}");
    let new = service_value(&store, &f);
    assert_eq!(new.generation, old.generation ^ 1);
    assert_eq!(new.rev_nat_id, old.rev_nat_id, "a frontend keeps its id");
    assert_eq!(
        reachable(&store, &f),
        [Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 3)],
        "survivors keep their order"
    );
    assert!(
        !store.slots.keys().any(|(_, g, _)| *g == old.generation),
        "no slot of the old generation is left"
    );
    assert_eq!((stats.backends_removed, stats.slots_removed), (1, 3));
}

#[test]
fn deleting_a_service_removes_the_frontend_first_and_backends_last() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let f = frontend(10, 80);
    r.upsert(&mut store, &service("web", vec![spec(f, &active(&[1, 2]))]))
        .unwrap();
    store.ops.clear();

    let stats = r.delete(&mut store, &name("web")).unwrap();

    let ops = &store.ops;
    assert!(matches!(ops[0], Op::DeleteService(_)), "{ops:#?}");
    let revnat = pos(ops, |o| matches!(o, Op::DeleteRevNat(_)));
    let first_backend = pos(ops, |o| matches!(o, Op::DeleteBackend(_)));
    assert!(revnat < first_backend);
    assert!(store.services.is_empty() && store.slots.is_empty());
    assert!(store.backends.is_empty() && store.revnats.is_empty());
    assert_eq!(stats.frontends_removed, 1);
    assert_eq!(r.counts(), (0, 0));
}

#[test]
fn a_backend_shared_by_two_frontends_is_one_entry_and_outlives_one_of_them() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let (a, b) = (frontend(10, 80), frontend(11, 80));
    r.upsert(&mut store, &service("a", vec![spec(a, &active(&[1]))]))
        .unwrap();
    r.upsert(&mut store, &service("b", vec![spec(b, &active(&[1]))]))
        .unwrap();
    assert_eq!(store.backends.len(), 1);
    r.delete(&mut store, &name("a")).unwrap();
    assert_eq!(store.backends.len(), 1, "still used by b");
    assert_eq!(reachable(&store, &b), [Ipv4Addr::new(10, 200, 0, 1)]);
    r.delete(&mut store, &name("b")).unwrap();
    assert!(store.backends.is_empty());
}

#[test]
fn draining_and_not_serving_backends_are_known_but_get_no_slot() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let f = frontend(10, 80);
    let backends = [
        backend(1, BackendState::Active),
        backend(2, BackendState::Draining),
        backend(3, BackendState::NotServing),
    ];
    r.upsert(&mut store, &service("web", vec![spec(f, &backends)]))
        .unwrap();
    assert_eq!(reachable(&store, &f), [Ipv4Addr::new(10, 200, 0, 1)]);
    assert_eq!(store.backends.len(), 3, "existing flows to 2 and 3 still find them");
    let flags = |store: &MemStore, last: u8| {
        store
            .backends
            .values()
            .find(|b| b.addr_be == [10, 200, 0, last])
            .unwrap()
            .flags
    };
    assert_eq!(flags(&store, 2) & LB4_BACKEND_F_NOT_SERVING, 0);
    assert_ne!(flags(&store, 3) & LB4_BACKEND_F_NOT_SERVING, 0);

    // Serving through another frontend: not flagged.
    let g = frontend(11, 80);
    r.upsert(&mut store, &service("other", vec![spec(g, &active(&[3]))]))
        .unwrap();
    assert_eq!(flags(&store, 3) & LB4_BACKEND_F_NOT_SERVING, 0);
}

#[test]
fn a_service_losing_a_frontend_removes_only_that_one() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let (http, https) = (frontend(10, 80), frontend(10, 443));
    r.upsert(
        &mut store,
        &service(
            "web",
            vec![spec(http, &active(&[1])), spec(https, &active(&[1]))],
        ),
    )
    .unwrap();
    let stats = r
        .upsert(&mut store, &service("web", vec![spec(http, &active(&[1]))]))
        .unwrap();
    assert_eq!((stats.frontends_removed, stats.frontends_unchanged), (1, 1));
    assert_eq!(store.services.len(), 1);
}

#[test]
fn affinity_to_a_backend_that_left_is_purged() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let f = frontend(10, 80);
    let mut s = spec(f, &active(&[1, 2]));
    s.affinity_timeout_s = Some(60);
    r.upsert(&mut store, &service("sticky", vec![s.clone()]))
        .unwrap();
    assert_ne!(service_value(&store, &f).flags & LB4_SVC_F_AFFINITY, 0);
    let gone = store
        .backends
        .iter()
        .find(|(_, b)| b.addr_be == [10, 200, 0, 2])
        .map(|(id, _)| *id)
        .unwrap();
    store.ops.clear();
    s.backends = active(&[1]);
    r.upsert(&mut store, &service("sticky", vec![s])).unwrap();
    let id = RevNatId(service_value(&store, &f).rev_nat_id);
    assert!(
        store.ops.contains(&Op::PurgeAffinity(id, vec![gone])),
        "{:#?}",
        store.ops
    );
}

#[test]
fn the_first_service_to_claim_a_frontend_keeps_it() {
    let mut store = MemStore::default();
    let mut r = Reconciler::resume(&mut store).unwrap();
    let f = frontend(10, 80);
    r.sync(
        &mut store,
        &[
            service("b", vec![spec(f, &active(&[2]))]),
            service("a", vec![spec(f, &active(&[1]))]),
        ],
    )
    .unwrap();
    assert_eq!(reachable(&store, &f), [Ipv4Addr::new(10, 200, 0, 1)]);
    r.upsert(&mut store, &service("b", vec![spec(f, &active(&[2]))]))
        .unwrap();
    assert_eq!(reachable(&store, &f), [Ipv4Addr::new(10, 200, 0, 1)], "b cannot take it");
}

#[test]
fn a_restarted_agent_resumes_the_maps_and_its_first_sync_writes_only_the_difference() {
    let mut store = MemStore::default();
    let (web, gone) = (frontend(10, 80), frontend(20, 53));
    {
        let mut r = Reconciler::resume(&mut store).unwrap();
        r.sync(
            &mut store,
            &[
                service("web", vec![spec(web, &active(&[1, 2]))]),
                service("gone", vec![spec(gone, &active(&[5]))]),
            ],
        )
        .unwrap();
    }
    // Leftovers of an update interrupted between writing slots and flipping the frontend.
    let v = service_value(&store, &web);
    store.slots.insert(
        (v.rev_nat_id, v.generation ^ 1, 0),
        dataplane_common::Lb4Slot { backend_id: 1 },
    );
    store.ops.clear();

    let mut r = Reconciler::resume(&mut store).unwrap();
    assert!(
        matches!(store.ops.as_slice(), [Op::DeleteSlot(k)] if k.generation != v.generation),
        "only the stale slot goes at resume: {:#?}",
        store.ops
    );
    assert_eq!(r.counts(), (2, 3));
    store.ops.clear();
    let stats = r
        .sync(&mut store, &[service("web", vec![spec(web, &active(&[1, 2]))])])
        .unwrap();
    assert_eq!(stats.frontends_removed, 1);
    assert_eq!(stats.backends_removed, 1);
    assert_eq!(reachable(&store, &web).len(), 2);
    assert_eq!(service_value(&store, &web).rev_nat_id, v.rev_nat_id);
    assert!(
        !store.ops.iter().any(|o| matches!(o,
            Op::PutSlot(k, _) | Op::DeleteSlot(k) if k.rev_nat_id == v.rev_nat_id)),
        "web's slots are unchanged: {:#?}",
        store.ops
    );
}
