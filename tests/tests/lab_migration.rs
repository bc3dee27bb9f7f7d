//! Switching a running cluster between kube-proxy and weft's Services under load (issue 13,
//! item 4), following docs/install.md's runbook (section 7): weft is the CNI beside kube-proxy
//! (iptables) and takes Services over (settings change and rollout, with the handoff on);
//! kube-proxy is stopped and its rules removed (`kube-proxy --cleanup`); once kube-proxy's
//! connections have ended the handoff ends and weft forwards in eBPF. Then the rollback, to
//! kube-proxy in nftables mode (handoff and kernel routing on, kube-proxy started, new
//! connections handed back to it), and the takeover again, from nftables, to the end. All the
//! while a pod and the outside host each open 500 HTTP connections a second to a ClusterIP and a
//! NodePort, read a long stream through each, and a pod looks names up.
//! No request may fail and no stream stall, except handshakes that a backend's TIME_WAIT from
//! the other proxy's connections delays by a SYN retransmission (a budget, see the assertion).
//! Root only; fails (not skips) without root.

use std::time::{Duration, Instant};

use weft_tests::lab::{eventually, Lab};
use weft_tests::operations::report::{now_ms, Event};
use weft_tests::operations::session::{
    self, answers, assert_stream_entry_kept, grown, rollout_status, status_counts, steady, Load,
    HTTP_DRIVERS,
};
use weft_tests::weft::{nodes, weft_json};

const STATE: &str = "/run/weft-lab-e2e-migrate";
const LOAD: &str = env!("CARGO_BIN_EXE_weft-load");

