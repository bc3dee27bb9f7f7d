//! NetworkPolicy packet tests: crafted frames through `from_pod` and `to_pod`
//! (`BPF_PROG_TEST_RUN`) against the real pinned maps, with the policy maps written through
//! `PolicyMaps` as the agent writes them. Each verdict path: not tracked, allowed and denied
//! in both directions, replies of allowed flows, ipBlock except as the longest prefix, port
//! ranges as LPM blocks, the node let in, Service and NodePort traffic judged on the backend,
//! another node's pods judged at delivery, and a restarted reconciler that adopts the maps.
//! Root only.

mod support;

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use proptest::prelude::*;
use support::bpf::*;
use support::frames::*;
use support::lb::*;
use weft::datapath::{Datapath, PolicyEndpoint, PolicyMaps};
use weft::lb::Protocol;
use weft::policy::{
    port_blocks, Direction, IpIdentity, PortBlock, PortMatch, Proto, RuleKey, ANY, HOST, WORLD,
};

const CLIENT_ID: u32 = 300;
const SERVER_ID: u32 = 301;
const OTHER_ID: u32 = 302;
const NODE_IP: [u8; 4] = [192, 168, 50, 11];

fn client() -> Pod {
    pod(5)
}
fn server() -> Pod {
    pod(7)
}
fn other() -> Pod {
    pod(9)
}

/// Three local pods with their label identities, and this node's address as `host`.
fn setup(test: &str) -> (PinDir, Datapath, PolicyMaps) {
    let (pins, dp) = datapath(test, &[client(), server(), other()]);
    let mut maps = PolicyMaps::open(pins.path()).expect("open policy maps");
    for (p, id) in [
        (client(), CLIENT_ID),
        (server(), SERVER_ID),
        (other(), OTHER_ID),
    ] {
        maps.set_identity(
            host(p.ip),
            IpIdentity {
                label: id,
                prefix: 0,
            },
        )
        .unwrap();
    }
    maps.set_identity(
        host(NODE_IP),
        IpIdentity {
            label: HOST,
            prefix: 0,
        },
    )
    .unwrap();
    (pins, dp, maps)
}

fn host(ip: [u8; 4]) -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::from(ip), 32).unwrap()
}

fn isolate(maps: &mut PolicyMaps, p: &Pod, policy_id: u32, ingress: bool, egress: bool) {
    let ep = PolicyEndpoint {
        policy_id,
        ingress_isolated: ingress,
        egress_isolated: egress,
    };
    maps.set_endpoint(Ipv4Addr::from(p.ip), &ep).unwrap();
}

fn allow(
    maps: &mut PolicyMaps,
    policy_id: u32,
    dir: Direction,
    peer: u32,
    proto: Proto,
    lo: u16,
    hi: u16,
) {
    for block in port_blocks(lo, hi) {
        maps.insert_rule(
            policy_id,
            dir,
            &RuleKey {
                peer,
                ports: PortMatch::Proto(proto, block),
            },
        )
        .unwrap();
    }
}

fn syn(from: &Pod, sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    from_pod(
        from,
        &tcp_packet(from.ip, sport, dst, dport, 1, 0, TCP_SYN, b""),
    )
}

fn udp_from(from: &Pod, dst: [u8; 4], dport: u16) -> Vec<u8> {
    from_pod(from, &udp_packet(from.ip, 40000, dst, dport, b"policy"))
}

fn verdict(dp: &Datapath, frame: &[u8]) -> u32 {
    dp.test_run_from_pod(frame).expect("test run").verdict
}

/// Exactly `n` drops were counted, all for `reason`.
fn assert_drops(dp: &Datapath, reason: &str, n: u64) {
    for (name, count) in dp.drop_counters().expect("read DROP_STATS") {
        let want = if name == reason { n } else { 0 };
        assert_eq!(count, want, "drop counter {name}");
    }
}

#[test]
fn a_pod_no_policy_tracks_is_not_judged_and_leaves_no_conntrack() {
    let (_pins, dp, _maps) = setup("untracked");
    assert_eq!(
        verdict(&dp, &udp_from(&client(), server().ip, 8080)),
        TC_ACT_REDIRECT
    );
    assert_no_drops(&dp);
    assert_eq!(
        dp.conntrack_len().unwrap(),
        0,
        "untracked pods pay no conntrack"
    );
}

