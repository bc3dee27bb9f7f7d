//! `--cni weft`: weft installed as users install it, with `kubectl apply -k`: the project's
//! `deploy/lab` overlay (the base DaemonSet with the lab's API server and pod network) plus
//! this run's routing choice. The DaemonSet controller creates one agent pod per node, the
//! kubelet stand-ins run them on the nodes' host network, and each agent installs the nodes'
//! CNI plugin and configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::kubectl;
use crate::nodes::cni_conf_dir;
use crate::spec::{LabSpec, NodePlan, Proxy};
use crate::state::{LabRecord, StateDir};

/// The CNI configuration file the agent installs on every node.
pub const CONFLIST: &str = "05-weft.conflist";
/// Namespace and name of the DaemonSet in `deploy/`.
pub const NAMESPACE: &str = "weft-system";
pub const DAEMONSET: &str = "weft";

/// The project's `deploy/` directory (this crate sits beside it).
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The run's settings on top of `deploy/lab`: routing mode, and where forwarding happens
/// (the node's stack when kube-proxy runs, so its NAT sees every packet; eBPF otherwise).
pub fn run_kustomization(spec: &LabSpec) -> String {
    let (host_routing, replacement) = match spec.proxy {
        Proxy::None => ("bpf", "true"),
        Proxy::Iptables | Proxy::Nftables => ("kernel", "false"),
    };
    format!(
        "# Written by weft-lab up: deploy/lab plus this run's choices.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\n\
         kind: Kustomization\n\
         resources:\n  - ../lab\n\
         patches:\n\
         \x20 - target:\n      kind: ConfigMap\n      name: weft-config\n    patch: |-\n\
         \x20     - op: replace\n        path: /data/routing-mode\n        value: {}\n\
         \x20     - op: replace\n        path: /data/host-routing\n        value: {host_routing}\n\
         \x20     - op: replace\n        path: /data/kube-proxy-replacement\n        value: \"{replacement}\"\n",
        spec.routing.as_str()
    )
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Copies `deploy/{base,lab}` into the state dir, writes the run's overlay and applies it.
pub fn install(state: &StateDir, rec: &LabRecord) -> anyhow::Result<()> {
    let root = state.manifests().join("weft");
    let deploy = deploy_dir();
    for part in ["base", "lab"] {
        copy_tree(&deploy.join(part), &root.join(part))
            .with_context(|| format!("copying {}", deploy.join(part).display()))?;
    }
    let run = root.join("run");
    std::fs::create_dir_all(&run)?;
    std::fs::write(run.join("kustomization.yaml"), run_kustomization(&rec.spec))?;
    let out = crate::sh::run(kubectl::command(state, rec).arg("apply").arg("-k").arg(&run))
        .context("kubectl apply -k (weft)")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        eprintln!("  {line}");
    }
    Ok(())
}

/// Waits until the DaemonSet's pod is ready on every node in `nodes` and each of those nodes
/// has the agent's CNI configuration.
pub fn wait_ready(state: &StateDir, rec: &LabRecord, nodes: &[NodePlan], timeout: Duration) -> anyhow::Result<()> {
    let what = format!("weft's agent to be ready on {} nodes", nodes.len());
    kubectl::wait_for(&what, timeout, || {
        let pods = kubectl::get_json(state, rec, &["pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=weft"])?;
        let ready_on = |node: &str| {
            pods["items"].as_array().into_iter().flatten().any(|p| {
                p["spec"]["nodeName"] == node
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        };
        for n in nodes {
            if !ready_on(&n.name) || !cni_conf_dir(state, &n.name).join(CONFLIST).is_file() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Cni, Routing, Topology};

    #[test]
    fn the_run_overlay_sets_routing_and_follows_kube_proxy() {
        let spec = LabSpec::new(2, Cni::Weft, Proxy::None).unwrap();
        let k = run_kustomization(&spec);
        assert!(k.contains("  - ../lab\n"), "{k}");
        assert!(k.contains("path: /data/routing-mode\n        value: native\n"), "{k}");
        assert!(k.contains("path: /data/host-routing\n        value: bpf\n"), "{k}");
        assert!(k.contains("path: /data/kube-proxy-replacement\n        value: \"true\"\n"), "{k}");
        let spec = LabSpec::new(2, Cni::Weft, Proxy::Iptables)
            .unwrap()
            .with_network(Topology::Flat, Some(Routing::Vxlan))
            .unwrap();
        let k = run_kustomization(&spec);
        assert!(k.contains("value: vxlan\n") && k.contains("value: kernel\n"), "{k}");
        assert!(k.contains("value: \"false\"\n"), "kube-proxy keeps the Services: {k}");
    }

    #[test]
    fn the_project_ships_the_overlay_the_lab_applies() {
        for f in ["base/kustomization.yaml", "base/daemonset.yaml", "lab/kustomization.yaml"] {
            assert!(deploy_dir().join(f).is_file(), "deploy/{f} is missing");
        }
        let ds = std::fs::read_to_string(deploy_dir().join("base/daemonset.yaml")).unwrap();
        assert!(ds.contains(&format!("name: {DAEMONSET}")) && ds.contains(&format!("namespace: {NAMESPACE}")));
    }
}
