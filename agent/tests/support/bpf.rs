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
