//! What the agent checks at start: a node without a part weft needs gets a clear error naming
//! it and a quick non-zero exit (what the DaemonSet's restart then shows in the pod's log),
//! not a crash loop without a reason. The missing parts are made missing for the agent only:
//! a pin directory off bpffs, no cgroup v2 where the agent looks (`ip netns exec` mounts a
//! fresh sysfs, whose `/sys/fs/cgroup` is an empty directory), a `--cgroup-root` that is not
//! cgroup v2. Root only; fails (not skips) without root, bpffs or `ip`.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::node::{Node, WEFT};

/// Run `weft agent ARGS` in the node (its socket, state dir and pin dir unless `args` name
/// another), wait at most 20 s for it to exit, and return its output.
fn agent_exits(node: &Node, args: &[&str], pin_dir: Option<&std::path::Path>) -> Output {
    let mut cmd = node.in_node(WEFT);
    cmd.arg("agent")
        .args(args)
        .arg("--pin-dir")
        .arg(pin_dir.unwrap_or(&node.pin_dir))
        .arg("--socket")
        .arg(node.socket())
        .arg("--state-dir")
        .arg(node.state_dir())
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start weft agent");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "weft agent {args:?} still runs after 20 s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Kubernetes mode against an API server that is not there: the checks come before it is asked.
const KUBERNETES: [&str; 4] = ["--node-name", "n1", "--api-server", "https://127.0.0.1:1"];

fn assert_fails_with(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the agent succeeded:\n{stderr}");
    assert!(
        stderr.contains(message),
        "the agent's error does not say {message:?}:\n{stderr}"
    );
}

#[test]
fn a_pin_directory_off_bpffs_is_named_and_nothing_is_created() {
    let node = Node::without_agent();
    let off = node.dir.0.join("not-bpffs/weft");
    let out = agent_exits(&node, &["--pod-cidr", "10.244.0.0/24"], Some(&off));
    assert_fails_with(&out, "is not on a BPF filesystem");
    assert!(!off.exists(), "the agent created {}", off.display());
    assert!(!node.socket().exists(), "the agent served its socket");
}

#[test]
fn no_cgroup_v2_is_named_when_socket_load_balancing_is_on() {
    let node = Node::without_agent();
    let out = agent_exits(&node, &KUBERNETES, None);
    assert_fails_with(
        &out,
        "no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified (set --cgroup-root)",
    );
    assert!(!node.socket().exists(), "the agent served its socket");
}

#[test]
fn a_cgroup_root_that_is_not_cgroup_v2_is_named() {
    let node = Node::without_agent();
    let dir = node.dir.0.join("plain-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.display().to_string();
    let out = agent_exits(&node, &[&KUBERNETES[..], &["--cgroup-root", &root]].concat(), None);
    assert_fails_with(&out, &format!("--cgroup-root {root} is not a cgroup v2 directory"));
}

#[test]
fn without_socket_load_balancing_no_cgroup_v2_is_needed() {
    let node = Node::without_agent();
    // The same node as above, kube-proxy kept: the agent passes the check and goes on to build
    // its Kubernetes client, which has no service account here.
    let args = [&KUBERNETES[..], &["--kube-proxy-replacement", "false"]].concat();
    let out = agent_exits(&node, &args, None);
    assert_fails_with(&out, "building the Kubernetes client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("cgroup"), "{stderr}");
}