#[test]
fn ingress_isolation_drops_what_no_rule_allows_and_counts_it() {
    let (_pins, dp, mut maps) = setup("ingress");
    isolate(&mut maps, &server(), 10, true, false);
    assert_eq!(
        verdict(&dp, &udp_from(&client(), server().ip, 8080)),
        TC_ACT_SHOT
    );
    assert_drops(&dp, "policy_denied_ingress", 1);

    allow(
        &mut maps,
        10,
        Direction::Ingress,
        CLIENT_ID,
        Proto::Udp,
        8080,
        8080,
    );
    assert_eq!(
        verdict(&dp, &udp_from(&client(), server().ip, 8080)),
        TC_ACT_REDIRECT
    );
    assert_eq!(
        verdict(&dp, &udp_from(&client(), server().ip, 8081)),
        TC_ACT_SHOT,
        "another port"
    );
    assert_eq!(
        verdict(&dp, &udp_from(&other(), server().ip, 8080)),
        TC_ACT_SHOT,
        "another peer"
    );
    assert_drops(&dp, "policy_denied_ingress", 3);
    // The same rule says nothing of egress: the server is not isolated there.
    assert_eq!(
        verdict(&dp, &udp_from(&server(), other().ip, 53)),
        TC_ACT_REDIRECT
    );
}

#[test]
fn replies_of_an_allowed_flow_pass_both_isolations_and_a_new_flow_back_does_not() {
    let (_pins, dp, mut maps) = setup("replies");
    isolate(&mut maps, &client(), 20, false, true);
    isolate(&mut maps, &server(), 10, true, true);
    allow(
        &mut maps,
        20,
        Direction::Egress,
        SERVER_ID,
        Proto::Tcp,
        80,
        80,
    );
    allow(
        &mut maps,
        10,
        Direction::Ingress,
        CLIENT_ID,
        Proto::Tcp,
        80,
        80,
    );

    assert_eq!(
        verdict(&dp, &syn(&client(), 40000, server().ip, 80)),
        TC_ACT_REDIRECT
    );
    let reply = from_pod(
        &server(),
        &tcp_packet(
            server().ip,
            80,
            client().ip,
            40000,
            9,
            2,
            TCP_SYN | TCP_ACK,
            b"",
        ),
    );
    assert_eq!(
        verdict(&dp, &reply),
        TC_ACT_REDIRECT,
        "the reply leaves the egress-isolated server"
    );
    let ack = from_pod(
        &client(),
        &tcp_packet(client().ip, 40000, server().ip, 80, 2, 10, TCP_ACK, b"x"),
    );
    assert_eq!(verdict(&dp, &ack), TC_ACT_REDIRECT, "the established flow");
    assert_no_drops(&dp);

    assert_eq!(
        verdict(&dp, &syn(&server(), 40001, client().ip, 80)),
        TC_ACT_SHOT,
        "a new flow back"
    );
    assert_drops(&dp, "policy_denied_egress", 1);
    // Per direction: the client's egress entry is no pass into the server on another port.
    assert_eq!(
        verdict(&dp, &syn(&client(), 40002, server().ip, 81)),
        TC_ACT_SHOT
    );
    assert_eq!(
        counter(&dp, "policy_denied_egress"),
        2,
        "the client's egress refused port 81"
    );
}

#[test]
fn a_flow_between_two_local_pods_is_judged_by_the_receivers_ingress_too() {
    let (_pins, dp, mut maps) = setup("both-ends");
    isolate(&mut maps, &client(), 20, false, true);
    isolate(&mut maps, &server(), 10, true, false);
    allow(
        &mut maps,
        20,
        Direction::Egress,
        SERVER_ID,
        Proto::Tcp,
        80,
        80,
    );
    // The client may send, but nothing lets it into the server.
    assert_eq!(
        verdict(&dp, &syn(&client(), 40000, server().ip, 80)),
        TC_ACT_SHOT
    );
    assert_drops(&dp, "policy_denied_ingress", 1);
}

