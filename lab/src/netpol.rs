//! `--netpol kube-router`: kube-router's firewall controller on every node, as kube-proxy runs.

use std::time::Duration;

use crate::spec::{Netpol, NodePlan, SERVICE_CIDR};
use crate::state::{LabRecord, StateDir};
use crate::{kubectl, procs, sh};

/// Where kube-router answers `/healthz` (its default port), inside the node's namespace.
pub const HEALTH_PORT: u16 = 20244;

/// Process name (pid and log file stem) of a node's kube-router.
pub fn kube_router_name(node: &NodePlan) -> String {
    format!("kube-router-{}", node.name)
}

/// Only the firewall controller: the bridge plugin routes pods and kube-proxy Services. It finds
/// its Node (addresses, pod CIDR) by name; the Service range and the API server's default
/// NodePort range are what its rules let through unfiltered.
pub fn kube_router_args(state: &StateDir, node: &NodePlan) -> Vec<String> {
    vec![
        // A test peer: the lab's admin identity stands in for its upstream ClusterRole.
        format!("--kubeconfig={}", state.kubeconfig("admin").display()),
        format!("--hostname-override={}", node.name),
        "--run-firewall=true".into(),
        "--run-router=false".into(),
        "--run-service-proxy=false".into(),
        "--enable-cni=false".into(),
        "--enable-ipv4=true".into(),
        "--enable-ipv6=false".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--service-node-port-range=30000-32767".into(),
        format!("--health-port={HEALTH_PORT}"),
        "--metrics-port=0".into(),
        "--v=1".into(),
    ]
}

/// Starts kube-router on every node when the lab asks for it, and waits for its health check.
pub fn start(state: &StateDir, rec: &LabRecord) -> anyhow::Result<()> {
    if rec.spec.netpol != Netpol::KubeRouter {
        return Ok(());
    }
    require_ipset()?;
    let n = run(state, rec, rec.spec.node_plans())?;
    eprintln!("  started kube-router's firewall controller on {n} nodes");
    Ok(())
}

/// Starts kube-router on one (added) node, if the lab runs it.
pub fn start_on(state: &StateDir, rec: &LabRecord, node: &NodePlan) -> anyhow::Result<()> {
    match rec.spec.netpol {
        Netpol::KubeRouter => run(state, rec, vec![node.clone()]).map(|_| ()),
        Netpol::None => Ok(()),
    }
}

/// kube-router calls the `ipset` tool; without it every node's controller exits at start.
pub fn require_ipset() -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join("ipset").is_file()) {
        return Ok(());
    }
    anyhow::bail!("--netpol kube-router needs the ipset tool: run `cargo xtask setup` (or apt-get install ipset)")
}

fn run(state: &StateDir, rec: &LabRecord, nodes: Vec<NodePlan>) -> anyhow::Result<usize> {
    let mut started = vec![];
    for node in nodes {
        let name = kube_router_name(&node);
        let pid = procs::spawn(
            state,
            &name,
            &node.netns,
            &rec.bins.kube_router,
            &kube_router_args(state, &node),
        )?;
        started.push((name, pid, node));
    }
    let count = started.len();
    let url = format!("http://127.0.0.1:{HEALTH_PORT}/healthz");
    kubectl::wait_for(
        "kube-router's firewall controller to sync",
        Duration::from_secs(180),
        || {
            for (name, pid, node) in &started {
                procs::check_running(state, name, *pid)?;
                // 200 once every controller it runs has reported a heartbeat (its first sync).
                let out = sh::run(sh::in_netns(&node.netns, "curl").args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &url,
                ]));
                if !matches!(out, Ok(o) if o.stdout == b"200") {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::node_plan;

    #[test]
    fn only_the_firewall_runs_and_it_knows_its_node() {
        let a = kube_router_args(&StateDir::at("/s"), &node_plan(3)).join(" ");
        for flag in [
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
        ] {
            assert!(a.contains(flag), "{a}");
        }
        assert!(a.contains("--hostname-override=node-3"), "{a}");
        assert!(a.contains("--service-cluster-ip-range=10.32.0.0/24"), "{a}");
        assert!(
            a.contains("--kubeconfig=/s/kubeconfigs/admin.kubeconfig"),
            "{a}"
        );
    }
}
