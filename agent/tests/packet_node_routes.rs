//! Cross-node forwarding packet tests: `from_pod` to another node's pod CIDR (native and
//! tunnel), `from_netdev`/`from_overlay` delivering to local pods, `to_overlay` tagging the
//! node's own traffic, and the kernel-routing switch. `BPF_PROG_TEST_RUN` against the real,
//! pinned maps; verdicts, rewritten bytes and checksums asserted. Root only.

mod support;

use std::net::Ipv4Addr;

use support::bpf::*;
use support::frames::*;
use weft::datapath::{
    Datapath, DatapathError, DatapathSettings, EndpointEntry, NodeHop, NodeRoutes, Prog, TestRunOutput,
};

/// One `BPF_PROG_TEST_RUN` of `prog` on `frame`.
fn run(dp: &Datapath, prog: Prog, frame: &[u8]) -> Result<TestRunOutput, DatapathError> {
    dp.test_run(prog.name(), frame, 1)
}

const POD_MAC: Mac = [0x02, 0xaa, 0, 0, 0, 0x05];
const GW_MAC: Mac = [0x02, 0xee, 0, 0, 0, 0x05];
const LOCAL_POD: [u8; 4] = [10, 200, 1, 5];
const LOCAL: EndpointEntry = EndpointEntry {
    ifindex: 4242,
    host_mac: [0x02, 0xee, 0, 0, 0, 0x07],
    pod_mac: [0x02, 0xaa, 0, 0, 0, 0x07],
};
/// A pod on node 2, whose pod CIDR is 10.200.2.0/24 and address 172.30.0.12.
const REMOTE_POD: [u8; 4] = [10, 200, 2, 9];
const NODE2: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 12);
const UPLINK_IFINDEX: u32 = 3;
/// An address of no pod (the outside host).
const OUTSIDE: [u8; 4] = [203, 0, 113, 10];

fn node2_cidr() -> ipnetwork::Ipv4Network {
    "10.200.2.0/24".parse().unwrap()
}

/// A datapath with one local pod and node 2's pod CIDR routed by `hop`.
fn datapath(test: &str, settings: DatapathSettings, hop: NodeHop) -> (PinDir, Datapath) {
    let pins = PinDir::new(test);
    let mut dp = Datapath::open_with(pins.path(), &settings).expect("open datapath");
    dp.upsert_endpoint(Ipv4Addr::from(LOCAL_POD), &LOCAL)
        .expect("register local pod");
    let mut routes = NodeRoutes::open(pins.path()).expect("open NODE_ROUTES4");
    routes.upsert(node2_cidr(), &hop).expect("route node 2");
    (pins, dp)
}

fn native() -> NodeHop {
    NodeHop::Native {
        node_ip: NODE2,
        uplink_ifindex: UPLINK_IFINDEX,
    }
}

fn udp_frame(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut f = ethernet(GW_MAC, POD_MAC, ETH_P_IP, &ipv4(src, dst, &udp(40000, 8080, b"hello")));
    set_ttl(&mut f, ttl);
    f
}

