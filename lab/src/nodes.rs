//! Per-node processes: the kubelet stand-in (registers the Node, runs pods through CNI) and
//! kube-proxy, both inside the node's namespace; and the wait for node-ipam's pod CIDRs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ipnetwork::Ipv4Network;

use crate::cni;
use crate::kubectl;
use crate::kubelet;
use crate::procs;
use crate::spec::{Cni, LabSpec, NodePlan, CLUSTER_CIDR, CLUSTER_DNS, CLUSTER_DOMAIN};
use crate::state::{LabRecord, StateDir};

/// Process name (pid and log file stem) of a node's kubelet stand-in.
pub fn kubelet_name(node: &NodePlan) -> String {
    format!("kubelet-{}", node.name)
}

pub fn kube_proxy_name(node: &NodePlan) -> String {
    format!("kube-proxy-{}", node.name)
}

/// The kubelet stand-in's configuration for one node.
pub fn kubelet_config(state: &StateDir, rec: &LabRecord, node: &NodePlan) -> kubelet::Config {
    let dir = state.node(&node.name);
    kubelet::Config {
        node_name: node.name.clone(),
        node_ip: node.ip,
        kubeconfig: state.kubeconfig(&node.name),
        state_dir: kubelet_state_dir(state, &node.name),
        cni_bin_dir: cni_bin_dir(state, &node.name),
        cni_conf_dir: cni_conf_dir(state, &node.name),
        cni_conf_template: match rec.spec.cni {
            Cni::Bridge => Some(cni::bridge_conflist_template(&dir.join("cni/ipam"))),
            Cni::Weft => None,
        },
        netns_prefix: node.pod_netns_prefix.clone(),
        cluster_dns: CLUSTER_DNS,
        cluster_domain: CLUSTER_DOMAIN.to_string(),
        bin_paths: Some(image_bin_dir(state)),
        images: rec.images.clone(),
        host_root: Some(host_root(state, &node.name)),
        cgroup: Some(node_cgroup(state, &node.name)),
        // Only the lab's certificates (the API server's kubelet client) may use the kubelet API.
        client_ca_file: Some(crate::pki::PkiFiles::new(state).ca_cert()),
    }
}

/// The lab's cgroup v2 subtree (relative to the machine's v2 root), one per state dir so two
/// labs' nodes never share one: `weft-lab-<state dir name>`.
pub fn lab_cgroup(state: &StateDir) -> String {
    let name = state.root().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("weft-lab-{name}")
}

/// A node's own cgroup v2 subtree (its "root cgroup"), relative to the machine's v2 root.
pub fn node_cgroup(state: &StateDir, node: &str) -> String {
    format!("{}/{node}", lab_cgroup(state))
}

/// The node's own filesystem: hostPath volumes of its pods live here (`<root>/opt/cni/bin`
/// is the node's `/opt/cni/bin`), as on a real node's disk.
pub fn host_root(state: &StateDir, node: &str) -> PathBuf {
    state.node(node).join("root")
}

/// The node's CNI configuration directory (its `/etc/cni/net.d`).
pub fn cni_conf_dir(state: &StateDir, node: &str) -> PathBuf {
    host_root(state, node).join("etc/cni/net.d")
}

/// The node's `CNI_PATH` (its `/opt/cni/bin`): the reference plugins, as a node's packages
/// install them; weft's DaemonSet adds `weft`.
pub fn cni_bin_dir(state: &StateDir, node: &str) -> PathBuf {
    host_root(state, node).join("opt/cni/bin")
}

