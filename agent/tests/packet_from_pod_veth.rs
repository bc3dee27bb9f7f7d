//! `from_pod` on real veths: two pods and a node in network namespaces, wired like the CNI
//! plugin wires them, the program attached through the real `Datapath` API. Root only; fails
//! (not skips) without root, bpffs, `ip` or `ping`.

mod support;

use aya::programs::{SchedClassifier, TcAttachType};
use support::bpf::*;
use support::frames::*;
use support::netns::Netns;
use support::veth::{node_netns, register_and_attach, Pod};
use weft::datapath::Datapath;

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

/// Names of the programs at TCX ingress of `ifname` (call inside the node namespace).
fn tcx_ingress_programs(ifname: &str) -> Vec<String> {
    let (_, progs) = SchedClassifier::query_tcx(ifname, TcAttachType::Ingress).expect("query tcx");
    progs
        .iter()
        .map(|p| p.name_as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Kernel ids of the programs at TCX ingress of `ifname` (call inside the node namespace).
fn tcx_ingress_program_ids(ifname: &str) -> Vec<u32> {
    let (_, progs) = SchedClassifier::query_tcx(ifname, TcAttachType::Ingress).expect("query tcx");
    progs.iter().map(|p| p.id()).collect()
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
fn detached_pod_is_not_reachable_when_the_node_does_not_forward() {
    let mut s = Scene::new("veth-detach");
    assert!(s.a.ping(&s.b.ip, 1), "attached: reachable");

    s.node
        .run(|| s.dp.detach_from_pod(&s.a.host_if))
        .expect("detach");
    s.node
        .run(|| s.dp.detach_from_pod(&s.a.host_if))
        .expect("detaching twice is not an error");
    assert!(
        !s.pins.path().join("links/from_pod_wdpa").exists(),
        "link pin removed"
    );
    assert!(
        s.node.run(|| tcx_ingress_programs("wdpa")).is_empty(),
        "nothing left on wdpa"
    );
    assert!(!s.node.run(|| s.dp.is_from_pod_attached("wdpa")).unwrap());

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
    node.run(|| dp.attach_from_pod(&a.host_if))
        .expect("second attach is a no-op");
    assert_eq!(
        node.run(|| tcx_ingress_programs("wdpa")),
        ["from_pod"],
        "exactly one program"
    );
    assert!(node.run(|| dp.is_from_pod_attached("wdpa")).unwrap());
    let first_program = node.run(|| tcx_ingress_program_ids("wdpa"));

    // The agent goes away: links and maps stay pinned, traffic keeps flowing.
    drop(dp);
    assert!(a.ping(&b.ip, 2), "no agent: pinned links keep delivering");

    // A new agent re-opens the pinned maps and takes the links over with its own program.
    let mut dp = Datapath::open(pins.path()).expect("reopen");
    assert_eq!(
        dp.endpoints().unwrap().len(),
        2,
        "endpoints survived in the pinned map"
    );
    node.run(|| {
        dp.attach_from_pod(&a.host_if).expect("take over link a");
        dp.attach_from_pod(&b.host_if).expect("take over link b");
    });
    assert_eq!(
        node.run(|| tcx_ingress_programs("wdpa")),
        ["from_pod"],
        "still one program"
    );
    let second_program = node.run(|| tcx_ingress_program_ids("wdpa"));
    assert_ne!(
        first_program, second_program,
        "the new agent's program runs now"
    );
    assert!(a.ping(&b.ip, 2), "after restart");
}

#[test]
fn attach_to_a_missing_interface_is_a_typed_error() {
    let s = Scene::new("veth-missing");
    let mut dp = s.dp;
    let err = s
        .node
        .run(|| dp.attach_from_pod("wdp-none"))
        .expect_err("no such interface");
    assert!(
        matches!(err, weft::datapath::DatapathError::NoSuchInterface { .. }),
        "{err}"
    );
    let err = s
        .node
        .run(|| dp.attach_from_pod("bad/name"))
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
fn recreated_interface_gets_a_fresh_link() {
    let mut s = Scene::new("veth-recreate");
    // The pod's veth disappears (pod deleted without DEL) and a new pod gets the same host name.
    s.node.exec(&["ip", "link", "del", "wdpa"]);
    assert!(
        s.pins.path().join("links/from_pod_wdpa").exists(),
        "the stale pin is still there"
    );
    let a2 = Pod::new(&s.node, "a2", "wdpa", "10.200.0.5");
    register(&mut s.dp, &a2);
    assert!(
        !s.node.run(|| s.dp.is_from_pod_attached("wdpa")).unwrap(),
        "stale link is not attached"
    );

    s.node
        .run(|| s.dp.attach_from_pod("wdpa"))
        .expect("attach over a stale pin");

    assert!(s.node.run(|| s.dp.is_from_pod_attached("wdpa")).unwrap());
    assert!(
        a2.ping(&s.b.ip, 2),
        "new pod reaches b through a fresh link"
    );
}
