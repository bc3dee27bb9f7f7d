//! `weft bpf-stats` against a running agent with live pod traffic: the agent switches the
//! kernel's run-time statistics on for the window and off again, and the CLI reports what its
//! programs ran. Root only; fails (not skips) without root, bpffs or `ip`.

mod support;

use std::process::{Command, Stdio};

use support::node::{Node, WEFT};

fn stats_switch() -> String {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").expect("bpf_stats_enabled").trim().to_string()
}

#[test]
fn bpf_stats_counts_the_programs_that_carried_a_window_of_traffic() {
    let node = Node::start();
    let (a, b) = (node.pod(0), node.pod(1));
    node.add("ctr-a", &a).ip();
    let ip_b = node.add("ctr-b", &b).ip();
    let before = stats_switch();

    let cli = Command::new(WEFT)
        .args(["bpf-stats", "--seconds", "3", "-o", "json", "--socket"])
        .arg(node.socket())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run weft bpf-stats");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (ok, out) = a.try_exec(&["ping", "-c", "20", "-i", "0.05", "-W", "1", &ip_b]);
    assert!(ok, "ping a -> b failed:\n{out}");
    let out = cli.wait_with_output().unwrap();
    assert!(out.status.success(), "weft bpf-stats: {}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");

    let row = |name: &str| rows.as_array().unwrap().iter().find(|r| r["program"] == name).cloned().unwrap_or_else(|| panic!("no {name} in {rows:#}"));
    let from_pod = row("from_pod");
    // 20 echo requests leave pod a and 20 replies leave pod b, each through its host veth.
    assert!(from_pod["runs"].as_u64().unwrap() >= 40, "{rows:#}");
    assert!(from_pod["ns_per_run"].as_f64().unwrap() > 0.0, "{rows:#}");
    assert_eq!(row("from_overlay")["runs"], 0, "no overlay here: {rows:#}");
    assert_eq!(stats_switch(), before, "the window must leave the kernel's statistics as they were");

    let table = Command::new(WEFT).args(["bpf-stats", "--seconds", "0.2", "--socket"]).arg(node.socket()).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("ns/RUN") && table.lines().any(|l| l.starts_with("from_pod")), "{table}");
}
