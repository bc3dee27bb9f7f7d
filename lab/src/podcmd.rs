//! `exec NS/POD -- CMD` and `logs NS/POD`: there is no container runtime, so these act on the
//! kubelet stand-in's pod records (the pod's network namespace and log file).

use std::path::PathBuf;
use std::process::ExitStatus;

use anyhow::Context;

use crate::kubelet::{self, PodRecord};
use crate::nodes::kubelet_state_dir;
use crate::state::{LabRecord, StateDir};

/// `NS/NAME`, or `NAME` in the `default` namespace (as kubectl does).
pub fn parse_pod_ref(s: &str) -> anyhow::Result<(String, String)> {
    let (ns, name) = match s.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => ("default", s),
    };
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        anyhow::bail!("expected NAMESPACE/POD or POD, got {s:?}");
    }
    Ok((ns.to_string(), name.to_string()))
}

/// Finds the pod's record on whichever node runs it.
pub fn find(state: &StateDir, rec: &LabRecord, pod: &str) -> anyhow::Result<PodRecord> {
    find_on_node(state, rec, pod).map(|(r, _, _)| r)
}

/// The pod's record, the state dir of the node's kubelet stand-in that runs it, and the node.
fn find_on_node(state: &StateDir, rec: &LabRecord, pod: &str) -> anyhow::Result<(PodRecord, PathBuf, String)> {
    let (ns, name) = parse_pod_ref(pod)?;
    for node in rec.spec.node_plans() {
        let dir = kubelet_state_dir(state, &node.name);
        if let Ok(r) = kubelet::find_pod(&dir, &ns, &name) {
            return Ok((r, dir, node.name));
        }
    }
    anyhow::bail!("pod {ns}/{name} is not running on any lab node (see `weft-lab status`)")
}

/// Runs `cmd` inside the pod as `kubectl exec` would (the pod's network and UTS namespaces,
/// the container's mounts, environment and image programs, the node's cgroup), straight from
/// the kubelet stand-in's records: a shortcut that needs neither the API server nor the
/// kubelet port.
pub fn exec(
    state: &StateDir,
    rec: &LabRecord,
    pod: &str,
    container: Option<&str>,
    cmd: &[String],
) -> anyhow::Result<ExitStatus> {
    let (r, node_state, node) = find_on_node(state, rec, pod)?;
    join_node_cgroup(state, &node)?;
    let mut c = kubelet::enter::command(&node_state, &r, container, cmd)?;
    c.status().with_context(|| format!("running {:?} in pod {pod}", cmd))
}

/// `cmd` on a lab host as ssh would run it. On a node whose kubelet stand-in runs, the
/// command joins the stand-in's network and mount namespaces: it sees the node's own /run
/// (weft's socket), bpffs and /sys exactly as the node's processes do. Other hosts (and a
/// node without a running stand-in) get `ip netns exec`.
pub fn on_host(
    state: &StateDir,
    rec: &LabRecord,
    host: &str,
    netns: &str,
    cmd: &[String],
) -> anyhow::Result<std::process::Command> {
    let kubelet = rec
        .spec
        .node_plans()
        .into_iter()
        .find(|n| n.name == host)
        .and_then(|n| std::fs::read_to_string(state.pid_file(&crate::nodes::kubelet_name(&n))).ok())
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|pid| crate::procs::alive(*pid));
    Ok(match kubelet {
        Some(pid) => {
            join_node_cgroup(state, host)?;
            let mut c = std::process::Command::new("nsenter");
            c.arg(format!("--target={pid}")).args(["--net", "--mount", "--"]).args(cmd);
            c
        }
        None => {
            let mut c = crate::sh::in_netns(netns, &cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    })
}

/// Moves this process into `node`'s cgroup v2 subtree (the node's "root cgroup", where its
/// kubelet stand-in and pods run), so the command it starts runs there as `kubectl exec`'s and
/// ssh's processes do on a real node, and the node's cgroup programs (weft's socket-level load
/// balancing) see it. A node whose subtree does not exist (no stand-in yet) is left alone.
fn join_node_cgroup(state: &StateDir, node: &str) -> anyhow::Result<()> {
    let Some(root) = crate::leftovers::cgroup2_root() else {
        return Ok(());
    };
    let dir = root.join(crate::nodes::node_cgroup(state, node));
    if !dir.is_dir() {
        return Ok(());
    }
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        .with_context(|| format!("joining {node}'s cgroup {}", dir.display()))
}

pub fn logs(state: &StateDir, rec: &LabRecord, pod: &str) -> anyhow::Result<()> {
    let r = find(state, rec, pod)?;
    let mut f = std::fs::File::open(&r.log).with_context(|| format!("opening {}", r.log.display()))?;
    std::io::copy(&mut f, &mut std::io::stdout().lock())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_references_default_to_the_default_namespace() {
        assert_eq!(parse_pod_ref("kube-system/coredns-x").unwrap(), ("kube-system".into(), "coredns-x".into()));
        assert_eq!(parse_pod_ref("busybox").unwrap(), ("default".into(), "busybox".into()));
        assert!(parse_pod_ref("a/b/c").is_err());
        assert!(parse_pod_ref("/x").is_err());
    }
}
