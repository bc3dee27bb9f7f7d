//! Nodes joining and leaving a running lab (`weft-lab node add|remove`), the API server going
//! away and coming back (`weft-lab apiserver stop|start`), a node's kube-proxy restarting,
//! stopping with its rules removed, or starting in another mode (`weft-lab kube-proxy
//! restart|stop|start node-N`): the events a CNI must survive, the restart whose first sync the
//! Service benchmark times, and the switches between kube-proxy and weft.

use std::time::Duration;

use anyhow::Context;

use crate::spec::{node_plan_in, Cni, NodePlan, CP_NS, MAX_NODES};
use crate::state::StateDir;
use crate::{controlplane, kubectl, netpol, nodes, pki, procs, topology, weft};

/// Adds the next node (`node-N+1`): namespace, identity, kubelet stand-in, kube-proxy if the
/// lab runs it; waits until it has a pod CIDR and (with weft) a ready agent.
pub fn add(state: &StateDir) -> anyhow::Result<NodePlan> {
    let mut rec = state.load_record()?;
    let index = rec.spec.nodes + 1;
    if index > MAX_NODES {
        anyhow::bail!("the lab's address plan has room for {MAX_NODES} nodes");
    }
    let plan = node_plan_in(index, rec.spec.topology);
    eprintln!("==> adding {} ({})", plan.name, plan.ip);
    topology::add_node(&plan)?;
    rec.spec.nodes = index;
    state.save_record(&rec)?;
    pki::add_node(state, &plan.name)?;
    let exe = nodes::image_bin_dir(state).join("weft-lab");
    let kubelet = nodes::start_kubelet(state, &rec, &plan, &exe)?;
    let cidrs = nodes::wait_for_pod_cidrs(state, &rec, &[kubelet])?;
    match rec.spec.cni {
        Cni::Weft => {
            weft::wait_ready(state, &rec, std::slice::from_ref(&plan), Duration::from_secs(120))?;
            topology::route_cp_to_pods(&cidrs)?;
        }
        Cni::Bridge => topology::route_pod_cidrs(&cidrs)?,
    }
    nodes::start_kube_proxy(state, &rec, &plan)?;
    netpol::start_on(state, &rec, &plan)?;
    eprintln!("==> {} is up", plan.name);
    Ok(plan)
}

/// Removes `name`: its kubelet stops its pods, the Node object is deleted, its namespace goes.
pub fn remove(state: &StateDir, name: &str) -> anyhow::Result<()> {
    let mut rec = state.load_record()?;
    let plan = node_plan(&rec, name)?;
    eprintln!("==> removing {name}");
    for process in [netpol::kube_router_name(&plan), nodes::kube_proxy_name(&plan), nodes::kubelet_name(&plan)] {
        procs::stop_named(state, &process, Duration::from_secs(30));
    }
    let cidr = kubectl::output(state, &rec, &["get", "node", name, "-o", "jsonpath={.spec.podCIDR}"])
        .ok()
        .and_then(|c| c.trim().parse::<ipnetwork::Ipv4Network>().ok());
    kubectl::output(state, &rec, &["delete", "node", name, "--wait=true"])
        .with_context(|| format!("deleting Node {name}"))?;
    if let Some(cidr) = cidr {
        // The bridge CNI's static routes on the other nodes stay (harmless, unreachable).
        let _ = topology::unroute_cp_from_pods(cidr);
    }
    topology::remove_node(&plan)?;
    rec.spec.removed.push(plan.index);
    state.save_record(&rec)?;
    eprintln!("==> {name} removed");
    Ok(())
}

/// The plan of the lab's node `name`.
fn node_plan(rec: &crate::state::LabRecord, name: &str) -> anyhow::Result<crate::spec::NodePlan> {
    rec.spec
        .node_plans()
        .into_iter()
        .find(|n| n.name == name)
        .with_context(|| format!("no node {name} in the lab"))
}

/// Restarts `name`'s kube-proxy with the same flags and waits for its /healthz (its first full
/// sync of every Service).
pub fn kube_proxy_restart(state: &StateDir, name: &str) -> anyhow::Result<()> {
    let rec = state.load_record()?;
    if rec.spec.proxy.kube_proxy_mode().is_none() {
        anyhow::bail!("this lab runs no kube-proxy (--proxy none)");
    }
    let plan = node_plan(&rec, name)?;
    procs::stop_named(state, &nodes::kube_proxy_name(&plan), Duration::from_secs(30));
    nodes::start_kube_proxy(state, &rec, &plan)?;
    eprintln!("kube-proxy on {name} restarted and synced");
    Ok(())
}

/// Stops `name`'s kube-proxy and removes its rules (`kube-proxy --cleanup`, every mode's), as a
/// node leaving kube-proxy for weft does. Connections it translated keep their translation in
/// the kernel's conntrack.
pub fn kube_proxy_stop(state: &StateDir, name: &str) -> anyhow::Result<()> {
    let rec = state.load_record()?;
    let plan = node_plan(&rec, name)?;
    procs::stop_named(state, &nodes::kube_proxy_name(&plan), Duration::from_secs(30));
    let out = crate::sh::run(crate::sh::in_netns(&plan.netns, &rec.bins.kube_proxy).args(["--cleanup", "--v=1"]))
        .with_context(|| format!("kube-proxy --cleanup on {name}"))?;
    // It exits 0 when it removed what it found; klog's error lines (`E` and the date) say
    // what it could not clean.
    let errors: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('E') && l[1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| format!("\n  {l}"))
        .collect();
    eprintln!("kube-proxy on {name} stopped, its rules removed{errors}");
    Ok(())
}

/// Starts `name`'s kube-proxy in `mode` (default: the lab's) and waits for its first full sync.
pub fn kube_proxy_start(state: &StateDir, name: &str, mode: Option<&str>) -> anyhow::Result<()> {
    let rec = state.load_record()?;
    let plan = node_plan(&rec, name)?;
    let Some(mode) = mode.or(rec.spec.proxy.kube_proxy_mode()) else {
        anyhow::bail!("this lab runs no kube-proxy (--proxy none): name a --mode");
    };
    nodes::run_kube_proxies(state, &rec, vec![plan], mode)?;
    eprintln!("kube-proxy ({mode}) on {name} started and synced");
    Ok(())
}

/// Stops kube-apiserver (the rest of the lab keeps running).
pub fn apiserver_stop(state: &StateDir) -> anyhow::Result<()> {
    procs::stop_named(state, "kube-apiserver", Duration::from_secs(10));
    eprintln!("kube-apiserver stopped");
    Ok(())
}

/// Starts kube-apiserver again with the same flags and waits for /readyz.
pub fn apiserver_start(state: &StateDir) -> anyhow::Result<()> {
    let rec = state.load_record()?;
    let pid = procs::spawn(
        state,
        "kube-apiserver",
        CP_NS,
        &rec.bins.kube_apiserver,
        &controlplane::apiserver_args(state),
    )?;
    kubectl::wait_for("kube-apiserver /readyz", Duration::from_secs(120), || {
        procs::check_running(state, "kube-apiserver", pid)?;
        Ok(kubectl::output(state, &rec, &["get", "--raw", "/readyz"]).ok().filter(|o| o.trim() == "ok"))
    })?;
    Ok(())
}
