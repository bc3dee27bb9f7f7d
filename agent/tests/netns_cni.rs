//! The CNI plugin and the agent in real network namespaces (root): a "node" netns runs
//! `weft agent`, pod netns are attached by running the plugin exactly as a runtime does.

mod support;

use serde_json::json;
use support::guards::Proc;
use support::netns::Netns;
use support::node::Node;

/// A TCP server in `pod` that answers each connection with the peer address it saw.
fn peer_echo_server(pod: &Netns, port: u16) -> Proc {
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.name, "socat"])
        .arg(format!("TCP4-LISTEN:{port},reuseaddr,fork"))
        .arg("SYSTEM:echo $SOCAT_PEERADDR")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    // Wait until it listens.
    for _ in 0..100 {
        let (_, out) = pod.try_exec(&["ss", "-Hltn", &format!("sport = :{port}")]);
        if out.contains(&format!(":{port}")) {
            return proc;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("socat did not listen in {}", pod.name);
}

#[test]
fn pods_reach_each_other_through_ebpf_with_forwarding_off() {
    let node = Node::start();
    assert_eq!(
        node.ns
            .exec(&["sysctl", "-n", "net.ipv4.ip_forward"])
            .trim(),
        "0"
    );
    let pods: Vec<_> = (0..3).map(|i| node.pod(i)).collect();
    let ips: Vec<String> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| node.add(&format!("ctr{i}"), p).ip())
        .collect();
    assert_eq!(node.status()["endpoints"].as_array().unwrap().len(), 3);

    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        let (ok, out) = pods[from].try_exec(&["ping", "-c", "2", "-W", "2", "-i", "0.2", &ips[to]]);
        assert!(ok, "ping pod{from} -> pod{to} ({}) failed:\n{out}", ips[to]);
    }
    let _server = peer_echo_server(&pods[1], 8080);
    for client in [0, 2] {
        let (ok, out) =
            pods[client].try_exec(&["socat", "-T", "5", "-", &format!("TCP4:{}:8080", ips[1])]);
        assert!(ok, "TCP pod{client} -> pod1 failed: {out}");
        assert_eq!(
            out.trim(),
            ips[client],
            "server saw another source than the client's pod IP"
        );
    }
    for (i, pod) in pods.iter().enumerate() {
        node.del(&format!("ctr{i}"), pod);
    }
    node.assert_empty();
}

#[test]
fn add_result_is_configured_in_the_pod_and_follows_the_config_version() {
    let node = Node::start();
    let pod = node.pod(0);
    let run = node.plugin("ADD", "ctr-v031", Some(&pod), &node.config("0.3.1"));
    let r = run.ok_json();
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(r["ips"][0]["version"], "4");
    assert_eq!(r["ips"][0]["gateway"], "169.254.1.1");
    let ip = run.ip();
    assert!(ip.starts_with("10.200.1."), "{ip}");
    let pod_if = &r["interfaces"][r["ips"][0]["interface"].as_u64().unwrap() as usize];
    assert_eq!(pod_if["name"], "eth0");
    assert_eq!(pod_if["sandbox"], pod.path());
    // What the result says is what the pod has.
    assert!(
        pod.addresses().contains(&format!("{ip}/32")),
        "{:?}",
        pod.addresses()
    );
    let routes = pod.exec(&["ip", "-4", "route", "show"]);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0 onlink"),
        "{routes}"
    );
    let neigh = pod.exec(&["ip", "neigh", "show", "169.254.1.1"]);
    let host_if = &r["interfaces"][0];
    assert!(
        neigh.contains(host_if["mac"].as_str().unwrap()) && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    assert!(node.ns.route_dsts().contains(&ip));
    assert_eq!(
        node.host_veths(),
        vec![host_if["name"].as_str().unwrap().to_owned()]
    );

    // ADD again for the same attachment: same address (idempotent), in a 1.1.0 result.
    let again = node.plugin("ADD", "ctr-v031", Some(&pod), &node.config("1.1.0"));
    assert_eq!(again.ip(), ip);
    let r11 = again.ok_json();
    assert!(r11["ips"][0].get("version").is_none(), "{r11}");
    assert_eq!(r11["interfaces"][1]["mtu"], 1500);
    assert_eq!(node.status()["allocated"], 1);
    node.del("ctr-v031", &pod);
    node.assert_empty();
}