#[test]
fn an_ip_block_except_is_a_longer_prefix_the_rule_does_not_allow() {
    let (_pins, dp, mut maps) = setup("ipblock");
    // ipBlock 10.0.0.0/8 except 10.200.0.0/24: prefix identities, the server inside the except.
    let (p8, p24) = (1 << 24, (1 << 24) + 1);
    maps.set_identity(
        "10.0.0.0/8".parse().unwrap(),
        IpIdentity {
            label: WORLD,
            prefix: p8,
        },
    )
    .unwrap();
    maps.set_identity(
        "10.200.0.0/24".parse().unwrap(),
        IpIdentity {
            label: WORLD,
            prefix: p24,
        },
    )
    .unwrap();
    maps.set_identity(
        host(server().ip),
        IpIdentity {
            label: SERVER_ID,
            prefix: p24,
        },
    )
    .unwrap();
    isolate(&mut maps, &client(), 20, false, true);
    maps.insert_rule(
        20,
        Direction::Egress,
        &RuleKey {
            peer: p8,
            ports: PortMatch::AnyProto,
        },
    )
    .unwrap();

    assert_eq!(
        verdict(&dp, &udp_from(&client(), [10, 9, 9, 9], 53)),
        TC_ACT_OK,
        "in the block: to the stack"
    );
    assert_eq!(
        verdict(&dp, &udp_from(&client(), server().ip, 53)),
        TC_ACT_SHOT,
        "a pod in the except"
    );
    assert_eq!(
        verdict(&dp, &udp_from(&client(), [10, 200, 0, 99], 53)),
        TC_ACT_SHOT,
        "an address in the except"
    );
    assert_eq!(
        verdict(&dp, &udp_from(&client(), [203, 0, 113, 10], 53)),
        TC_ACT_SHOT,
        "outside the block"
    );
    assert_drops(&dp, "policy_denied_egress", 3);
}

#[test]
fn port_ranges_allow_every_port_of_the_range_and_none_outside() {
    let (_pins, dp, mut maps) = setup("ranges");
    isolate(&mut maps, &server(), 10, true, false);
    allow(
        &mut maps,
        10,
        Direction::Ingress,
        ANY,
        Proto::Tcp,
        1000,
        1023,
    );
    for (port, want) in [
        (999, TC_ACT_SHOT),
        (1000, TC_ACT_REDIRECT),
        (1010, TC_ACT_REDIRECT),
        (1023, TC_ACT_REDIRECT),
        (1024, TC_ACT_SHOT),
    ] {
        assert_eq!(
            verdict(&dp, &syn(&client(), 40000 + port, server().ip, port)),
            want,
            "port {port}"
        );
    }
    // A TCP range opens no UDP, and an SCTP rule no TCP.
    allow(&mut maps, 10, Direction::Ingress, ANY, Proto::Sctp, 80, 80);
    assert_eq!(
        verdict(&dp, &udp_from(&client(), server().ip, 1000)),
        TC_ACT_SHOT
    );
    assert_eq!(
        verdict(&dp, &syn(&client(), 41000, server().ip, 80)),
        TC_ACT_SHOT
    );
}

#[test]
fn the_node_gets_into_an_isolated_pod_through_the_stack_and_others_do_not() {
    let (_pins, dp, mut maps) = setup("node");
    isolate(&mut maps, &server(), 10, true, true);
    // What the stack delivers passes `to_pod` (tc egress of the host veth).
    let probe = ethernet(
        server().ep.pod_mac,
        server().ep.host_mac,
        ETH_P_IP,
        &tcp_packet(NODE_IP, 50000, server().ip, 8080, 1, 0, TCP_SYN, b""),
    );
    assert_eq!(
        dp.test_run_to_pod(&probe).unwrap().verdict,
        TC_ACT_OK,
        "kubelet probe"
    );
    // Its reply leaves the egress-isolated pod.
    let reply = from_pod(
        &server(),
        &tcp_packet(
            server().ip,
            8080,
            NODE_IP,
            50000,
            5,
            2,
            TCP_SYN | TCP_ACK,
            b"",
        ),
    );
    assert_eq!(
        verdict(&dp, &reply),
        TC_ACT_OK,
        "the probe's reply, to the stack"
    );
    let stranger = ethernet(
        server().ep.pod_mac,
        server().ep.host_mac,
        ETH_P_IP,
        &tcp_packet(
            [192, 168, 50, 12],
            50000,
            server().ip,
            8080,
            1,
            0,
            TCP_SYN,
            b"",
        ),
    );
    assert_eq!(
        dp.test_run_to_pod(&stranger).unwrap().verdict,
        TC_ACT_SHOT,
        "another node is no host"
    );
    assert_drops(&dp, "policy_denied_ingress", 1);
}

