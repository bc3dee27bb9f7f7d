//! `from_pod` on real veths: two pods and a node in network namespaces, wired like the CNI
//! plugin wires them, the program attached through the real `Datapath` API. Root only; fails
//! (not skips) without root, bpffs, `ip` or `ping`.

mod support;

use aya::programs::{SchedClassifier, TcAttachType};
use support::bpf::*;
use support::frames::*;
use support::netns::Netns;
use support::veth::{node_netns, register_and_attach, Pod};
use weft::datapath::{Datapath, FromPodLink, Prog};
use weft::netlink::SyncNetlink;

/// A node with IP forwarding OFF and two pods, both registered and attached.
struct Scene {
    pins: PinDir,
    node: Netns,
    a: Pod,
    b: Pod,
    dp: Datapath,
}

impl Scene {
    fn new(test: &str) -> Self {
        let pins = PinDir::new(test);
        let node = node_netns();
        // The kernel would not forward between the pods: only the datapath can deliver.
        node.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]);
        let a = Pod::new(&node, "a", "wdpa", "10.200.0.5");
        let b = Pod::new(&node, "b", "wdpb", "10.200.0.7");
        let mut dp = Datapath::open(pins.path()).expect("open datapath");
        register_and_attach(&mut dp, &node, &[&a, &b]);
        Self {
            pins,
            node,
            a,
            b,
            dp,
        }
    }
}

fn register(dp: &mut Datapath, pod: &Pod) {
    dp.upsert_endpoint(pod.ip.parse().unwrap(), &pod.endpoint()).expect("upsert endpoint");
}

/// The `bpf` filters at `hook` (`ingress`/`egress`) of `ifname` as `tc` lists them: (program
/// name, program id) each.
fn tc_filters(node: &Netns, ifname: &str, hook: &str) -> Vec<(String, u64)> {
    let out = node.exec(&["tc", "-j", "filter", "show", "dev", ifname, hook]);
    let filters: serde_json::Value = serde_json::from_str(&out).expect("tc -j filter show");
    filters
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|f| {
            let o = f.get("options")?;
            let name = o["bpf_name"].as_str().unwrap_or("?").to_owned();
            Some((name, o["prog"]["id"].as_u64().unwrap_or(0)))
        })
        .collect()
}

/// Kernel ids of the programs at TCX ingress of `ifname` (call inside the node namespace).
fn tcx_ingress_program_ids(ifname: &str) -> Vec<u32> {
    let (_, progs) = SchedClassifier::query_tcx(ifname, TcAttachType::Ingress).expect("query tcx");
    progs.iter().map(|p| p.id()).collect()
}

/// What runs as `from_pod` on `ifname`, as the agent's status reports it.
fn from_pod_link(node: &Netns, dp: &Datapath, ifname: &str) -> FromPodLink {
    node.run(|| {
        let nl = SyncNetlink::connect(None).expect("netlink in the node");
        dp.from_pod_link(&nl, ifname).expect("from_pod_link")
    })
}

/// Attach the pod programs to `ifname` as the agent does.
fn attach(node: &Netns, dp: &mut Datapath, ifname: &str) -> Result<(), weft::datapath::DatapathError> {
    node.run(|| {
        let nl = SyncNetlink::connect(None).expect("netlink in the node");
        dp.attach_from_pod(&nl, ifname)
    })
}

#[test]
fn pods_on_one_node_reach_each_other_with_ip_forwarding_off() {
    let s = Scene::new("veth-ping");
    assert_eq!(
        s.node.exec(&["sysctl", "-n", "net.ipv4.ip_forward"]).trim(),
        "0"
    );

    assert!(s.a.ping(&s.b.ip, 3), "pod a -> pod b through from_pod");
    assert!(s.b.ping(&s.a.ip, 3), "pod b -> pod a through from_pod");

    assert_no_drops(&s.dp);
}