#[test]
fn switching_between_kube_proxy_and_weft_and_back_under_load() {
    let mut lab = Lab::new(STATE);
    lab.up(
        &["--nodes", "3", "--cni", "weft", "--proxy", "iptables"],
        Duration::from_secs(120 * 60),
    );
    let nodes = nodes(&lab);
    let t = session::deploy(&lab, &nodes, LOAD);
    for (node, _) in &nodes {
        assert_forwarding(&lab, node, "kernel", "none");
        assert!(kube_proxy_rules(&lab, node).contains("iptables"), "{node}: kube-proxy's iptables rules");
    }
    answers(&lab, &t.web_ip, Duration::from_secs(60)).expect("kube-proxy serves web's ClusterIP");

    let mut load = Load::start(&lab, &nodes, &t, LOAD);
    let mut events = Timeline::new(&lab, &t.entry);
    events.push(&lab, steady("kube-proxy (iptables) translates", Duration::from_secs(10)));

    // 1. weft takes new connections; kube-proxy's stay with the kernel's conntrack.
    let first_switch_ms = now_ms();
    events.push(&lab, settings(
        &lab,
        "takeover from kube-proxy (iptables)",
        &[("kube-proxy-replacement", "true"), ("kube-proxy-handoff", "true")],
    ));
    for (node, _) in &nodes {
        assert_forwarding(&lab, node, "kernel", "takeover");
    }
    assert!(
        serves_node_port(&lab, &t.entry, t.web_node_port),
        "weft on {} translates web's NodePort after the takeover",
        t.entry
    );
    events.push(&lab, kube_proxy_on_each(&lab, &nodes, KubeProxy::Stop));
    for (node, _) in &nodes {
        assert_eq!(kube_proxy_rules(&lab, node), "", "{node}: kube-proxy's rules are gone");
    }
    events.push(&lab, steady("weft alone, kube-proxy's connections with the kernel", Duration::from_secs(10)));

    // 2. The streams were opened through kube-proxy, and the kernel's conntrack still carries
    // them: they end (new ones open later). Once no connection of kube-proxy's is left
    // (handed_to_kernel stops rising), the handoff ends and weft forwards in eBPF.
    load.stop_streams();
    events.push(&lab, kube_proxys_connections_end(&lab, &nodes));
    events.push(&lab, settings(
        &lab,
        "handoff over: eBPF host routing",
        &[("kube-proxy-handoff", "false"), ("host-routing", "bpf")],
    ));
    for (node, _) in &nodes {
        assert_forwarding(&lab, node, "bpf", "none");
    }
    load.start_streams(&lab);
    // The outside host's new stream is weft's: its conntrack entry must outlive everything
    // that follows, the switch back to kube-proxy included.
    let port = load.outside_stream_port();
    let ct_kept = |after: &str| assert_stream_entry_kept(&lab, &t, port, after);
    events.push(&lab, steady("weft alone", Duration::from_secs(10)));
    ct_kept("weft took over");

    // 3. The rollback, to kube-proxy in nftables mode: the handoff on and kernel host routing
    // first, then kube-proxy, then weft hands new connections to it and keeps its own.
    events.push(&lab, settings(
        &lab,
        "rollback: handoff on, kernel host routing",
        &[("kube-proxy-handoff", "true"), ("host-routing", "kernel")],
    ));
    ct_kept("the switch to kernel host routing");
    events.push(&lab, kube_proxy_on_each(&lab, &nodes, KubeProxy::Start("nftables")));
    events.push(&lab, settings(
        &lab,
        "rollback: kube-proxy (nftables) takes new connections",
        &[("kube-proxy-replacement", "false")],
    ));
    for (node, _) in &nodes {
        assert_forwarding(&lab, node, "kernel", "release");
    }
    ct_kept("the hand-back");
    let handed = handed_to_kernel(&lab, &t.entry);
    events.push(&lab, steady("kube-proxy (nftables) translates, weft keeps its own", Duration::from_secs(10)));
    let handed_then = handed_to_kernel(&lab, &t.entry);
    assert!(
        handed_then >= handed + RATE_FLOOR * 10,
        "{}: new connections went to kube-proxy (handed_to_kernel {handed} -> {handed_then})",
        t.entry
    );
    ct_kept("kube-proxy's spell");

    // 4. The takeover again, from nftables, to the end.
    events.push(&lab, settings(
        &lab,
        "takeover from kube-proxy (nftables)",
        &[("kube-proxy-replacement", "true")],
    ));
    events.push(&lab, kube_proxy_on_each(&lab, &nodes, KubeProxy::Stop));
    for (node, _) in &nodes {
        assert_forwarding(&lab, node, "kernel", "takeover");
        assert_eq!(kube_proxy_rules(&lab, node), "", "{node}: kube-proxy's rules are gone");
    }
    events.push(&lab, kube_proxys_connections_end(&lab, &nodes));
    events.push(&lab, settings(
        &lab,
        "handoff over again",
        &[("kube-proxy-handoff", "false"), ("host-routing", "bpf")],
    ));
    ct_kept("the second takeover");
    events.push(&lab, steady("settled", Duration::from_secs(5)));

    let done = load.finish(&lab, &events.events);
    done.assert_pace();
    // From the first switch on, the backends' TIME_WAIT state sits between the two proxies'
    // connections: a client pod's connection leaves with the backend's address (weft's
    // socket-level balancing) or with the Service's (kube-proxy's DNAT), which gives a reused
    // client port other TCP timestamps and sequence numbers, and kube-proxy's random masquerade
    // ports meet the ones weft's NodePort flows left in TIME_WAIT (and the other way round). A
    // backend then answers some SYNs with a challenge ACK, and the handshake waits for the SYN's
    // retransmission (docs/install.md, section 7). Such handshakes (unanswered for the drivers'
    // second) are counted against a budget; any other failure fails the test.
    let (late_handshakes, failures): (Vec<_>, Vec<_>) = done.unexcused().into_iter().partition(|a| {
        a.failure.start_ms >= first_switch_ms && a.failure.what.ends_with("no answer within 1s")
    });
    assert!(failures.is_empty(), "{} requests failed: {failures:#?}", failures.len());
    let tried: u64 = done
        .runs
        .iter()
        .filter(|r| HTTP_DRIVERS.contains(&r.name.as_str()))
        .map(|r| r.ok_between(first_switch_ms, u64::MAX) + r.failures.iter().filter(|f| f.start_ms >= first_switch_ms).count() as u64)
        .sum();
    eprintln!(
        "after the first switch: {} of {tried} HTTP handshakes waited for a SYN retransmission",
        late_handshakes.len()
    );
    assert!(
        (late_handshakes.len() as u64) * 1000 <= tried * TIME_WAIT_BUDGET_PER_MILLE,
        "{} of {tried} handshakes unanswered for a second (budget {TIME_WAIT_BUDGET_PER_MILLE} per thousand): {late_handshakes:#?}",
        late_handshakes.len()
    );
    done.assert_streams_flowed();
    for run in done.runs.iter().filter(|r| r.name.ends_with("stream")) {
        assert!(
            run.summary["stream"]["bytes"].as_u64().unwrap_or(0) > 0,
            "{}: the stream carried data: {}",
            run.name,
            run.summary
        );
    }

    let left = lab.down();
    assert!(left.is_empty(), "lab down left things behind: {left:#?}");
}

/// The events so far, each noting how the entry node's Service path counters grew in it.
struct Timeline {
    events: Vec<Event>,
    entry: String,
    last: Vec<(String, u64)>,
}

impl Timeline {
    fn new(lab: &Lab, entry: &str) -> Timeline {
        let last = status_counts(lab, entry, "service_counters");
        Timeline { events: vec![], entry: entry.to_string(), last }
    }

    fn push(&mut self, lab: &Lab, mut e: Event) {
        let now = status_counts(lab, &self.entry, "service_counters");
        e.notes.push(format!("{}'s Service path counters grew: {:?}", self.entry, grown(&self.last, &now)));
        self.last = now;
        self.events.push(e);
    }
}