#[test]
fn del_removes_veth_address_route_and_endpoint() {
    let node = Node::start();
    let pod = node.pod(0);
    let ip = node.add("ctr-del", &pod).ip();
    let st = node.status();
    assert_eq!(st["endpoints"][0]["ip"], ip.as_str());
    assert_eq!(st["attachments"][0]["key"]["container_id"], "ctr-del");

    let run = node.del("ctr-del", &pod);
    assert_eq!((run.code, run.stdout.trim()), (0, ""), "{run:?}");
    assert!(
        !pod.links().contains(&"eth0".to_owned()),
        "eth0 still in the pod"
    );
    assert!(!pod.addresses().iter().any(|a| a.starts_with(&ip)));
    node.assert_empty();
    // DEL is idempotent and succeeds for IDs nobody knows.
    assert_eq!(node.del("ctr-del", &pod).code, 0);
    assert_eq!(node.del("never-added", &pod).code, 0);
}

#[test]
fn check_passes_on_a_healthy_pod_and_reports_a_deleted_address() {
    let node = Node::start();
    let pod = node.pod(0);
    let add = node.add("ctr-check", &pod);
    let ip = add.ip();
    let mut conf = node.config("1.0.0");
    conf["prevResult"] = add.ok_json();
    let ok = node.plugin("CHECK", "ctr-check", Some(&pod), &conf);
    assert_eq!(ok.code, 0, "CHECK of a healthy pod failed: {ok:?}");

    pod.exec(&["ip", "addr", "del", &format!("{ip}/32"), "dev", "eth0"]);
    let bad = node.plugin("CHECK", "ctr-check", Some(&pod), &conf);
    assert_ne!(bad.code, 0);
    let err = bad.json();
    assert!(err["msg"].as_str().unwrap().contains(&ip), "{err}");
    assert_eq!(err["cniVersion"], "1.0.0");
    node.del("ctr-check", &pod);
    node.assert_empty();
}

#[test]
fn parallel_add_del_cycles_leak_nothing() {
    const THREADS: usize = 10;
    const CYCLES: usize = 20; // 200 ADD/DEL cycles in all
    let node = Node::start();
    let pods: Vec<_> = (0..THREADS).map(|i| node.pod(i)).collect();
    std::thread::scope(|s| {
        for (t, pod) in pods.iter().enumerate() {
            let node = &node;
            s.spawn(move || {
                for c in 0..CYCLES {
                    let id = format!("par{t}x{c}");
                    let add = node.add(&id, pod);
                    assert_eq!(add.code, 0, "ADD {id}: {add:?}");
                    let del = node.del(&id, pod);
                    assert_eq!(del.code, 0, "DEL {id}: {del:?}");
                }
            });
        }
    });
    node.assert_empty();
    for pod in &pods {
        assert_eq!(
            pod.links(),
            vec!["lo".to_owned()],
            "interface left in {}",
            pod.name
        );
    }
}

#[test]
fn add_killed_midway_then_gc_leaves_nothing() {
    let node = Node::start();
    let keep = node.pod(9);
    let kept_ip = node.add("ctr-keep", &keep).ip();
    for (i, step) in ["alloc", "veth", "register"].into_iter().enumerate() {
        let pod = node.pod(i);
        let id = format!("ctr-killed-{step}");
        node.add_killed_after(step, &id, &pod);
        // Something was left half-made: the address at least.
        let st = node.status();
        assert_eq!(st["allocated"], 2, "after kill at {step}: {st}");
        if step != "alloc" {
            assert_eq!(node.host_veths().len(), 2, "after kill at {step}");
        }
        let mut conf = node.config("1.1.0");
        conf["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-keep", "ifname": "eth0"}]);
        let gc = node.plugin("GC", "", None, &conf);
        assert_eq!(gc.code, 0, "GC: {gc:?}");
        let st = node.status();
        assert_eq!(st["allocated"], 1, "after GC at {step}: {st}");
        assert_eq!(
            st["attachments"][0]["ip"],
            kept_ip.as_str(),
            "GC released a valid attachment"
        );
        let eps: Vec<_> = st["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ip"].clone())
            .collect();
        assert_eq!(eps, vec![json!(kept_ip)], "after GC at {step}");
        assert_eq!(
            node.host_veths().len(),
            1,
            "after GC at {step}: {:?}",
            node.host_veths()
        );
        assert_eq!(pod.links(), vec!["lo".to_owned()], "after GC at {step}");
    }
    node.del("ctr-keep", &keep);
    node.assert_empty();
}

#[test]
fn add_with_agent_down_is_try_again_later_and_creates_nothing() {
    let node = Node::without_agent();
    let pod = node.pod(0);
    let run = node.add("ctr-noagent", &pod);
    assert_ne!(run.code, 0);
    let err = run.json();
    assert_eq!(err["code"], 11, "{err}");
    assert_eq!(node.ns.links(), vec!["lo".to_owned()]);
    assert_eq!(pod.links(), vec!["lo".to_owned()]);
    // STATUS says the plugin is not available.
    let status = node.plugin("STATUS", "", None, &node.config("1.1.0"));
    assert_eq!(status.json()["code"], 50, "{status:?}");
}

