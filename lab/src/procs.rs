//! Long-running lab processes: started detached inside a namespace with a log file and a pid
//! file, stopped by pid, and a sweep that finds anything the lab left running.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::sh;
use crate::state::StateDir;

/// How a process enters its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enter {
    /// `ip netns exec`: network namespace, /etc/netns files, a /sys of that namespace.
    IpNetns,
    /// `nsenter --net`: only the network namespace (the host's /sys, so /sys/fs/bpf stays).
    NetOnly,
}

/// Starts `program args…` inside `netns`, detached from our process group, logging to
/// `logs/<name>.log`, with its pid in `pids/<name>.pid`.
pub fn spawn(
    state: &StateDir,
    name: &str,
    netns: &str,
    program: &Path,
    args: &[String],
) -> anyhow::Result<u32> {
    spawn_in(state, name, netns, Enter::IpNetns, program, args)
}

/// [`spawn`] with a choice of how to enter the namespace.
pub fn spawn_in(
    state: &StateDir,
    name: &str,
    netns: &str,
    enter: Enter,
    program: &Path,
    args: &[String],
) -> anyhow::Result<u32> {
    std::fs::create_dir_all(state.logs())?;
    std::fs::create_dir_all(state.pids())?;
    let log_path = state.log(name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = match enter {
        Enter::IpNetns => sh::in_netns(netns, program),
        Enter::NetOnly => {
            let mut c = std::process::Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{netns}")).arg("--").arg(program);
            c
        }
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Own process group: a Ctrl-C aimed at `weft-lab up` does not take the lab down.
        .process_group(0);
    let child = cmd.spawn().with_context(|| format!("starting {name}: {}", sh::describe(&cmd)))?;
    let pid = child.id();
    std::fs::write(state.pid_file(name), pid.to_string())?;
    tracing::debug!(name, pid, netns, "started");
    Ok(pid)
}

/// Whether `pid` still runs (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state letter follows the parenthesised command name.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Fails with the tail of the log if the process `name` has exited.
pub fn check_running(state: &StateDir, name: &str, pid: u32) -> anyhow::Result<()> {
    if alive(pid) {
        return Ok(());
    }
    anyhow::bail!("{name} exited; last lines of {}:\n{}", state.log(name).display(), log_tail(state, name, 20))
}

pub fn log_tail(state: &StateDir, name: &str, lines: usize) -> String {
    let text = std::fs::read_to_string(state.log(name)).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Command line of `pid`, arguments joined by spaces.
fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a)).collect::<Vec<_>>().join(" "))
}

/// SIGTERM, then SIGKILL after `grace` for those still running.
pub fn terminate(pids: &[u32], grace: Duration) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for &p in pids.iter().filter(|&&p| alive(p)) {
        tracing::warn!(pid = p, "did not stop on SIGTERM; killing");
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
}

/// Stops the recorded process `name` (SIGTERM, SIGKILL after `grace`) and forgets its pid
/// file; nothing to do if it is not running.
pub fn stop_named(state: &StateDir, name: &str, grace: Duration) {
    let file = state.pid_file(name);
    let root = state.root().to_string_lossy().into_owned();
    if let Some(pid) = std::fs::read_to_string(&file).ok().and_then(|p| p.trim().parse::<u32>().ok()) {
        // A recycled pid belongs to someone else: only stop a process that is the lab's.
        if cmdline(pid).is_some_and(|c| c.contains(&root)) {
            terminate(&[pid], grace);
        }
    }
    let _ = std::fs::remove_file(file);
}

/// Stop order: nodes first (the kubelet stand-ins tear their pods down), the store last.
fn stop_rank(name: &str) -> u8 {
    match name {
        n if n.starts_with("kubelet-") => 0,
        n if n.starts_with("kube-proxy-") => 1,
        "kube-scheduler" => 2,
        "kube-controller-manager" => 3,
        "kube-apiserver" => 4,
        "etcd" => 5,
        _ => 1,
    }
}

/// Stops every process with a pid file, in dependency order. Pids whose command line no
/// longer mentions the state dir (recycled pids) are left alone.
pub fn stop_recorded(state: &StateDir) {
    let Ok(dir) = std::fs::read_dir(state.pids()) else { return };
    let root = state.root().to_string_lossy().into_owned();
    let mut recorded: Vec<(u8, String, u32)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.path().file_stem()?.to_string_lossy().into_owned();
            let pid: u32 = std::fs::read_to_string(e.path()).ok()?.trim().parse().ok()?;
            Some((stop_rank(&name), name, pid))
        })
        .filter(|(_, _, pid)| cmdline(*pid).is_some_and(|c| c.contains(&root)))
        .collect();
    recorded.sort();
    let mut i = 0;
    while i < recorded.len() {
        let rank = recorded[i].0;
        let group: Vec<u32> =
            recorded.iter().filter(|r| r.0 == rank).map(|r| r.2).collect();
        let names: Vec<&str> = recorded.iter().filter(|r| r.0 == rank).map(|r| r.1.as_str()).collect();
        eprintln!("  stopping {}", names.join(", "));
        // Kubelets get time to stop pods and run CNI DEL.
        terminate(&group, if rank == 0 { Duration::from_secs(20) } else { Duration::from_secs(10) });
        i += group.len();
    }
}

/// Processes that belong to the lab: their command line names the state dir, or they run in
/// one of the given network namespaces (by nsfs inode).
pub fn lab_processes(state: &StateDir, netns_inodes: &HashSet<u64>) -> Vec<(u32, String)> {
    let root = state.root().to_string_lossy().into_owned();
    let me = std::process::id();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else { return vec![] };
    proc_dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && alive(pid))
        .filter_map(|pid| {
            let cmd = cmdline(pid)?;
            let in_lab_ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| netns_inodes.contains(&std::os::unix::fs::MetadataExt::ino(&m)))
                .unwrap_or(false);
            (cmd.contains(&root) || in_lab_ns).then_some((pid, cmd))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_stop_before_the_control_plane_and_etcd_last() {
        let mut names = ["etcd", "kube-apiserver", "kube-proxy-node-1", "kubelet-node-2", "kube-scheduler",
                         "kube-controller-manager"];
        names.sort_by_key(|n| stop_rank(n));
        assert_eq!(names, ["kubelet-node-2", "kube-proxy-node-1", "kube-scheduler", "kube-controller-manager",
                           "kube-apiserver", "etcd"]);
    }

    #[test]
    fn a_running_process_is_alive_and_a_stopped_one_is_not() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(alive(pid));
        // spawn() can return before /proc shows the new image's command line.
        let start = std::time::Instant::now();
        while !cmdline(pid).is_some_and(|c| c.starts_with("sleep 30")) {
            assert!(start.elapsed() < Duration::from_secs(2), "cmdline is {:?}", cmdline(pid));
            std::thread::sleep(Duration::from_millis(5));
        }
        terminate(&[pid], Duration::from_secs(5));
        // Until reaped it is a zombie, which counts as gone.
        assert!(!alive(pid));
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}
