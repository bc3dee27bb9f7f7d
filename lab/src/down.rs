//! `weft-lab down`: removes every namespace, process, mount, pin and file the lab made. Works
//! on a half-made lab and when nothing is up.

use std::time::Duration;

use anyhow::Context;

use crate::leftovers::{self, Leftovers};
use crate::procs;
use crate::sh;
use crate::state::StateDir;

pub fn run(state: &StateDir) -> anyhow::Result<()> {
    eprintln!("lab down (state dir {})", state.root().display());
    procs::stop_recorded(state);

    // Anything still running in a lab namespace or from the state dir (pods of a crashed
    // kubelet, a half-started control plane).
    let netns = leftovers::lab_netns();
    let stray = procs::lab_processes(state, &leftovers::netns_inodes(&netns));
    if !stray.is_empty() {
        eprintln!("  stopping {} more lab processes", stray.len());
        let pids: Vec<u32> = stray.iter().map(|(p, _)| *p).collect();
        procs::terminate(&pids, Duration::from_secs(5));
    }

    // Pod namespaces first, then nodes, the control plane, the outside host and the switch
    // (their veths go with them).
    let mut ordered = netns.clone();
    ordered.sort_by_key(|n| (teardown_rank(n), n.clone()));
    for ns in &ordered {
        if let Err(e) = sh::ip(["netns", "del", ns.as_str()]) {
            eprintln!("  warning: {e}");
        }
    }
    if !netns.is_empty() {
        eprintln!("  removed {} network namespaces", netns.len());
    }

    for dir in leftovers::prefixed_entries("/etc/netns") {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    for pin in leftovers::prefixed_entries("/sys/fs/bpf") {
        let r = if pin.is_dir() { std::fs::remove_dir_all(&pin) } else { std::fs::remove_file(&pin) };
        r.with_context(|| format!("removing bpffs pin {}", pin.display()))?;
    }
    for m in leftovers::lab_mounts(state) {
        // Lazy: a mount still referenced by a dying process goes as soon as it is free.
        nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {m}"))?;
    }
    // Mount points the stand-ins made on the machine (`/run/weft` for a hostPath under /run):
    // a stand-in that stopped while another node still used one kept it in its registry, and
    // with every stand-in gone none is in use now.
    for node in std::fs::read_dir(state.root().join("nodes")).into_iter().flatten().flatten() {
        let name = node.file_name().to_string_lossy().into_owned();
        let registry = crate::kubelet::mount_point_registry(&crate::nodes::kubelet_state_dir(state, &name));
        crate::kubelet::volumes::remove_unused_mount_points(&registry);
    }
    if let Some(dir) = leftovers::lab_cgroup(state).filter(|d| d.exists()) {
        remove_cgroup_tree(&dir).with_context(|| format!("removing the lab's cgroup {}", dir.display()))?;
    }
    if state.exists() {
        std::fs::remove_dir_all(state.root())
            .with_context(|| format!("removing {}", state.root().display()))?;
    }

    let left = leftovers::list(state);
    if !left.is_empty() {
        anyhow::bail!("lab down left things behind:\n{}", describe(&left));
    }
    eprintln!("lab is down: no namespaces, processes, mounts, pins or state left");
    Ok(())
}

/// A cgroup directory and its children, deepest first (cgroup directories go with `rmdir`
/// once no process is left in them, which stopping the lab's processes saw to).
fn remove_cgroup_tree(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

fn teardown_rank(ns: &str) -> u8 {
    use crate::spec::{CP_NS, OUTSIDE_NS, SWITCH_NS};
    match ns {
        SWITCH_NS => 2,
        CP_NS | OUTSIDE_NS => 1,
        n if n.starts_with("wl-node-") => 1,
        _ => 0,
    }
}

pub fn describe(l: &Leftovers) -> String {
    serde_json::to_string_pretty(l).unwrap_or_else(|_| format!("{l:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_namespaces_go_first_and_the_switch_last() {
        let mut ns = vec!["wl-switch", "wl-node-1", "wl-n1-0a1b2c3d4e5f", "wl-cp", "wl-outside", "wl-n2-ffff"];
        ns.sort_by_key(|n| (teardown_rank(n), n.to_string()));
        assert_eq!(ns, ["wl-n1-0a1b2c3d4e5f", "wl-n2-ffff", "wl-cp", "wl-node-1", "wl-outside", "wl-switch"]);
    }
}