/// Handshakes that may wait for a SYN retransmission once the switching started, per thousand
/// started (0.4 to 0.5 per thousand in the runs so far).
const TIME_WAIT_BUDGET_PER_MILLE: u64 = 2;

/// A floor for the HTTP drivers' new connections per second on the entry node (each runs at
/// 500/s; the ClusterIP driver's all pass its from_pod program).
const RATE_FLOOR: u64 = 250;

/// The settings change the runbook makes: patch `weft-config`, roll the DaemonSet, wait.
fn settings(lab: &Lab, name: &str, data: &[(&str, &str)]) -> Event {
    let mut e = Event::new(name, now_ms());
    let fields: Vec<String> = data.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    let patch = format!("{{\"data\":{{{}}}}}", fields.join(","));
    lab.kubectl(&["-n", "weft-system", "patch", "configmap", "weft-config", "--type", "merge", "-p", &patch]);
    lab.kubectl(&["-n", "weft-system", "rollout", "restart", "ds/weft"]);
    rollout_status(lab);
    e.notes.push(format!("weft-config: {}", fields.join(", ")));
    e.to_ms = now_ms();
    e
}

enum KubeProxy {
    Stop,
    Start(&'static str),
}

/// `weft-lab kube-proxy stop|start` on each node in turn.
fn kube_proxy_on_each(lab: &Lab, nodes: &[(String, String)], op: KubeProxy) -> Event {
    let name = match op {
        KubeProxy::Stop => "kube-proxy stopped, its rules removed (--cleanup)".to_string(),
        KubeProxy::Start(mode) => format!("kube-proxy ({mode}) started"),
    };
    let mut e = Event::new(&name, now_ms());
    for (node, _) in nodes {
        let t = Instant::now();
        match op {
            KubeProxy::Stop => lab.ok(&["kube-proxy", "stop", node], Duration::from_secs(120)),
            KubeProxy::Start(mode) => lab.ok(&["kube-proxy", "start", node, "--mode", mode], Duration::from_secs(320)),
        };
        e.notes.push(format!("{node}: {:.1} s", t.elapsed().as_secs_f64()));
    }
    e.to_ms = now_ms();
    e
}

/// Waits until no node hands packets to the kernel any more (two readings 5 s apart equal):
/// kube-proxy's connections have ended.
fn kube_proxys_connections_end(lab: &Lab, nodes: &[(String, String)]) -> Event {
    let mut e = Event::new("kube-proxy's connections ended", now_ms());
    let start = Instant::now();
    let counts = || -> Vec<u64> { nodes.iter().map(|(n, _)| handed_to_kernel(lab, n)).collect() };
    let mut before = counts();
    eventually("handed_to_kernel to stop rising on every node", Duration::from_secs(120), || {
        std::thread::sleep(Duration::from_secs(5));
        let now = counts();
        let steady = now == before;
        before = now;
        steady.then_some(())
    });
    e.notes.push(format!(
        "handed_to_kernel steady after {:.0} s: {before:?}",
        start.elapsed().as_secs_f64()
    ));
    e.to_ms = now_ms();
    e
}

fn handed_to_kernel(lab: &Lab, node: &str) -> u64 {
    status_counts(lab, node, "service_counters")
        .into_iter()
        .find(|(n, _)| n == "handed_to_kernel")
        .map_or(0, |(_, c)| c)
}

/// `weft status`'s forwarding settings on `node`.
fn assert_forwarding(lab: &Lab, node: &str, host_routing: &str, handoff: &str) {
    let st = weft_json(lab, node, &["status"]);
    assert_eq!(
        (st["forwarding"]["host_routing"].as_str(), st["forwarding"]["handoff"].as_str()),
        (Some(host_routing), Some(handoff)),
        "{node}: {}",
        st["forwarding"]
    );
}

/// Whether weft on `node` has NodePort `port` in its maps.
fn serves_node_port(lab: &Lab, node: &str, port: u16) -> bool {
    let rows = weft_json(lab, node, &["service", "list"]);
    rows.as_array()
        .into_iter()
        .flatten()
        .any(|r| r["kind"] == "NodePort" && r["port"] == port)
}

/// What is left of kube-proxy's Service rules on `node`: "iptables" if its KUBE-SERVICES chain
/// exists, "nftables" if its table does, "" if neither.
fn kube_proxy_rules(lab: &Lab, node: &str) -> String {
    let ipt = lab.ok(&["node-exec", node, "--", "iptables-save"], Duration::from_secs(30));
    let nft = lab.ok(&["node-exec", node, "--", "nft", "list", "tables"], Duration::from_secs(30));
    let mut found = vec![];
    if ipt.lines().any(|l| l.starts_with(":KUBE-SERVICES ")) {
        found.push("iptables");
    }
    if nft.lines().any(|l| l.trim() == "table ip kube-proxy") {
        found.push("nftables");
    }
    found.join(",")
}