#[test]
fn service_traffic_is_judged_on_the_backend_the_service_step_chose() {
    let (_pins, mut dp, mut maps) = setup("service");
    dp.upsert_service(&clusterip(
        "to-server",
        [10, 32, 0, 10],
        80,
        Protocol::Tcp,
        &[active(server().ip, 8080)],
    ))
    .unwrap();
    dp.upsert_service(&clusterip(
        "to-other",
        [10, 32, 0, 11],
        80,
        Protocol::Tcp,
        &[active(other().ip, 8080)],
    ))
    .unwrap();
    isolate(&mut maps, &client(), 20, false, true);
    allow(
        &mut maps,
        20,
        Direction::Egress,
        SERVER_ID,
        Proto::Tcp,
        8080,
        8080,
    );

    let out = dp
        .test_run_from_pod(&syn(&client(), 40000, [10, 32, 0, 10], 80))
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        seen(&out.frame).dst,
        server().ip,
        "translated to the backend"
    );
    assert_eq!(
        verdict(&dp, &syn(&client(), 40001, [10, 32, 0, 11], 80)),
        TC_ACT_SHOT
    );
    assert_drops(&dp, "policy_denied_egress", 1);
    // The allowed Service flow's reply comes back through reverse NAT into the client.
    let reply = from_pod(
        &server(),
        &tcp_packet(
            server().ip,
            8080,
            client().ip,
            40000,
            9,
            2,
            TCP_SYN | TCP_ACK,
            b"",
        ),
    );
    let out = dp.test_run_from_pod(&reply).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        seen(&out.frame).src,
        [10, 32, 0, 10],
        "reverse-NATed to the ClusterIP"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random port ranges in, random ports probed: the verdict is "allowed" exactly when a
    /// range holds the port, whatever blocks the ranges became.
    #[test]
    fn a_random_set_of_ranges_allows_exactly_its_ports(
        ranges in proptest::collection::vec((1u16..=65535, 0u16..300), 1..4),
        probes in proptest::collection::vec(1u16..=65535, 8),
    ) {
        let (_pins, dp, mut maps) = setup("range-props");
        isolate(&mut maps, &server(), 10, true, false);
        let ranges: Vec<(u16, u16)> = ranges.iter().map(|&(lo, len)| (lo, lo.saturating_add(len))).collect();
        for &(lo, hi) in &ranges {
            allow(&mut maps, 10, Direction::Ingress, CLIENT_ID, Proto::Udp, lo, hi);
        }
        let edges = ranges.iter().flat_map(|&(lo, hi)| [lo, hi, lo.saturating_sub(1), hi.saturating_add(1)]);
        for port in probes.into_iter().chain(edges).filter(|p| *p != 0) {
            let want = ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&port));
            let got = verdict(&dp, &udp_from(&client(), server().ip, port));
            prop_assert_eq!(got == TC_ACT_REDIRECT, want, "port {} in {:?}", port, ranges);
        }
    }
}

#[test]
fn port_blocks_are_what_the_maps_hold() {
    // The datapath's LPM depends on blocks being aligned: a block's free bits are zero.
    for b in port_blocks(1, 65535) {
        let free = 16 - u32::from(b.bits);
        assert_eq!(u32::from(b.port) & ((1u32 << free) - 1), 0, "{b:?}");
    }
    assert_eq!(port_blocks(80, 80), vec![PortBlock { port: 80, bits: 16 }]);
}

/// A frame arriving on the uplink from the network's router.
fn from_uplink(ip_packet: &[u8]) -> Vec<u8> {
    ethernet(
        [0x02, 0x50, 0, 0, 0, 0x11],
        [0x02, 0x50, 0, 0, 0, 0x01],
        ETH_P_IP,
        ip_packet,
    )
}

