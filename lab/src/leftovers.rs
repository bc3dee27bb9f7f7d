//! What the lab can leave behind on the machine, listed: `down` removes each kind and then
//! proves the list is empty.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::procs;
use crate::spec::NETNS_PREFIX;
use crate::state::StateDir;

/// Everything of the lab still present on the machine.
#[derive(Debug, Default, serde::Serialize)]
pub struct Leftovers {
    pub netns: Vec<String>,
    pub processes: Vec<(u32, String)>,
    pub mounts: Vec<String>,
    pub etc_netns: Vec<PathBuf>,
    pub bpf_pins: Vec<PathBuf>,
    /// The lab's cgroup v2 subtree (its nodes' "root cgroups").
    pub cgroups: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.netns.is_empty()
            && self.processes.is_empty()
            && self.mounts.is_empty()
            && self.etc_netns.is_empty()
            && self.bpf_pins.is_empty()
            && self.cgroups.is_empty()
            && self.state_dir.is_none()
    }
}

/// Names in `ip netns list` that carry the lab prefix.
pub fn lab_netns() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return vec![] };
    let mut v: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .collect();
    v.sort();
    v
}

/// nsfs inodes of the lab's namespaces, to find processes running inside them.
pub fn netns_inodes(names: &[String]) -> HashSet<u64> {
    names
        .iter()
        .filter_map(|n| std::fs::metadata(Path::new("/run/netns").join(n)).ok())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .collect()
}

/// Mount points under the state dir or for lab namespaces, deepest first.
pub fn lab_mounts(state: &StateDir) -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return vec![] };
    let root = state.root().to_string_lossy().into_owned();
    let netns_prefix = format!("/run/netns/{NETNS_PREFIX}");
    let mut v: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&root) || m.starts_with(&netns_prefix))
        .map(String::from)
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v.dedup();
    v
}

/// Where the machine's cgroup v2 hierarchy is mounted (in this process's mount namespace).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
}

/// The lab's cgroup v2 subtree on this machine, if the machine has a v2 hierarchy.
pub fn lab_cgroup(state: &StateDir) -> Option<PathBuf> {
    Some(cgroup2_root()?.join(crate::nodes::lab_cgroup(state)))
}

/// Entries of `dir` whose names start with the lab prefix.
pub fn prefixed_entries(dir: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(NETNS_PREFIX))
        .map(|e| e.path())
        .collect()
}

pub fn list(state: &StateDir) -> Leftovers {
    let netns = lab_netns();
    let inodes = netns_inodes(&netns);
    Leftovers {
        processes: procs::lab_processes(state, &inodes),
        netns,
        mounts: lab_mounts(state),
        etc_netns: prefixed_entries("/etc/netns"),
        bpf_pins: prefixed_entries("/sys/fs/bpf"),
        cgroups: lab_cgroup(state).into_iter().filter(|p| p.exists()).collect(),
        state_dir: state.exists().then(|| state.root().to_path_buf()),
    }
}