#[test]
fn allocations_survive_an_agent_restart() {
    let mut node = Node::start();
    let pod = node.pod(0);
    let ip = node.add("ctr-restart", &pod).ip();
    node.stop_agent();
    assert_eq!(node.add("ctr-other", &node.pod(1)).json()["code"], 11);
    node.start_agent();
    let st = node.status();
    assert_eq!(st["attachments"][0]["ip"], ip.as_str(), "{st}");
    assert_eq!(
        st["endpoints"][0]["ip"],
        ip.as_str(),
        "pinned ENDPOINTS entry lost: {st}"
    );
    assert_eq!(node.add("ctr-restart", &pod).ip(), ip);
    let status = node.plugin("STATUS", "", None, &node.config("1.1.0"));
    assert_eq!((status.code, status.stdout.trim()), (0, ""), "{status:?}");
    node.del("ctr-restart", &pod);
    node.assert_empty();
}

#[test]
fn a_restarted_agent_switches_running_pods_to_its_program() {
    let mut node = Node::start();
    let (a, b) = (node.pod(0), node.pod(1));
    node.add("ctr-a", &a).ip();
    let ip_b = node.add("ctr-b", &b).ip();
    let programs = |node: &Node| -> Vec<String> {
        let st = node.status();
        st["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["program"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(programs(&node), ["current", "current"]);
    let ping_b = |pod: &Netns| pod.try_exec(&["ping", "-c", "1", "-W", "1", &ip_b]);
    node.stop_agent();
    let (ok, out) = ping_b(&a);
    assert!(
        ok,
        "the pinned links must carry traffic with no agent running: {out}"
    );
    // The new agent loads its own from_pod and must move both veths onto it.
    node.start_agent();
    assert_eq!(programs(&node), ["current", "current"], "{}", node.status());
    let (ok, out) = ping_b(&a);
    assert!(ok, "after the switch: {out}");
    node.del("ctr-a", &a);
    node.del("ctr-b", &b);
    node.assert_empty();
}

#[test]
fn plugin_errors_are_spec_json_on_stdout_only() {
    let node = Node::without_agent();
    let pod = node.pod(0);
    // A config that is not a JSON object: decoding failure, answered in the latest version.
    let bad_json = node.plugin("ADD", "ctr-x", Some(&pod), &json!("{not an object"));
    let err = bad_json.json();
    assert_eq!(
        (bad_json.code, err["code"].as_u64()),
        (1, Some(6)),
        "{bad_json:?}"
    );
    for field in ["cniVersion", "code", "msg", "details"] {
        assert!(err.get(field).is_some(), "{field} missing in {err}");
    }
    // Missing CNI_NETNS for ADD: invalid environment, in the config's version.
    let no_netns = node.plugin("ADD", "ctr-x", None, &node.config("0.4.0"));
    assert_eq!(
        (
            no_netns.json()["code"].as_u64(),
            no_netns.json()["cniVersion"].as_str()
        ),
        (Some(7), Some("0.4.0"))
    );
    // Unknown version.
    let mut conf = node.config("1.0.0");
    conf["cniVersion"] = json!("0.2.0");
    assert_eq!(
        node.plugin("ADD", "ctr-x", Some(&pod), &conf).json()["code"],
        1
    );
    // VERSION needs no agent.
    let v = node.plugin("VERSION", "", None, &json!({"cniVersion": "1.1.0"}));
    assert_eq!(
        v.json()["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    assert_eq!(pod.links(), vec!["lo".to_owned()]);
}

#[test]
fn pod_cidr_comes_from_the_cni_config_when_the_agent_has_none() {
    let mut node = Node::without_agent();
    node.agent_pod_cidr = None;
    node.start_agent();
    let pod = node.pod(0);
    // Neither the agent nor the config knows a CIDR: try again later, nothing made.
    let early = node.add("ctr-cidr", &pod);
    assert_eq!(early.json()["code"], 11, "{early:?}");
    assert!(node.host_veths().is_empty());
    assert_eq!(
        node.plugin("STATUS", "", None, &node.config("1.1.0"))
            .json()["code"],
        50
    );

    let mut conf = node.config("1.0.0");
    conf["podCIDR"] = json!("10.200.77.0/28");
    let run = node.plugin("ADD", "ctr-cidr", Some(&pod), &conf);
    assert_eq!(run.ip(), "10.200.77.2");
    assert_eq!(node.status()["pod_cidr"], "10.200.77.0/28");
    // Another CIDR while addresses are held in this one: invalid config.
    conf["podCIDR"] = json!("10.200.78.0/28");
    let clash = node.plugin("ADD", "ctr-other", Some(&node.pod(1)), &conf);
    assert_eq!(clash.json()["code"], 4, "{clash:?}");
    node.del("ctr-cidr", &pod);
    node.assert_empty();
}

#[test]
fn node_reaches_its_pods_and_pods_see_the_node_address() {
    let node = Node::start();
    // The node's own address (an uplink's in a real cluster; no dummy driver here).
    node.ns
        .exec(&["ip", "addr", "add", "192.0.2.10/32", "dev", "lo"]);
    let pod = node.pod(0);
    let ip = node.add("ctr-probe", &pod).ip();
    let (ok, out) = node
        .ns
        .try_exec(&["ping", "-c", "2", "-W", "2", "-i", "0.2", &ip]);
    assert!(ok, "node -> pod ping failed:\n{out}");
    // A kubelet-style probe: TCP from the node, the pod sees the node's address, no NAT.
    let _server = peer_echo_server(&pod, 8081);
    let (ok, out) = node
        .ns
        .try_exec(&["socat", "-T", "5", "-", &format!("TCP4:{ip}:8081")]);
    assert!(ok, "node -> pod TCP failed: {out}");
    assert_eq!(out.trim(), "192.0.2.10");
    node.del("ctr-probe", &pod);
    node.assert_empty();
}

#[test]
fn add_check_del_and_gc_need_no_iproute2() {
    let mut node = Node::without_agent();
    node.hide_iproute2 = true;
    let out = node.in_node("/usr/bin/ip").arg("link").output().unwrap();
    assert!(!out.status.success(), "iproute2 is not hidden: {out:?}");
    node.start_agent();
    let (a, b, c) = (node.pod(0), node.pod(1), node.pod(2));
    let add = node.add("ctr-a", &a);
    let ip_b = node.add("ctr-b", &b).ip();
    let (ok, out) = a.try_exec(&["ping", "-c", "1", "-W", "2", &ip_b]);
    assert!(ok, "ping between pods set up without iproute2: {out}");
    let mut conf = node.config("1.0.0");
    conf["prevResult"] = add.ok_json();
    let check = node.plugin("CHECK", "ctr-a", Some(&a), &conf);
    assert_eq!(check.code, 0, "CHECK: {check:?}");
    // DEL through the agent; GC sweeps a half-made attachment and releases an invalid one.
    assert_eq!(node.del("ctr-b", &b).code, 0);
    node.add_killed_after("veth", "ctr-c", &c);
    let mut conf = node.config("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([]);
    let gc = node.plugin("GC", "", None, &conf);
    assert_eq!(gc.code, 0, "GC: {gc:?}");
    for pod in [&a, &b, &c] {
        assert_eq!(pod.links(), vec!["lo".to_owned()], "left in {}", pod.name);
    }
    node.assert_empty();
}

#[test]
fn ebpf_log_lines_reach_the_agent_log_only_while_switched_on() {
    let node = Node::start();
    let (a, b) = (node.pod(0), node.pod(1));
    node.add("ctr-a", &a).ip();
    let ip_b = node.add("ctr-b", &b).ip();
    let line = format!("to local pod {ip_b}");
    let ping = || {
        let (ok, out) = a.try_exec(&["ping", "-c", "2", "-W", "1", "-i", "0.2", &ip_b]);
        assert!(ok, "{out}");
    };
    let lines = |node: &Node| node.agent_log().matches(&line).count();
    let switch = |state: &str| {
        let out = std::process::Command::new(support::node::WEFT)
            .args(["bpf-log", state, "--socket"])
            .arg(node.socket())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };

    ping();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(lines(&node), 0, "off by default:\n{}", node.agent_log());

    switch("on");
    ping();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lines(&node) < 2 {
        assert!(std::time::Instant::now() < deadline, "no eBPF lines after `weft bpf-log on`:\n{}", node.agent_log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    switch("off");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let seen = lines(&node);
    ping();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(lines(&node), seen, "no new lines once switched off");
    node.del("ctr-a", &a);
    node.del("ctr-b", &b);
    node.assert_empty();
}

#[test]
fn del_with_the_agent_down_succeeds_and_removes_the_pod_interfaces() {
    let mut node = Node::start();
    let pod = node.pod(0);
    node.add("ctr-gone", &pod).ip();
    node.stop_agent();
    let run = node.del("ctr-gone", &pod);
    assert_eq!(run.code, 0, "DEL must succeed without the agent: {run:?}");
    assert!(node.host_veths().is_empty(), "host veth left: {:?}", node.host_veths());
    assert_eq!(pod.links(), vec!["lo".to_owned()], "the pod end goes with its peer");
    // The address is the agent's to free when it returns: GC (or, in a cluster, the pod
    // reconcile) releases it, endpoint entry included.
    node.start_agent();
    assert_eq!(node.status()["allocated"], 1);
    let mut conf = node.config("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(node.plugin("GC", "", None, &conf).code, 0);
    node.assert_empty();
}