#[test]
fn a_pod_whose_filters_are_removed_is_not_reachable_when_the_node_does_not_forward() {
    let s = Scene::new("veth-detach");
    assert!(s.a.ping(&s.b.ip, 1), "attached: reachable");
    assert_eq!(from_pod_link(&s.node, &s.dp, "wdpa"), FromPodLink::Current);

    s.node.exec(&["tc", "filter", "del", "dev", "wdpa", "ingress"]);
    assert!(tc_filters(&s.node, "wdpa", "ingress").is_empty(), "nothing left on wdpa");
    assert_eq!(from_pod_link(&s.node, &s.dp, "wdpa"), FromPodLink::Missing);

    // Without from_pod on a's host side, a's packets meet the node's stack, which does not
    // forward: the proof that the working ping above was the datapath's redirect.
    assert!(
        !s.a.ping(&s.b.ip, 2),
        "detached: must not be reachable with ip_forward=0"
    );
}

#[test]
fn attach_is_idempotent_and_traffic_survives_an_agent_restart() {
    let Scene {
        pins,
        node,
        a,
        b,
        dp,
    } = Scene::new("veth-restart");
    let mut dp = dp;
    attach(&node, &mut dp, &a.host_if).expect("second attach is a no-op");
    let ingress = tc_filters(&node, "wdpa", "ingress");
    let names = |f: &[(String, u64)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ingress), ["from_pod"], "exactly one program at ingress");
    assert_eq!(names(&tc_filters(&node, "wdpa", "egress")), ["to_pod"], "and one at egress");
    assert!(
        node.run(|| tcx_ingress_program_ids("wdpa")).is_empty(),
        "no TCX link beside the filters"
    );
    assert_eq!(from_pod_link(&node, &dp, "wdpa"), FromPodLink::Current);

    // The agent goes away: the filters belong to the veths, maps stay pinned, traffic flows.
    drop(dp);
    assert!(a.ping(&b.ip, 2), "no agent: the filters keep delivering");

    // A new agent re-opens the pinned maps and switches the filters to its own programs.
    let mut dp = Datapath::open(pins.path()).expect("reopen");
    assert_eq!(
        dp.endpoints().unwrap().len(),
        2,
        "endpoints survived in the pinned map"
    );
    assert_eq!(from_pod_link(&node, &dp, "wdpa"), FromPodLink::Previous);
    attach(&node, &mut dp, &a.host_if).expect("take over a");
    attach(&node, &mut dp, &b.host_if).expect("take over b");
    let after = tc_filters(&node, "wdpa", "ingress");
    assert_eq!(names(&after), ["from_pod"], "still one program");
    assert_ne!(ingress[0].1, after[0].1, "the new agent's program runs now");
    assert_eq!(from_pod_link(&node, &dp, "wdpa"), FromPodLink::Current);
    assert!(a.ping(&b.ip, 2), "after restart");
}

#[test]
fn a_pod_attached_by_an_agent_with_tcx_links_moves_to_filters_without_a_gap() {
    let s = Scene::new("veth-tcx");
    let Scene { pins, node, a, b, dp } = s;
    // What an agent before the filters left: TCX links, pinned, and no filters.
    node.exec(&["tc", "qdisc", "del", "dev", "wdpa", "clsact"]);
    let mut dp = dp;
    node.run(|| {
        dp.attach(Prog::FromPod, "wdpa").expect("tcx from_pod");
        dp.attach(Prog::ToPod, "wdpa").expect("tcx to_pod");
    });
    assert!(pins.path().join("links/from_pod_wdpa").exists());
    drop(dp);
    assert!(a.ping(&b.ip, 2), "the TCX links deliver");

    let mut dp = Datapath::open(pins.path()).expect("reopen");
    assert_eq!(from_pod_link(&node, &dp, "wdpa"), FromPodLink::Previous);
    // A ping running through the switch loses nothing.
    let lost = std::thread::scope(|scope| {
        let p = scope.spawn(|| a.pings_lost(&b.ip, 50, "0.01"));
        std::thread::sleep(std::time::Duration::from_millis(150));
        attach(&node, &mut dp, "wdpa").expect("switch to filters");
        p.join().unwrap()
    });
    assert_eq!(lost, 0, "pings lost while the TCX links gave way to the filters");
    assert!(node.run(|| tcx_ingress_program_ids("wdpa")).is_empty(), "TCX links released");
    for link in ["from_pod_wdpa", "to_pod_wdpa"] {
        assert!(!pins.path().join("links").join(link).exists(), "{link} unpinned");
    }
    assert_eq!(from_pod_link(&node, &dp, "wdpa"), FromPodLink::Current);
    assert!(a.ping(&b.ip, 2), "the filters deliver");
}

