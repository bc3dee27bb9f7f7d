//! `--cni weft` until the agent ships as a DaemonSet: the lab runs `weft agent` on every node
//! (in the node's network namespace, pins under `/sys/fs/bpf/wl-<node>`) and gives the node's
//! kubelet stand-in a conflist whose only plugin is `weft`, talking to that agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ipnetwork::Ipv4Network;

use crate::kubectl;
use crate::nodes::image_bin_dir;
use crate::procs::{self, Enter};
use crate::spec::NodePlan;
use crate::state::StateDir;

fn agent_name(node: &NodePlan) -> String {
    format!("weft-agent-{}", node.name)
}

/// Where the node's agent keeps its socket and state.
fn agent_dir(state: &StateDir, node: &NodePlan) -> PathBuf {
    state.node(&node.name).join("weft")
}

/// The bpffs pin directory of a node's agent (down removes `/sys/fs/bpf/wl-*`).
pub fn pin_dir(node: &NodePlan) -> PathBuf {
    Path::new("/sys/fs/bpf").join(&node.netns)
}

/// The node's CNI network: the weft plugin, pointed at this node's agent.
pub fn conflist(socket: &Path, pod_cidr: Ipv4Network) -> String {
    let doc = serde_json::json!({
        "cniVersion": "1.1.0",
        "name": "weft",
        "plugins": [{"type": "weft", "agentSocket": socket, "podCIDR": pod_cidr.to_string()}],
    });
    serde_json::to_string_pretty(&doc).expect("conflist serialises")
}

pub fn agent_args(state: &StateDir, node: &NodePlan, cidr: Ipv4Network) -> Vec<String> {
    let dir = agent_dir(state, node);
    vec![
        "agent".into(),
        format!("--pin-dir={}", pin_dir(node).display()),
        format!("--socket={}", dir.join("weft.sock").display()),
        format!("--state-dir={}", dir.join("state").display()),
        format!("--pod-cidr={cidr}"),
    ]
}

/// Starts the agents, waits for their sockets, then writes each node's conflist.
pub fn start_agents(state: &StateDir, nodes: &[(NodePlan, Ipv4Network)], cni_conf_dir: impl Fn(&NodePlan) -> PathBuf) -> anyhow::Result<()> {
    let weft = image_bin_dir(state).join("weft");
    if !weft.is_file() {
        anyhow::bail!("--cni weft needs the weft binary beside weft-lab: run `cargo build -p weft` first");
    }
    let mut started = vec![];
    for (node, cidr) in nodes {
        std::fs::create_dir_all(agent_dir(state, node))?;
        let name = agent_name(node);
        // nsenter, not `ip netns exec`: the latter remounts /sys and hides /sys/fs/bpf.
        let pid = procs::spawn_in(state, &name, &node.netns, Enter::NetOnly, &weft, &agent_args(state, node, *cidr))?;
        started.push((node, *cidr, name, pid));
    }
    kubectl::wait_for("the weft agents' sockets", Duration::from_secs(30), || {
        for (node, _, name, pid) in &started {
            procs::check_running(state, name, *pid)?;
            if !agent_dir(state, node).join("weft.sock").exists() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })?;
    for (node, cidr, _, _) in &started {
        let dir = cni_conf_dir(node);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("10-weft.conflist");
        std::fs::write(&path, conflist(&agent_dir(state, node).join("weft.sock"), *cidr))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("  started weft agent on {} nodes", started.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::node_plan;

    #[test]
    fn conflist_points_the_plugin_at_the_nodes_agent() {
        let v: serde_json::Value =
            serde_json::from_str(&conflist(Path::new("/s/nodes/node-1/weft/weft.sock"), "10.200.3.0/24".parse().unwrap()))
                .unwrap();
        assert_eq!(v["plugins"][0]["type"], "weft");
        assert_eq!(v["plugins"][0]["agentSocket"], "/s/nodes/node-1/weft/weft.sock");
        assert_eq!(v["plugins"][0]["podCIDR"], "10.200.3.0/24");
        let a = agent_args(&StateDir::at("/s"), &node_plan(1), "10.200.3.0/24".parse().unwrap()).join(" ");
        assert!(a.contains("--pin-dir=/sys/fs/bpf/wl-node-1"), "{a}");
        assert!(a.contains("--socket=/s/nodes/node-1/weft/weft.sock"), "{a}");
    }
}
