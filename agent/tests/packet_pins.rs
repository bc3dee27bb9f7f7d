//! The datapath's pin directory: maps survive a re-open, incompatible pins are refused,
//! cleanup never touches anything but bpffs. Root only; fails (not skips) without bpffs.

mod support;

use std::net::Ipv4Addr;

use support::bpf::*;
use support::frames::*;
use dataplane_common::ct::{Ct4Key, Ct4Value, CT4_KIND_SERVICE};
use dataplane_common::maps::CT4_MAX_ENTRIES;
use weft::datapath::{Datapath, DatapathError, EndpointEntry};

const EP: EndpointEntry = EndpointEntry {
    ifindex: 9,
    host_mac: [2, 0xee, 0, 0, 0, 9],
    pod_mac: [2, 0xaa, 0, 0, 0, 9],
};

#[test]
fn endpoints_and_drop_counters_survive_reopening_the_pin_dir() {
    let pins = PinDir::new("reopen");
    let ip = Ipv4Addr::new(10, 200, 0, 9);
    {
        let mut dp = Datapath::open(pins.path()).expect("open");
        dp.upsert_endpoint(ip, &EP).expect("upsert");
        let mut bad = ethernet(
            EP.host_mac,
            [2, 1, 1, 1, 1, 1],
            ETH_P_IP,
            &ipv4([10, 200, 0, 5], [10, 200, 0, 9], &[]),
        );
        bad[14] = 0x75; // version 7
        assert_eq!(dp.test_run_from_pod(&bad).unwrap().verdict, TC_ACT_SHOT);
    }
    for name in ["ENDPOINTS4", "DROP_STATS", "from_pod"] {
        assert!(pins.path().join(name).exists(), "{name} pinned");
    }

    let dp = Datapath::open(pins.path()).expect("reopen");
    assert_eq!(dp.endpoints().unwrap(), vec![(ip, EP)]);
    let bad_version = dp
        .drop_counters()
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == "ip4_bad_version");
    assert_eq!(bad_version, Some(("ip4_bad_version", 1)));
}

#[test]
fn upsert_replaces_and_invalid_endpoints_are_refused() {
    let pins = PinDir::new("upsert");
    let mut dp = Datapath::open(pins.path()).expect("open");
    let ip = Ipv4Addr::new(10, 200, 0, 9);
    dp.upsert_endpoint(ip, &EP).unwrap();
    let moved = EndpointEntry { ifindex: 10, ..EP };
    dp.upsert_endpoint(ip, &moved).unwrap();
    assert_eq!(dp.endpoints().unwrap(), vec![(ip, moved)]);

    let err = dp
        .upsert_endpoint(ip, &EndpointEntry { ifindex: 0, ..EP })
        .unwrap_err();
    assert!(
        matches!(err, DatapathError::InvalidEndpoint { .. }),
        "{err}"
    );
    assert_eq!(
        dp.endpoints().unwrap(),
        vec![(ip, moved)],
        "a refused upsert changes nothing"
    );
}