/// Set the TTL and recompute the header checksum from scratch.
fn set_ttl(frame: &mut [u8], ttl: u8) {
    frame[14 + 8] = ttl;
    frame[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&frame[14..34]);
    frame[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
}

/// The IPv4 header checksums to zero (i.e. its checksum field is right), computed here
/// independently of the kernel's incremental update.
fn assert_ipv4_checksum_valid(frame: &[u8]) {
    assert_eq!(checksum(&frame[14..34]), 0, "IPv4 header checksum of {:02x?}", &frame[14..34]);
}

#[test]
fn pod_to_remote_pod_is_redirected_natively_with_ttl_decremented() {
    require_root_and_bpffs();
    let (_pins, dp) = datapath("native", DatapathSettings::default(), native());
    let frame = udp_frame(LOCAL_POD, REMOTE_POD, 64);

    let out = run(&dp, Prog::FromPod, &frame).expect("test run");

    assert_eq!(out.verdict, TC_ACT_REDIRECT, "bpf_redirect_neigh to the uplink");
    assert_eq!(out.frame[14 + 8], 63, "this node is one routed hop");
    assert_ipv4_checksum_valid(&out.frame);
    assert_eq!(out.frame[34..], frame[34..], "UDP header and payload untouched");
    assert_eq!(out.frame[14 + 12..14 + 20], frame[14 + 12..14 + 20], "addresses untouched (no NAT)");
    assert_no_drops(&dp);
}

#[test]
fn every_ttl_keeps_a_valid_checksum() {
    require_root_and_bpffs();
    let (_pins, dp) = datapath("ttls", DatapathSettings::default(), native());
    for ttl in [2u8, 3, 17, 64, 128, 255] {
        let out = run(&dp, Prog::FromPod, &udp_frame(LOCAL_POD, REMOTE_POD, ttl))
            .expect("test run");
        assert_eq!(out.verdict, TC_ACT_REDIRECT, "ttl {ttl}");
        assert_eq!(out.frame[14 + 8], ttl - 1);
        assert_ipv4_checksum_valid(&out.frame);
    }
}

/// The TTL hop updates the header checksum incrementally, in place: every checksum value the
/// header can carry (stepped through with the identification field, which moves the checksum
/// one by one) must come out right, including those near 0xffff where the end-around carry
/// applies.
#[test]
fn every_checksum_value_survives_the_ttl_hop() {
    require_root_and_bpffs();
    let (_pins, dp) = datapath("csums", DatapathSettings::default(), native());
    let mut frame = udp_frame(LOCAL_POD, REMOTE_POD, 64);
    let mut seen = std::collections::HashSet::new();
    for id in 0..=u16::MAX {
        frame[14 + 4..14 + 6].copy_from_slice(&id.to_be_bytes());
        set_ttl(&mut frame, 64);
        seen.insert([frame[14 + 10], frame[14 + 11]]);
        let out = run(&dp, Prog::FromPod, &frame).expect("test run");
        assert_eq!(out.verdict, TC_ACT_REDIRECT, "id {id}");
        assert_eq!(out.frame[14 + 8], 63, "id {id}");
        assert_ipv4_checksum_valid(&out.frame);
    }
    // One's complement arithmetic never produces 0x0000 from a non-zero sum: every other
    // value occurs.
    assert!(seen.len() >= 0xffff, "only {} checksum values covered", seen.len());
    assert_no_drops(&dp);
}

#[test]
fn expiring_packets_go_to_the_stack_untouched_so_it_can_answer_time_exceeded() {
    require_root_and_bpffs();
    let (_pins, dp) = datapath("expire", DatapathSettings::default(), native());
    for ttl in [0u8, 1] {
        let frame = udp_frame(LOCAL_POD, REMOTE_POD, ttl);
        let out = run(&dp, Prog::FromPod, &frame).expect("test run");
        assert_eq!(out.verdict, TC_ACT_OK, "ttl {ttl} goes to the stack");
        assert_eq!(out.frame, frame);
        let out = run(&dp, Prog::FromNetdev, &udp_frame(REMOTE_POD, LOCAL_POD, ttl))
            .expect("test run");
        assert_eq!(out.verdict, TC_ACT_OK, "from_netdev, ttl {ttl}");
    }
    assert_no_drops(&dp);
}

#[test]
fn pod_to_remote_pod_goes_into_the_tunnel_in_vxlan_mode() {
    require_root_and_bpffs();
    let settings = DatapathSettings {
        vxlan: Some((UPLINK_IFINDEX, 1)),
        ..DatapathSettings::default()
    };
    let (_pins, dp) = datapath("tunnel", settings, NodeHop::Tunnel { node_ip: NODE2 });
    let frame = udp_frame(LOCAL_POD, REMOTE_POD, 64);

    let out = run(&dp, Prog::FromPod, &frame).expect("test run");

    assert_eq!(out.verdict, TC_ACT_REDIRECT, "redirect to the VXLAN device");
    assert_eq!(out.frame[14 + 8], 63);
    assert_ipv4_checksum_valid(&out.frame);
    assert_no_drops(&dp);
}

#[test]
fn pod_traffic_outside_every_pod_cidr_goes_to_the_stack() {
    require_root_and_bpffs();
    let (_pins, dp) = datapath("outside", DatapathSettings::default(), native());
    for dst in [OUTSIDE, NODE2.octets(), [10, 200, 3, 1], [10, 201, 2, 9]] {
        let frame = udp_frame(LOCAL_POD, dst, 64);
        let out = run(&dp, Prog::FromPod, &frame).expect("test run");
        assert_eq!(out.verdict, TC_ACT_OK, "{dst:?} is the stack's (routing, masquerade)");
        assert_eq!(out.frame, frame, "{dst:?} untouched");
    }
    assert_no_drops(&dp);
}

#[test]
fn from_netdev_and_from_overlay_deliver_to_local_pods_as_a_routed_hop() {
    require_root_and_bpffs();
    let (_pins, dp) = datapath("netdev", DatapathSettings::default(), native());
    for prog in [Prog::FromNetdev, Prog::FromOverlay] {
        let frame = udp_frame(REMOTE_POD, LOCAL_POD, 63);
        let out = run(&dp, prog, &frame).expect("test run");
        assert_eq!(out.verdict, TC_ACT_REDIRECT, "{prog:?}");
        assert_eq!(out.frame[0..6], LOCAL.pod_mac, "{prog:?}: dst MAC = pod");
        assert_eq!(out.frame[6..12], LOCAL.host_mac, "{prog:?}: src MAC = its host veth");
        assert_eq!(out.frame[14 + 8], 62, "{prog:?}: TTL - 1");
        assert_ipv4_checksum_valid(&out.frame);

        let other = udp_frame(REMOTE_POD, NODE2.octets(), 63);
        let out = run(&dp, prog, &other).expect("test run");
        assert_eq!(out.verdict, TC_ACT_OK, "{prog:?}: not a local pod -> stack");
        assert_eq!(out.frame, other);
    }
    assert_no_drops(&dp);
}

#[test]
fn traffic_from_outside_the_pod_network_reaches_local_pods_through_the_stack() {
    require_root_and_bpffs();
    let (_pins, dp) = datapath("netdev-outside", DatapathSettings::default(), native());
    // An outside host routed to the pod CIDRs (the API server's pod proxy) and another node:
    // the node's conntrack must see these connections open, or the egress masquerade would
    // take the pod's replies for new flows and rewrite their source.
    for src in [OUTSIDE, NODE2.octets(), [172, 30, 0, 2]] {
        let frame = udp_frame(src, LOCAL_POD, 63);
        let out = run(&dp, Prog::FromNetdev, &frame).expect("test run");
        assert_eq!(out.verdict, TC_ACT_OK, "{src:?} -> local pod goes to the stack");
        assert_eq!(out.frame, frame, "{src:?} untouched");
    }
    // Another node's pods are still delivered straight in.
    let out = run(&dp, Prog::FromNetdev, &udp_frame(REMOTE_POD, LOCAL_POD, 63)).expect("test run");
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_no_drops(&dp);
}

#[test]
fn kernel_host_routing_hands_everything_to_the_stack() {
    require_root_and_bpffs();
    let settings = DatapathSettings {
        bpf_host_routing: false,
        ..DatapathSettings::default()
    };
    let (_pins, dp) = datapath("kernel", settings, native());
    for (prog, src, dst) in [
        (Prog::FromPod, LOCAL_POD, LOCAL_POD),
        (Prog::FromPod, LOCAL_POD, REMOTE_POD),
        (Prog::FromNetdev, REMOTE_POD, LOCAL_POD),
    ] {
        let frame = udp_frame(src, dst, 64);
        let out = run(&dp, prog, &frame).expect("test run");
        assert_eq!(out.verdict, TC_ACT_OK, "{prog:?} {dst:?}");
        assert_eq!(out.frame, frame);
    }
    // Malformed frames are still counted drops in kernel mode.
    let mut bad = udp_frame(LOCAL_POD, REMOTE_POD, 64);
    bad[14] = 0x44;
    assert_eq!(run(&dp, Prog::FromPod, &bad).unwrap().verdict, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "ip4_bad_ihl"), 1);
}

