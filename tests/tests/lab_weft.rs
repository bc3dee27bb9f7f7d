//! weft as the cluster's CNI, installed from `deploy/` with `kubectl apply -k` (the DaemonSet
//! runs the agent on every node), native routing, no kube-proxy: pods on three nodes reach
//! each other, the nodes and the outside world as Kubernetes requires, and keep doing so while
//! agents are killed, the API server goes away, and nodes come and go.

use std::time::{Duration, Instant};

use weft_tests::lab::{eventually, Lab};
use weft_tests::weft::*;

const STATE: &str = "/run/weft-lab-e2e-weft";

#[test]
fn weft_daemonset_gives_a_three_node_cluster_pod_networking_that_survives_failures() {
    let mut lab = Lab::new(STATE);
    let t_up = Instant::now();
    lab.up(&["--nodes", "3", "--cni", "weft", "--proxy", "none"], Duration::from_secs(120 * 60));
    let up = t_up.elapsed();
    let t_checks = Instant::now();

    // Installed as users install it: the DaemonSet from deploy/, one ready agent per node.
    let ds = json(&lab.kubectl(&["get", "daemonset", "-n", "weft-system", "weft", "-o", "json"]));
    assert_eq!(ds["status"]["numberReady"], 3, "{:#}", ds["status"]);

    // The agent runs from its image's file system (`cargo xtask image`, loaded onto the nodes):
    // the image's nft reads the node's rule set, and the machine's shell is not there.
    let nft = lab.cmd(&["kubectl", "-n", "weft-system", "exec", "ds/weft", "--", "nft", "list", "table", "ip", "weft"]).output().unwrap();
    assert!(String::from_utf8_lossy(&nft.stdout).contains("table ip weft"), "nft in the image: {nft:?}");
    let sh = lab.cmd(&["kubectl", "-n", "weft-system", "exec", "ds/weft", "--", "sh", "-c", "true"]).output().unwrap();
    assert!(!sh.status.success(), "the image has no shell, yet `sh` ran in the agent's container: {sh:?}");

    // Least privilege: the agent's ServiceAccount reads what it needs and no Secret.
    let sa = "system:serviceaccount:weft-system:weft";
    for (verb, what, want) in [
        ("list", "nodes", "yes"),
        ("watch", "endpointslices.discovery.k8s.io", "yes"),
        ("get", "secrets", "no"),
        ("list", "secrets", "no"),
        ("update", "nodes", "no"),
    ] {
        let out = lab.cmd(&["kubectl", "auth", "can-i", verb, what, "--as", sa, "-A"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "can-i {verb} {what}");
    }

    let nodes = nodes(&lab);
    assert_eq!(nodes.len(), 3);
    let pods = start_pods(&lab, &nodes, "");

    full_mesh(&lab, &pods);
    nodes_and_pods(&lab, &pods);
    traceroute_shows_both_nodes(&lab, &pods[0], &pods[1]);
    egress_is_masqueraded(&lab, &pods);

    // The agent's view: two routes via the uplink, programs current; the kernel keeps the
    // same routes for the node's own traffic, tagged as weft's.
    let st = weft_status(&lab, &pods[0].node);
    let routes = st["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 2, "{st:#}");
    assert!(routes.iter().all(|r| r["via"] == "native"), "{st:#}");
    let kernel = lab.ok(&["node-exec", &pods[0].node, "--", "ip", "route"], Duration::from_secs(30));
    for r in routes {
        let want = format!("{} via {} dev eth0 proto 201", r["pod_cidr"].as_str().unwrap(), r["node_ip"].as_str().unwrap());
        assert!(kernel.contains(&want), "kernel routes on {} lack `{want}`:\n{kernel}", pods[0].node);
    }
    let metrics = lab.ok(
        &["node-exec", &pods[0].node, "--", "curl", "-s", "http://127.0.0.1:9965/metrics"],
        Duration::from_secs(30),
    );
    for want in ["weft_node_routes 2", "weft_nodes 3", "weft_datapath_drops_total{reason=\"eth_truncated\"}",
                 "weft_map_entries{map=\"NODE_ROUTES4\"} 2", "weft_reconcile_runs_total{reconciler=\"routing\"}",
                 "weft_conntrack_gc_removed_total"] {
        assert!(metrics.contains(want), "/metrics lacks `{want}`:\n{metrics}");
    }

    agents_killed_mid_stream_keep_the_stream_and_resync(&lab, &pods);
    apiserver_away_for_a_minute(&lab, &pods);
    nodes_join_and_leave(&lab, &pods);

    let checks = t_checks.elapsed();
    let t_down = Instant::now();
    let left = lab.down();
    let down = t_down.elapsed();
    assert!(left.is_empty(), "lab down left things behind: {left:#?}");
    eprintln!(
        "lab timing (weft native): up {:.1} s, checks {:.1} s, down {:.1} s",
        up.as_secs_f64(),
        checks.as_secs_f64(),
        down.as_secs_f64()
    );
}

/// `kill -9` of the agents on both ends while an iperf3 stream runs between pods on two
/// nodes: the pinned datapath keeps the stream going, the DaemonSet restarts the agents and
/// they come back ready on their own program.
fn agents_killed_mid_stream_keep_the_stream_and_resync(lab: &Lab, pods: &[NodePods]) {
    let (a, b) = (&pods[0], &pods[1]);
    let manifest = format!(
        "{}{}",
        pinned_pod("perf-srv", &b.node, "networkstatic/iperf3", &[], &["-s"]),
        pinned_pod("perf-cli", &a.node, "networkstatic/iperf3", &["sleep"], &["3600"]),
    );
    lab.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    lab.kubectl(&["wait", "--for=condition=Ready", "pod/perf-srv", "pod/perf-cli", "--timeout=120s"]);
    let srv = pod_ip(lab, "perf-srv");
    let restarts_before = agent_restarts(lab);

    let stream = {
        let cmd = lab.cmd(&["exec", "default/perf-cli", "--", "iperf3", "-c", &srv, "-t", "12", "-i", "1", "-J"]);
        std::thread::spawn(move || {
            let mut cmd = cmd;
            cmd.output().expect("iperf3 client")
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let mut killed = vec![];
    for node in [&a.node, &b.node] {
        let pids = agent_pids(node);
        assert_eq!(pids.len(), 1, "one agent process on {node}: {pids:?}");
        // SAFETY: plain kill(2) of the agent we found.
        unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
        killed.push(pids[0]);
    }
    let out = stream.join().expect("iperf3 thread");
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "iperf3 failed across the agent kills: {report:#}");
    let intervals = report["intervals"].as_array().expect("intervals");
    assert!(intervals.len() >= 11, "the stream ran its full time: {} intervals", intervals.len());
    for (i, iv) in intervals.iter().enumerate() {
        let bps = iv["sum"]["bits_per_second"].as_f64().unwrap_or(0.0);
        assert!(bps > 0.0, "interval {i} carried no data (the datapath stalled): {iv:#}");
    }

    // The DaemonSet's pods restart and become ready again; the agents resume their pods.
    eventually("the killed agents to restart and be ready", Duration::from_secs(90), || {
        let ds = json(&lab.kubectl(&["get", "daemonset", "-n", "weft-system", "weft", "-o", "json"]));
        (ds["status"]["numberReady"] == pods.len() && agent_restarts(lab) >= restarts_before + 2).then_some(())
    });
    for node in [&a.node, &b.node] {
        let pids = agent_pids(node);
        assert!(pids.len() == 1 && !killed.contains(&pids[0]), "a new agent runs on {node}: {pids:?}");
        let st = weft_status(lab, node);
        for ep in st["endpoints"].as_array().unwrap() {
            assert_eq!(ep["program"], "current", "{node}: endpoint {} resumed on the new program", ep["ip"]);
        }
        assert_eq!(st["routes"].as_array().unwrap().len(), pods.len() - 1, "{node} resynced its routes");
    }
    full_mesh(lab, &pods[..2]);
    lab.kubectl(&["delete", "pod", "perf-srv", "perf-cli", "--wait=false"]);
}

fn agent_restarts(lab: &Lab) -> u64 {
    let v = json(&lab.kubectl(&["get", "pods", "-n", "weft-system", "-o", "json"]));
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["status"]["containerStatuses"][0]["restartCount"].as_u64())
        .sum()
}

/// A ping packet loss percentage from busybox ping's summary.
fn loss(out: &str) -> u32 {
    out.lines()
        .find_map(|l| l.split(',').find(|p| p.contains("packet loss")))
        .and_then(|p| p.trim().split('%').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary in:\n{out}"))
}

/// The API server stops for 60 s: pods keep talking; after it returns a new pod is reachable
/// from another node within 5 s of getting its address.
fn apiserver_away_for_a_minute(lab: &Lab, pods: &[NodePods]) {
    let (a, b) = (&pods[0], &pods[1]);
    lab.ok(&["apiserver", "stop"], Duration::from_secs(60));
    let (_, out) = lab.exec(
        &format!("default/{}", a.client),
        &["ping", "-c", "60", "-i", "1", "-W", "1", &b.server_ip],
        Duration::from_secs(120),
    );
    assert_eq!(loss(&out), 0, "pod-to-pod traffic while the API server was away:\n{out}");
    lab.ok(&["apiserver", "start"], Duration::from_secs(180));

    let node = &pods[2].node;
    lab.kubectl_stdin(&["apply", "-f", "-"], &pinned_pod("late", node, "nginx", &[], &[]));
    let ip = eventually("the new pod's address", Duration::from_secs(120), || {
        let ip = pod_ip(lab, "late");
        (!ip.is_empty()).then_some(ip)
    });
    let t = Instant::now();
    eventually("the new pod to answer from another node", Duration::from_secs(30), || {
        let (ok, _) = lab.exec(&format!("default/{}", a.client), &["ping", "-c", "1", "-W", "1", &ip], Duration::from_secs(10));
        ok.then_some(())
    });
    let took = t.elapsed();
    eprintln!("new pod reachable {:.2} s after it got its address", took.as_secs_f64());
    assert!(took < Duration::from_secs(5), "new pod reachable after {took:?}");
}

/// A node joins: it gets an agent, the others route to it; it leaves: the routes go within
/// 2 s.
fn nodes_join_and_leave(lab: &Lab, pods: &[NodePods]) {
    let a = &pods[0];
    lab.ok(&["node", "add"], Duration::from_secs(300));
    let all = nodes(lab);
    let (new, new_ip) = all.iter().find(|(n, _)| n == "node-4").cloned().expect("node-4 joined");
    let cidr = lab.kubectl(&["get", "node", &new, "-o", "jsonpath={.spec.podCIDR}"]).trim().to_string();
    let t = Instant::now();
    eventually("node-1 to route to node-4's pods", Duration::from_secs(10), || {
        let r = lab.ok(&["node-exec", &a.node, "--", "ip", "route", "show", &cidr], Duration::from_secs(10));
        r.contains(&format!("via {new_ip}")).then_some(())
    });
    assert!(t.elapsed() < Duration::from_secs(2), "route to the new node after {:?}", t.elapsed());
    let joined = start_pods(lab, &[(new.clone(), new_ip.clone())], "j-");
    let mesh: Vec<NodePods> = vec![a.clone(), joined[0].clone()];
    full_mesh(lab, &mesh);

    lab.ok(&["node", "remove", &new], Duration::from_secs(120));
    let t = Instant::now();
    eventually("node-1 to drop node-4's route", Duration::from_secs(10), || {
        let r = lab.ok(&["node-exec", &a.node, "--", "ip", "route", "show", &cidr], Duration::from_secs(10));
        r.trim().is_empty().then_some(())
    });
    assert!(t.elapsed() < Duration::from_secs(2), "route to the removed node gone after {:?}", t.elapsed());
    let st = weft_status(lab, &a.node);
    assert_eq!(st["routes"].as_array().unwrap().len(), pods.len() - 1, "{st:#}");
}
