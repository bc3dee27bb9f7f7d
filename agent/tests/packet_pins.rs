//! The datapath's pin directory: maps survive a re-open, incompatible pins are refused,
//! cleanup never touches anything but bpffs. Root only; fails (not skips) without bpffs.

mod support;

use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, OwnedFd};

use support::bpf::*;
use support::frames::*;
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
    let map = create_hash_map(4, 8, 4096);
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

/// BPF_MAP_CREATE of a hash map (raw syscall: aya creates maps only from objects).
fn create_hash_map(key_size: u32, value_size: u32, max_entries: u32) -> OwnedFd {
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[
        1, /* BPF_MAP_TYPE_HASH */
        key_size,
        value_size,
        max_entries,
    ]);
    // SAFETY: BPF_MAP_CREATE (0) reads a zero-padded bpf_attr of the given size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), size_of_val(&attr)) };
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh fd owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// BPF_OBJ_PIN `fd` at `path`.
fn pin(fd: &OwnedFd, path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut attr = [0u64; 8];
    attr[0] = cpath.as_ptr() as u64;
    attr[1] = fd.as_raw_fd() as u64; // bpf_fd (low 32 bits), file_flags 0
                                     // SAFETY: BPF_OBJ_PIN (6) reads pathname and bpf_fd from a zero-padded bpf_attr.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 6, attr.as_ptr(), size_of_val(&attr)) };
    assert_eq!(r, 0, "BPF_OBJ_PIN: {}", std::io::Error::last_os_error());
}