#[test]
fn settings_switch_at_runtime_without_reloading() {
    require_root_and_bpffs();
    let (_pins, mut dp) = datapath("switch", DatapathSettings::default(), native());
    let frame = udp_frame(LOCAL_POD, LOCAL_POD, 64);
    assert_eq!(run(&dp, Prog::FromPod, &frame).unwrap().verdict, TC_ACT_REDIRECT);
    let kernel = DatapathSettings {
        bpf_host_routing: false,
        ..DatapathSettings::default()
    };
    dp.set_settings(&kernel).unwrap();
    assert_eq!(dp.settings().unwrap(), kernel);
    assert_eq!(run(&dp, Prog::FromPod, &frame).unwrap().verdict, TC_ACT_OK);
}

#[test]
fn to_overlay_tags_tunnel_routes_and_counts_the_rest() {
    require_root_and_bpffs();
    let settings = DatapathSettings {
        vxlan: Some((UPLINK_IFINDEX, 1)),
        ..DatapathSettings::default()
    };
    let (_pins, dp) = datapath("to-overlay", settings, NodeHop::Tunnel { node_ip: NODE2 });
    let frame = udp_frame([172, 30, 0, 11], REMOTE_POD, 64);
    let out = run(&dp, Prog::ToOverlay, &frame).expect("test run");
    assert_eq!(out.verdict, TC_ACT_OK, "node -> remote pod leaves through the tunnel");
    assert_eq!(out.frame, frame, "the node's stack already routed it: bytes untouched");
    assert_no_drops(&dp);

    let stray = udp_frame([172, 30, 0, 11], OUTSIDE, 64);
    assert_eq!(run(&dp, Prog::ToOverlay, &stray).unwrap().verdict, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "no_tunnel_route"), 1);
    let arp = ethernet([0xff; 6], GW_MAC, ETH_P_ARP, &arp_request(GW_MAC, [172, 30, 0, 11], REMOTE_POD));
    assert_eq!(run(&dp, Prog::ToOverlay, &arp).unwrap().verdict, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "no_tunnel_route"), 2);
}

