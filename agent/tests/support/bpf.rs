//! For the tests that load BPF programs: tc verdicts, drop counter checks, a bpffs
//! precondition that fails loudly and a per-test pin dir on the machine's /sys/fs/bpf,
//! removed (with every pin) on drop.

use std::path::{Path, PathBuf};

use weft::datapath::Datapath;

use super::{require_root, unique_id};

/// tc verdicts (include/uapi/linux/pkt_cls.h).
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

const BPFFS: &str = "/sys/fs/bpf";

/// A fresh pin dir `/sys/fs/bpf/weft-test-<unique id>-<name>`, removed (with every pin in it)
/// on drop, also when the test fails.
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// Panics with a clear message if the test cannot run here (not root, no bpffs).
    pub fn new(test: &str) -> Self {
        require_root_and_bpffs();
        let path = Path::new(BPFFS).join(format!("weft-test-{}-{test}", unique_id()));
        Datapath::unpin_all(&path).expect("clearing a leftover pin dir");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = Datapath::unpin_all(&self.path) {
            eprintln!("cleanup of {} failed: {e}", self.path.display());
        }
    }
}

/// The drop counter of reason `name` (panics if the datapath has no such reason).
pub fn counter(dp: &Datapath, name: &str) -> u64 {
    let counters = dp.drop_counters().expect("read DROP_STATS");
    counters
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no drop reason named {name} in {counters:?}"))
        .1
}

/// Assert that no drop counter moved.
pub fn assert_no_drops(dp: &Datapath) {
    let counters = dp.drop_counters().expect("read DROP_STATS");
    assert!(
        counters.iter().all(|(_, n)| *n == 0),
        "unexpected drops: {counters:?}"
    );
}

/// These tests load BPF programs: they need root and a mounted bpffs. Not a skip: a failure
/// that says what is missing.
pub fn require_root_and_bpffs() {
    require_root("packet tests load BPF programs and");
    let st = nix::sys::statfs::statfs(BPFFS)
        .unwrap_or_else(|e| panic!("packet tests need bpffs at {BPFFS}: statfs failed: {e}"));
    assert!(
        st.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC,
        "packet tests need bpffs mounted at {BPFFS} (mount -t bpf bpf {BPFFS})"
    );
}

pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;

/// BPF_MAP_CREATE of a hash map (raw syscall: aya creates maps only from objects).
pub fn create_hash_map(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> std::os::fd::OwnedFd {
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[
        map_type,
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
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }
}

/// BPF_OBJ_PIN `fd` at `path`.
pub fn pin(fd: &std::os::fd::OwnedFd, path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut attr = [0u64; 8];
    attr[0] = cpath.as_ptr() as u64;
    attr[1] = fd.as_raw_fd() as u64; // bpf_fd (low 32 bits), file_flags 0
                                     // SAFETY: BPF_OBJ_PIN (6) reads pathname and bpf_fd from a zero-padded bpf_attr.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 6, attr.as_ptr(), size_of_val(&attr)) };
    assert_eq!(r, 0, "BPF_OBJ_PIN: {}", std::io::Error::last_os_error());
}
