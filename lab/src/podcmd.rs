//! `exec NS/POD -- CMD` and `logs NS/POD`: there is no container runtime, so these act on the
//! kubelet stand-in's pod records (the pod's network namespace and log file).

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
    find_with_path(state, rec, pod).map(|(r, _)| r)
}

/// The record and the image's PATH (from the sandbox record), searching every node.
fn find_with_path(state: &StateDir, rec: &LabRecord, pod: &str) -> anyhow::Result<(PodRecord, Option<String>)> {
    let (ns, name) = parse_pod_ref(pod)?;
    for node in rec.spec.node_plans() {
        let dir = kubelet_state_dir(state, &node.name);
        if let Ok(r) = kubelet::find_pod(&dir, &ns, &name) {
            let sandbox = kubelet::read_sandbox(&kubelet::pod_dir(&dir, &ns, &name));
            return Ok((r, sandbox.map(|s| s.path_env)));
        }
    }
    anyhow::bail!("pod {ns}/{name} is not running on any lab node (see `weft-lab status`)")
}

/// The node namespace of a host-network pod.
fn node_netns_of(state: &StateDir, rec: &LabRecord, pod: &str) -> anyhow::Result<String> {
    let (ns, name) = parse_pod_ref(pod)?;
    rec.spec
        .node_plans()
        .into_iter()
        .find(|n| kubelet::find_pod(&kubelet_state_dir(state, &n.name), &ns, &name).is_ok())
        .map(|n| n.netns)
        .ok_or_else(|| anyhow::anyhow!("pod {ns}/{name} is not running on any lab node"))
}

/// Runs `cmd` in the pod's network namespace the way its containers run: `ip netns exec`
/// (which also applies the pod's /etc/netns/<ns>/resolv.conf) with the image's PATH, so
/// `nslookup` in a busybox pod is busybox's.
pub fn exec(state: &StateDir, rec: &LabRecord, pod: &str, cmd: &[String]) -> anyhow::Result<ExitStatus> {
    let (r, path_env) = find_with_path(state, rec, pod)?;
    let netns = if r.host_network { node_netns_of(state, rec, pod)? } else { r.netns.clone() };
    let mut c = std::process::Command::new(ip_binary());
    c.args(["netns", "exec", &netns]).args(cmd);
    if let Some(path) = path_env.filter(|p| !p.is_empty()) {
        c.env("PATH", path);
    }
    c.status().with_context(|| format!("running {:?} in {netns}", cmd))
}

/// `ip` by absolute path: the command runs with the pod's PATH, which may not hold it.
fn ip_binary() -> &'static str {
    ["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or("ip")
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