/// Fills the node's `/opt/cni/bin` with the reference plugins: copies, as a node's packages
/// install them (a link into this machine's cache would dangle inside a container's own root,
/// where weft's agent looks for `portmap`).
fn install_reference_plugins(state: &StateDir, rec: &LabRecord, node: &str) -> anyhow::Result<()> {
    let bin = cni_bin_dir(state, node);
    std::fs::create_dir_all(&bin)?;
    for entry in std::fs::read_dir(&rec.bins.cni_bin_dir)
        .with_context(|| format!("listing {}", rec.bins.cni_bin_dir.display()))?
    {
        let entry = entry?;
        let to = bin.join(entry.file_name());
        if !to.exists() {
            std::fs::copy(entry.path(), &to).with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Directory of the extra programs the kubelet's image catalogue runs: `coredns` and `agnhost`
/// (weft runs from its image, see `images`).
pub fn image_bin_dir(state: &StateDir) -> PathBuf {
    state.root().join("bin")
}

/// Fills [`image_bin_dir`] with the programs the lab runs from it for its whole life: a
/// snapshot of this `weft-lab` (the kubelet stand-ins; a `cargo build` while the lab is up
/// must not pull the binary from under them) and the built `coredns` and `agnhost`. Returns the
/// `weft-lab` to start kubelets from.
pub fn stage_bins(state: &StateDir, rec: &LabRecord) -> anyhow::Result<PathBuf> {
    let dir = image_bin_dir(state);
    std::fs::create_dir_all(&dir)?;
    let lab_bin = dir.join("weft-lab");
    // /proc/self/exe still reads when the file was replaced since this process started.
    snapshot(std::path::Path::new("/proc/self/exe"), &lab_bin)?;
    std::os::unix::fs::symlink(&rec.bins.coredns, dir.join("coredns"))
        .with_context(|| format!("linking coredns into {}", dir.display()))?;
    // agnhost and the files of its image, which the catalogue serves as `/agnhost`.
    if let Some(agnhost_dir) = rec.bins.agnhost.parent() {
        for name in ["agnhost", "localhost.crt", "localhost.key"] {
            std::os::unix::fs::symlink(agnhost_dir.join(name), dir.join(name))
                .with_context(|| format!("linking {name} into {}", dir.display()))?;
        }
    }
    Ok(lab_bin)
}

/// A copy (not a link: a linker may rewrite the original file in place).
fn snapshot(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Where a node's kubelet stand-in keeps its pod records and logs.
pub fn kubelet_state_dir(state: &StateDir, node: &str) -> PathBuf {
    state.node(node).join("kubelet")
}

/// Starts the kubelet stand-in of every node.
pub fn start_kubelets(state: &StateDir, rec: &LabRecord) -> anyhow::Result<Vec<(String, u32)>> {
    let exe = stage_bins(state, rec)?;
    let mut started = vec![];
    for node in rec.spec.node_plans() {
        started.push(start_kubelet(state, rec, &node, &exe)?);
    }
    eprintln!("  started {} kubelet stand-ins", started.len());
    Ok(started)
}

/// Prepares one node's files and starts its kubelet stand-in from `exe` (the staged weft-lab).
pub fn start_kubelet(
    state: &StateDir,
    rec: &LabRecord,
    node: &NodePlan,
    exe: &std::path::Path,
) -> anyhow::Result<(String, u32)> {
    let cfg = kubelet_config(state, rec, node);
    std::fs::create_dir_all(&cfg.state_dir)?;
    std::fs::create_dir_all(&cfg.cni_conf_dir)?;
    install_reference_plugins(state, rec, &node.name)?;
    let path = state.node(&node.name).join("kubelet.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg)?)?;
    let name = kubelet_name(node);
    let args = vec!["kubelet".to_string(), "--config".into(), path.to_string_lossy().into_owned()];
    let pid = procs::spawn(state, &name, &node.netns, exe, &args)?;
    Ok((name, pid))
}

/// Waits until every node is registered and node-ipam gave it a pod CIDR.
pub fn wait_for_pod_cidrs(
    state: &StateDir,
    rec: &LabRecord,
    kubelets: &[(String, u32)],
) -> anyhow::Result<Vec<(NodePlan, Ipv4Network)>> {
    let plans = rec.spec.node_plans();
    kubectl::wait_for(
        &format!("{} nodes to register and get pod CIDRs", plans.len()),
        Duration::from_secs(120),
        || {
            for (name, pid) in kubelets {
                procs::check_running(state, name, *pid)?;
            }
            let nodes = kubectl::get_json(state, rec, &["nodes"])?;
            let mut out = vec![];
            for plan in &plans {
                let item = nodes["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|n| n["metadata"]["name"] == plan.name.as_str()));
                let Some(cidr) = item.and_then(|n| n["spec"]["podCIDR"].as_str()) else {
                    return Ok(None);
                };
                let cidr: Ipv4Network = cidr.parse().with_context(|| format!("podCIDR {cidr:?}"))?;
                out.push((plan.clone(), cidr));
            }
            Ok(Some(out))
        },
    )
}

pub fn kube_proxy_args(state: &StateDir, node: &NodePlan, mode: &str) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", state.kubeconfig("kube-proxy").display()),
        format!("--hostname-override={}", node.name),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        format!("--proxy-mode={mode}"),
        // nf_conntrack_max is global, not per namespace: leave the machine's value alone.
        "--conntrack-max-per-core=0".into(),
        "--metrics-bind-address=127.0.0.1:10249".into(),
        "--healthz-bind-address=127.0.0.1:10256".into(),
        "--v=1".into(),
    ]
}

/// Starts kube-proxy on every node in the chosen mode, unless `--proxy none`.
pub fn start_kube_proxies(state: &StateDir, rec: &LabRecord) -> anyhow::Result<()> {
    let Some(mode) = rec.spec.proxy.kube_proxy_mode() else {
        eprintln!("  no kube-proxy (--proxy none)");
        return Ok(());
    };
    let started = run_kube_proxies(state, rec, rec.spec.node_plans(), mode)?;
    eprintln!("  started kube-proxy ({mode}) on {} nodes", started);
    Ok(())
}

/// Starts kube-proxy on one (added) node, if the lab runs kube-proxy.
pub fn start_kube_proxy(state: &StateDir, rec: &LabRecord, node: &NodePlan) -> anyhow::Result<()> {
    match rec.spec.proxy.kube_proxy_mode() {
        Some(mode) => run_kube_proxies(state, rec, vec![node.clone()], mode).map(|_| ()),
        None => Ok(()),
    }
}

pub fn run_kube_proxies(state: &StateDir, rec: &LabRecord, nodes: Vec<NodePlan>, mode: &str) -> anyhow::Result<usize> {
    let mut started = vec![];
    for node in nodes {
        let name = kube_proxy_name(&node);
        let pid = procs::spawn(state, &name, &node.netns, &rec.bins.kube_proxy, &kube_proxy_args(state, &node, mode))?;
        started.push((name, pid, node));
    }
    let count = started.len();
    // Generous: a restart's first sync of 10k Services takes tens of seconds in iptables mode.
    kubectl::wait_for("kube-proxy to sync its rules", Duration::from_secs(300), || {
        for (name, pid, node) in &started {
            procs::check_running(state, name, *pid)?;
            // healthz answers 200 once the first full sync is done.
            let out = crate::sh::run(
                crate::sh::in_netns(&node.netns, "curl")
                    .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:10256/healthz"]),
            );
            if !matches!(out, Ok(o) if o.stdout == b"200") {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })?;
    Ok(count)
}

/// Which node names this spec has (for the PKI).
pub fn node_names(spec: &LabSpec) -> Vec<String> {
    spec.node_plans().into_iter().map(|n| n.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{node_plan, Proxy};

    #[test]
    fn kube_proxy_is_told_its_node_and_the_cluster_cidr() {
        let a = kube_proxy_args(&StateDir::at("/s"), &node_plan(2), "nftables").join(" ");
        assert!(a.contains("--hostname-override=node-2"));
        assert!(a.contains("--cluster-cidr=10.200.0.0/16"));
        assert!(a.contains("--proxy-mode=nftables"));
        assert!(a.contains("--kubeconfig=/s/kubeconfigs/kube-proxy.kubeconfig"));
        let spec = LabSpec::new(2, Cni::Bridge, Proxy::None).unwrap();
        assert_eq!(node_names(&spec), vec!["node-1", "node-2"]);
    }
}