#[test]
fn nodeport_traffic_is_judged_by_the_backends_ingress_after_translation() {
    let (_pins, mut dp, mut maps) = setup("nodeport");
    let outside = [203, 0, 113, 10];
    let mut np = weft::lb::Service {
        frontends: vec![frontend(
            weft::lb::FrontendKind::NodePort,
            NODE_IP,
            30080,
            Protocol::Tcp,
            &[active(server().ip, 8080)],
        )],
        ..clusterip("np", [10, 32, 0, 12], 80, Protocol::Tcp, &[])
    };
    np.frontends[0].backends[0].local = true;
    dp.upsert_service(&np).unwrap();
    isolate(&mut maps, &server(), 10, true, false);
    let syn = |sport| {
        from_uplink(&tcp_packet(
            outside, sport, NODE_IP, 30080, 1, 0, TCP_SYN, b"",
        ))
    };
    assert_eq!(
        dp.test_run_netdev(&syn(40000)).unwrap().verdict,
        TC_ACT_SHOT
    );
    assert_drops(&dp, "policy_denied_ingress", 1);
    // An ipBlock holding the outside host, as a prefix identity.
    let p = 1 << 24;
    maps.set_identity(
        "203.0.113.0/24".parse().unwrap(),
        IpIdentity {
            label: WORLD,
            prefix: p,
        },
    )
    .unwrap();
    allow(&mut maps, 10, Direction::Ingress, p, Proto::Tcp, 8080, 8080);
    let out = dp.test_run_netdev(&syn(40001)).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        seen(&out.frame).src,
        outside,
        "judged on the client's own address (no SNAT to a local backend)"
    );
}

#[test]
fn traffic_from_another_nodes_pod_is_judged_at_delivery() {
    let (pins, dp, mut maps) = setup("cross-node");
    let remote = [10, 200, 1, 9];
    let mut routes = weft::datapath::NodeRoutes::open(pins.path()).unwrap();
    let hop = weft::datapath::NodeHop::Native {
        node_ip: Ipv4Addr::new(192, 168, 50, 12),
        uplink_ifindex: 2,
    };
    routes
        .upsert("10.200.1.0/24".parse().unwrap(), &hop)
        .unwrap();
    maps.set_identity(
        host(remote),
        IpIdentity {
            label: 400,
            prefix: 0,
        },
    )
    .unwrap();
    isolate(&mut maps, &server(), 10, true, false);
    allow(&mut maps, 10, Direction::Ingress, 400, Proto::Tcp, 80, 80);
    let syn = |dport| {
        from_uplink(&tcp_packet(
            remote,
            40000 + dport,
            server().ip,
            dport,
            1,
            0,
            TCP_SYN,
            b"",
        ))
    };
    assert_eq!(
        dp.test_run_netdev(&syn(80)).unwrap().verdict,
        TC_ACT_REDIRECT
    );
    assert_eq!(dp.test_run_netdev(&syn(81)).unwrap().verdict, TC_ACT_SHOT);
    assert_drops(&dp, "policy_denied_ingress", 1);
}

