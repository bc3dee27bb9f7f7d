//! weft installed in the lab as a DaemonSet: pods pinned to nodes, reachability checks as a
//! user runs them (ping, curl, traceroute from pods; curl from nodes), and helpers to find and
//! kill a node's agent.

use std::time::Duration;

use serde_json::Value;

use crate::lab::{eventually, Lab};

pub const WELCOME: &str = "Welcome to nginx!";
/// The outside host (a lab namespace with a documentation address).
pub const OUTSIDE: &str = "203.0.113.10";

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A pod on one node: an nginx server and a client with curl, ping and traceroute.
#[derive(Debug, Clone)]
pub struct NodePods {
    pub node: String,
    pub node_ip: String,
    pub server: String,
    pub server_ip: String,
    pub client: String,
    pub client_ip: String,
}

fn yaml_list(field: &str, items: &[&str]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let list: Vec<String> = items.iter().map(|a| format!("{a:?}")).collect();
    format!("\n    {field}: [{}]", list.join(", "))
}

/// A pod pinned to `node` (no scheduler decision), with optional command and args.
pub fn pinned_pod(name: &str, node: &str, image: &str, command: &[&str], args: &[&str]) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{test: weft}}\nspec:\n  \
         nodeName: {node}\n  containers:\n  - name: main\n    image: {image}{}{}\n---\n",
        yaml_list("command", command),
        yaml_list("args", args)
    )
}

/// Nodes of the lab: (name, InternalIP), from `lab status`.
pub fn nodes(lab: &Lab) -> Vec<(String, String)> {
    let s = json(&lab.ok(&["status", "-o", "json"], Duration::from_secs(60)));
    s["status"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n["internal_ip"].as_str().unwrap().to_string()))
        .collect()
}

pub fn pod_ip(lab: &Lab, name: &str) -> String {
    lab.kubectl(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"]).trim().to_string()
}

/// An nginx and a curl pod on every given node, running and Ready.
pub fn start_pods(lab: &Lab, nodes: &[(String, String)], tag: &str) -> Vec<NodePods> {
    let mut manifest = String::new();
    for (node, _) in nodes {
        manifest.push_str(&pinned_pod(&format!("{tag}srv-{node}"), node, "nginx", &[], &[]));
        manifest.push_str(&pinned_pod(
            &format!("{tag}cli-{node}"),
            node,
            "radial/busyboxplus:curl",
            &[],
            &["sleep", "3600"],
        ));
    }
    lab.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    let mut names = vec!["wait", "--for=condition=Ready", "--timeout=180s"];
    let pods: Vec<String> = nodes
        .iter()
        .flat_map(|(n, _)| [format!("pod/{tag}srv-{n}"), format!("pod/{tag}cli-{n}")])
        .collect();
    names.extend(pods.iter().map(String::as_str));
    lab.kubectl(&names);
    nodes
        .iter()
        .map(|(node, ip)| {
            let server = format!("{tag}srv-{node}");
            let client = format!("{tag}cli-{node}");
            NodePods {
                node: node.clone(),
                node_ip: ip.clone(),
                server_ip: pod_ip(lab, &server),
                client_ip: pod_ip(lab, &client),
                server,
                client,
            }
        })
        .collect()
}

/// `lab exec default/POD -- CMD…`, asserting success; returns the output.
pub fn exec_ok(lab: &Lab, pod: &str, cmd: &[&str]) -> String {
    let (ok, out) = lab.exec(&format!("default/{pod}"), cmd, Duration::from_secs(60));
    assert!(ok, "`{}` in {pod} failed:\n{out}", cmd.join(" "));
    out
}

/// curl from a pod; the body.
pub fn curl(lab: &Lab, pod: &str, url: &str) -> String {
    exec_ok(lab, pod, &["curl", "-s", "--max-time", "5", url])
}

/// Every client reaches every server by ping and HTTP, and every server logged the client's
/// own pod address (no NAT between pods).
pub fn full_mesh(lab: &Lab, pods: &[NodePods]) {
    for c in pods {
        for s in pods {
            exec_ok(lab, &c.client, &["ping", "-c", "2", "-W", "2", &s.server_ip]);
            let body = curl(lab, &c.client, &format!("http://{}/", s.server_ip));
            assert!(body.contains(WELCOME), "{} -> {} ({}): {body}", c.node, s.node, s.server_ip);
        }
    }
    for s in pods {
        let log = lab.ok(&["logs", &format!("default/{}", s.server)], Duration::from_secs(30));
        for c in pods {
            assert!(
                log.contains(&format!("{} - ", c.client_ip)),
                "nginx on {} saw {} ({}) by its own address:\n{log}",
                s.node,
                c.client_ip,
                c.node
            );
        }
    }
}

/// Node -> pod (curl from every node to every server) and pod -> node (every client reaches
/// every node's agent on its host-network metrics port), without NAT.
pub fn nodes_and_pods(lab: &Lab, pods: &[NodePods]) {
    for n in pods {
        for s in pods {
            let out = lab.ok(
                &["node-exec", &n.node, "--", "curl", "-s", "--max-time", "5", &format!("http://{}/", s.server_ip)],
                Duration::from_secs(30),
            );
            assert!(out.contains(WELCOME), "node {} -> pod on {}: {out}", n.node, s.node);
        }
    }
    for c in pods {
        for n in pods {
            let body = curl(lab, &c.client, &format!("http://{}:9965/healthz", n.node_ip));
            assert_eq!(body.trim(), "ok", "pod on {} -> node {} ({})", c.node, n.node, n.node_ip);
        }
    }
}

/// Hops of a `traceroute -n` output (the address column of numbered lines).
pub fn hops(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|l| l.split_whitespace().next().is_some_and(|t| t.parse::<u8>().is_ok()))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect()
}