#[test]
fn node_routes_are_listed_removed_and_longest_prefix_wins() {
    require_root_and_bpffs();
    let (pins, dp) = datapath("lpm", DatapathSettings::default(), native());
    let mut routes = NodeRoutes::open(pins.path()).unwrap();
    // A wider route to another node must not capture node 2's /24.
    let wide: ipnetwork::Ipv4Network = "10.200.0.0/16".parse().unwrap();
    routes
        .upsert(wide, &NodeHop::Tunnel { node_ip: Ipv4Addr::new(172, 30, 0, 99) })
        .unwrap();
    let out = run(&dp, Prog::FromPod, &udp_frame(LOCAL_POD, REMOTE_POD, 64)).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        routes.list().unwrap(),
        vec![(wide, NodeHop::Tunnel { node_ip: Ipv4Addr::new(172, 30, 0, 99) }), (node2_cidr(), native())]
    );
    routes.remove(node2_cidr()).unwrap();
    routes.remove(node2_cidr()).expect("removing an absent route is fine");
    routes.remove(wide).unwrap();
    assert!(routes.list().unwrap().is_empty());
    let frame = udp_frame(LOCAL_POD, REMOTE_POD, 64);
    let out = run(&dp, Prog::FromPod, &frame).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK, "no route: the stack");
    assert_eq!(out.frame, frame);
}