#[test]
fn pinned_map_with_another_layout_is_refused() {
    let pins = PinDir::new("mismatch");
    std::fs::create_dir_all(pins.path()).unwrap();
    // An ENDPOINTS4 as an older build might have left it: value of 8 bytes instead of 20.
    let map = create_hash_map(BPF_MAP_TYPE_HASH, 4, 8, 4096);
    pin(&map, &pins.path().join("ENDPOINTS4"));

    let err = Datapath::open(pins.path())
        .err()
        .expect("must refuse the stale map");
    assert!(
        matches!(err, DatapathError::PinnedMapMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("value 8"), "{err}");
}

/// A `CT4` entry: a NodePort flow's service entry from 203.0.113.10:port.
fn ct_entry(sport: u16, backend_id: u32) -> (Ct4Key, Ct4Value) {
    let key = Ct4Key {
        saddr_be: [203, 0, 113, 10],
        daddr_be: [172, 30, 0, 11],
        sport_be: sport.to_be(),
        dport_be: 30080u16.to_be(),
        proto: 6,
        kind: CT4_KIND_SERVICE,
        _pad: [0; 2],
    };
    let value = Ct4Value {
        last_seen_ns: now_ns(),
        backend_id,
        addr_be: [10, 200, 1, 5],
        port_be: 8080u16.to_be(),
        ..Ct4Value::default()
    };
    (key, value)
}

fn now_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: plain syscall writing into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The `layout-bump` test build's `CT4_V2` value: this build's 32 bytes and 8 more.
fn bumped(v: &Ct4Value) -> [u8; 40] {
    let mut out = [0xee; 40];
    // SAFETY: Ct4Value is plain `#[repr(C)]` data of 32 bytes without implicit padding.
    let bytes: [u8; 32] = unsafe { std::mem::transmute(*v) };
    out[..32].copy_from_slice(&bytes);
    out
}

/// Rolling back from the build whose `CT4` is `CT4_V2` (values 8 bytes longer): its entries
/// are carried into `CT4` when the datapath opens, what its programs add before every link is
/// swapped is carried when the migration finishes, entries this build already has keep their
/// value, and the other pin is gone afterwards.
#[test]
fn a_pinned_map_of_the_other_layout_is_carried_over_and_retired() {
    use aya::maps::{HashMap, Map, MapData};
    let pins = PinDir::new("migrate");
    std::fs::create_dir_all(pins.path()).unwrap();
    let other_path = pins.path().join("CT4_V2");
    let fd = create_hash_map(BPF_MAP_TYPE_LRU_HASH, 16, 40, CT4_MAX_ENTRIES);
    pin(&fd, &other_path);
    let mut other: HashMap<MapData, Ct4Key, [u8; 40]> =
        HashMap::try_from(Map::LruHashMap(MapData::from_pin(&other_path).unwrap())).unwrap();
    let before: Vec<(Ct4Key, Ct4Value)> = (0..3).map(|i| ct_entry(40000 + i, 7 + i as u32)).collect();
    for (k, v) in &before {
        other.insert(k, bumped(v), 0).unwrap();
    }

    let mut dp = Datapath::open(pins.path()).expect("open with the other layout pinned");
    let listed = dp.conntrack().unwrap();
    assert_eq!(listed.len(), 3, "{listed:#?}");
    for (k, v) in &before {
        let e = listed.iter().find(|e| e.sport == u16::from_be(k.sport_be)).expect("carried over");
        assert_eq!((e.kind.as_str(), e.backend_id, e.nat_port), ("service", v.backend_id, 8080), "{e:?}");
        assert_eq!(e.nat_addr, Ipv4Addr::new(10, 200, 1, 5));
    }
    assert!(other_path.exists(), "the other pin stays until every link runs this build's programs");

    // Meanwhile the other build's programs add a flow, and this build's add one the other
    // also has (with another backend): the later copy takes the first and keeps this build's
    // value of the second.
    let (late_k, late_v) = ct_entry(41000, 21);
    other.insert(late_k, bumped(&late_v), 0).unwrap();
    let (both_k, both_v) = ct_entry(42000, 30);
    other.insert(both_k, bumped(&both_v), 0).unwrap();
    let mut ours: HashMap<MapData, Ct4Key, Ct4Value> =
        HashMap::try_from(Map::LruHashMap(MapData::from_pin(pins.path().join("CT4")).unwrap())).unwrap();
    ours.insert(both_k, Ct4Value { backend_id: 31, ..both_v }, 0).unwrap();

    assert_eq!(dp.finish_migrations().unwrap(), vec!["CT4"]);
    assert!(!other_path.exists(), "the other layout's pin is retired");
    let listed = dp.conntrack().unwrap();
    assert_eq!(listed.len(), 5, "{listed:#?}");
    let backend = |port: u16| listed.iter().find(|e| e.sport == port).map(|e| e.backend_id);
    assert_eq!(backend(41000), Some(21), "the entry added before the swap was carried");
    assert_eq!(backend(42000), Some(31), "this build's own entry kept its value");
    assert_eq!(dp.finish_migrations().unwrap(), Vec::<&str>::new(), "nothing left to migrate");
}

#[test]
fn cleanup_refuses_paths_outside_bpffs() {
    require_root_and_bpffs();
    let dir = std::env::temp_dir().join(format!("weft-not-bpffs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep-me"), b"x").unwrap();

    let unpin = Datapath::unpin_all(&dir);
    let open = Datapath::open(&dir).err();
    let kept = dir.join("keep-me").exists();
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(
        matches!(unpin, Err(DatapathError::NotBpffs { .. })),
        "{unpin:?}"
    );
    assert!(
        matches!(open, Some(DatapathError::NotBpffs { .. })),
        "{open:?}"
    );
    assert!(kept, "unpin_all must not delete files outside bpffs");
    Datapath::unpin_all(&std::env::temp_dir().join("weft-no-such-dir")).expect("absent dir is Ok");

    let absent = std::env::temp_dir().join(format!("weft-not-bpffs-new-{}", std::process::id()));
    assert!(matches!(
        Datapath::open(&absent),
        Err(DatapathError::NotBpffs { .. })
    ));
    assert!(!absent.exists(), "a refused open creates no directory");
}