/// traceroute from `from`'s client to `to`'s server shows: the source node, the destination
/// node, the pod, as with kernel routing (eBPF forwarding keeps the routed hops visible).
pub fn traceroute_shows_both_nodes(lab: &Lab, from: &NodePods, to: &NodePods) {
    let trace = exec_ok(lab, &from.client, &["traceroute", "-n", "-q", "1", "-w", "2", &to.server_ip]);
    assert_eq!(
        hops(&trace),
        vec![from.node_ip.clone(), to.node_ip.clone(), to.server_ip.clone()],
        "traceroute {} -> {}:\n{trace}",
        from.node,
        to.node
    );
}

/// The outside host sees pod egress coming from the pod's node.
pub fn egress_is_masqueraded(lab: &Lab, pods: &[NodePods]) {
    // socat on the outside host answers an HTTP request with the peer address it saw.
    let mut server = lab.cmd(&[
        "node-exec",
        "outside",
        "--",
        "socat",
        "TCP-LISTEN:8081,fork,reuseaddr",
        // No escapes: socat would expand them before sh sees the command.
        "SYSTEM:echo HTTP/1.0 200 OK; echo; echo $SOCAT_PEERADDR",
    ]);
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server.spawn().expect("socat on the outside host"));
    for c in pods {
        let seen = eventually("the outside host to answer", Duration::from_secs(20), || {
            let (ok, out) = lab.exec(
                &format!("default/{}", c.client),
                &["curl", "-s", "--max-time", "3", &format!("http://{OUTSIDE}:8081/")],
                Duration::from_secs(30),
            );
            (ok && !out.trim().is_empty()).then(|| out.trim().to_string())
        });
        assert_eq!(seen, c.node_ip, "egress of a pod on {} leaves with its node's address", c.node);
    }
}

/// `weft status -o json` on a node (the agent's own view), with the binary the agent installed
/// on that node (its `/opt/cni/bin/weft`, from the image).
pub fn weft_status(lab: &Lab, node: &str) -> Value {
    weft_json(lab, node, &["status"])
}

/// `weft ARGS… -o json` on a node, against its agent's socket.
pub fn weft_json(lab: &Lab, node: &str, args: &[&str]) -> Value {
    let weft = lab.state_dir().join(format!("nodes/{node}/root/opt/cni/bin/weft"));
    let mut full = vec!["node-exec", node, "--", weft.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json", "--socket", "/run/weft/weft.sock"]);
    json(&lab.ok(&full, Duration::from_secs(30)))
}

/// Pids of the weft agent running on `node` (its process in the node's network namespace).
pub fn agent_pids(node: &str) -> Vec<u32> {
    let ns = std::fs::metadata(format!("/run/netns/wl-{node}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("the node's netns");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains("/weft agent ")
                && std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == ns)
        })
        .collect()
}