#[test]
fn attach_to_a_missing_interface_is_a_typed_error() {
    let s = Scene::new("veth-missing");
    let mut dp = s.dp;
    let err = s
        .node
        .run(|| dp.attach_from_pod(&SyncNetlink::connect(None).unwrap(), "wdp-none"))
        .expect_err("no such interface");
    assert!(
        matches!(err, weft::datapath::DatapathError::NoSuchInterface { .. }),
        "{err}"
    );
    let err = s
        .node
        .run(|| dp.attach_from_pod(&SyncNetlink::connect(None).unwrap(), "bad/name"))
        .expect_err("invalid name");
    assert!(
        matches!(err, weft::datapath::DatapathError::BadInterfaceName { .. }),
        "{err}"
    );
}

#[test]
fn truncated_ipv4_from_a_pod_is_dropped_and_counted() {
    let s = Scene::new("veth-trunc");
    // 14-byte Ethernet header claiming IPv4 plus 12 bytes: less than an IPv4 header. Raw
    // sockets can send this (BPF_PROG_TEST_RUN cannot), so this path is tested here.
    let mut frame = Vec::new();
    frame.extend_from_slice(&s.a.host_mac);
    frame.extend_from_slice(&s.a.pod_mac);
    frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
    frame.extend_from_slice(&[0x45, 0, 0, 26, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    s.a.send_raw(&frame);
    // And one with only the Ethernet header.
    s.a.send_raw(&frame[..14]);

    let drops = s.dp.drop_counters().unwrap();
    assert_eq!(counter(&s.dp, "ip4_truncated"), 2, "{drops:?}");
    assert!(s.a.ping(&s.b.ip, 1), "valid traffic still flows");
}

#[test]
fn tcp_bulk_transfer_between_pods_arrives_intact() {
    use std::io::{Read, Write};
    let s = Scene::new("veth-tcp");
    const LEN: usize = 8 << 20;
    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let listener =
        s.b.ns
            .run(|| std::net::TcpListener::bind("10.200.0.7:5555").expect("listen in pod b"));
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let (mut conn, peer) = listener.accept().expect("accept");
            let mut got = Vec::with_capacity(LEN);
            conn.read_to_end(&mut got).expect("read");
            (peer.ip().to_string(), got)
        });
        s.a.ns.run(|| {
            let mut conn =
                std::net::TcpStream::connect("10.200.0.7:5555").expect("connect from pod a");
            conn.write_all(&data).expect("write");
        });
        let (peer, got) = reader.join().unwrap();
        assert_eq!(
            peer, "10.200.0.5",
            "the receiver sees the sender's pod IP (no NAT)"
        );
        assert!(
            got == data,
            "{} of {LEN} bytes arrived, or they differ",
            got.len()
        );
    });
    assert_no_drops(&s.dp);
}

#[test]
fn a_recreated_interface_gets_fresh_filters() {
    let mut s = Scene::new("veth-recreate");
    // The pod's veth disappears (pod deleted without DEL) and a new pod gets the same host name.
    s.node.exec(&["ip", "link", "del", "wdpa"]);
    let a2 = Pod::new(&s.node, "a2", "wdpa", "10.200.0.5");
    register(&mut s.dp, &a2);
    assert_eq!(from_pod_link(&s.node, &s.dp, "wdpa"), FromPodLink::Missing, "filters went with the old veth");

    attach(&s.node, &mut s.dp, "wdpa").expect("attach to the new veth");

    assert_eq!(from_pod_link(&s.node, &s.dp, "wdpa"), FromPodLink::Current);
    assert!(
        a2.ping(&s.b.ip, 2),
        "new pod reaches b through fresh filters"
    );
}