#[test]
fn a_restarted_reconciler_adopts_the_maps_and_writes_nothing() {
    use std::collections::{BTreeMap, BTreeSet};
    use weft::datapath::policy::{ApplyStats, Desired};
    use weft::datapath::PolicyReconciler;

    let (pins, dp, maps) = setup("resume");
    let ipcache: BTreeMap<Ipv4Network, IpIdentity> = [
        (
            host(client().ip),
            IpIdentity {
                label: CLIENT_ID,
                prefix: 0,
            },
        ),
        (
            host(NODE_IP),
            IpIdentity {
                label: HOST,
                prefix: 0,
            },
        ),
    ]
    .into();
    let rules: BTreeSet<(Direction, RuleKey)> = port_blocks(1000, 1100)
        .into_iter()
        .map(|b| {
            (
                Direction::Ingress,
                RuleKey {
                    peer: CLIENT_ID,
                    ports: PortMatch::Proto(Proto::Tcp, b),
                },
            )
        })
        .collect();
    let eps = BTreeMap::from([(
        Ipv4Addr::from(server().ip),
        Desired {
            ingress: true,
            egress: false,
            rules,
        },
    )]);
    drop(maps);
    let mut first = PolicyReconciler::resume(PolicyMaps::open(pins.path()).unwrap()).unwrap();
    let wrote = first.apply(&ipcache, &eps).unwrap();
    assert!(wrote.written > 0);
    // A key no endpoint points at, as an interrupted switch leaves it.
    let mut raw = PolicyMaps::open(pins.path()).unwrap();
    let orphan = RuleKey {
        peer: OTHER_ID,
        ports: PortMatch::AnyProto,
    };
    raw.insert_rule(999, Direction::Ingress, &orphan).unwrap();
    drop(first);

    let mut again = PolicyReconciler::resume(PolicyMaps::open(pins.path()).unwrap()).unwrap();
    assert_eq!(
        again.apply(&ipcache, &eps).unwrap(),
        ApplyStats::default(),
        "the same state writes nothing"
    );
    let left: Vec<_> = raw.raw_rules().unwrap();
    assert!(
        left.iter()
            .all(|(_, d)| u32::from_be_bytes(d.policy_id_be) != 999),
        "the orphan key is removed"
    );
    assert_eq!(
        verdict(&dp, &syn(&client(), 41000, server().ip, 1050)),
        TC_ACT_REDIRECT
    );
    assert_eq!(
        verdict(&dp, &syn(&client(), 41001, server().ip, 1101)),
        TC_ACT_SHOT
    );
}

/// An ICMP error from `router` to `to`, quoting the first 28 bytes of `quoted` (an IPv4
/// packet), as the node's stack delivers it (through `to_pod`).
fn icmp_error(router: [u8; 4], to: &Pod, icmp_type: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0, 0, 0, 0x05, 0xdc];
    icmp.extend_from_slice(&quoted[..28]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ethernet(
        to.ep.pod_mac,
        to.ep.host_mac,
        ETH_P_IP,
        &ipv4_proto(router, to.ip, IPPROTO_ICMP, &icmp),
    )
}

#[test]
fn icmp_errors_about_an_allowed_flow_reach_an_isolated_pod_and_others_do_not() {
    let (_pins, dp, mut maps) = setup("icmp-errors");
    isolate(&mut maps, &client(), 20, true, true);
    allow(
        &mut maps,
        20,
        Direction::Egress,
        SERVER_ID,
        Proto::Tcp,
        80,
        80,
    );
    assert_eq!(
        verdict(&dp, &syn(&client(), 40000, server().ip, 80)),
        TC_ACT_REDIRECT
    );
    let router = [10, 9, 9, 9];
    let sent = tcp_packet(client().ip, 40000, server().ip, 80, 1, 0, TCP_SYN, b"");
    // Fragmentation needed (3/4) and time exceeded (11/0) about the flow: path MTU discovery
    // and traceroute keep working.
    for (t, code) in [(3, 4), (11, 0)] {
        let out = dp
            .test_run_to_pod(&icmp_error(router, &client(), t, code, &sent))
            .unwrap();
        assert_eq!(
            out.verdict, TC_ACT_OK,
            "ICMP {t}/{code} about an allowed flow"
        );
    }
    assert_no_drops(&dp);
    // About a flow the pod never had, or not an error at all: judged as ICMP, and denied.
    let never = tcp_packet(client().ip, 40001, server().ip, 80, 1, 0, TCP_SYN, b"");
    assert_eq!(
        dp.test_run_to_pod(&icmp_error(router, &client(), 3, 4, &never))
            .unwrap()
            .verdict,
        TC_ACT_SHOT
    );
    let echo = ethernet(
        client().ep.pod_mac,
        client().ep.host_mac,
        ETH_P_IP,
        &ipv4_proto(
            router,
            client().ip,
            IPPROTO_ICMP,
            &[8, 0, 0xf7, 0xff, 0, 0, 0, 0],
        ),
    );
    assert_eq!(dp.test_run_to_pod(&echo).unwrap().verdict, TC_ACT_SHOT);
    assert_drops(&dp, "policy_denied_ingress", 2);
}
