//! A switch between kube-proxy and weft on a running node (BPF_PROG_TEST_RUN against the real
//! pinned maps): while weft takes Services over, segments of connections kube-proxy translated
//! (no `CT4` entry, no SYN) are left to the stack, whose conntrack keeps their backend; while it
//! hands them back, new connections are the stack's and weft's own keep their translation both
//! ways. With kernel host routing, packets whose source weft translated to a node address still
//! leave by redirect (the stack would drop them as martians).
//! Root only; fails (not skips) without root or bpffs.

mod support;

use std::net::Ipv4Addr;

use support::bpf::*;
use support::frames::*;
use support::lb::*;
use weft::datapath::{Datapath, DatapathSettings, Prog, ServiceHandoff};
use weft::lb::{FrontendKind, Protocol};

const VIP: [u8; 4] = [10, 32, 0, 10];
const NODE_IP: [u8; 4] = [192, 168, 50, 11];
const OUTSIDE: [u8; 4] = [203, 0, 113, 10];
const REMOTE: [u8; 4] = [10, 200, 1, 9];
const UPLINK_MAC: Mac = [0x02, 0x50, 0, 0, 0, 0x11];
const ROUTER_MAC: Mac = [0x02, 0x50, 0, 0, 0, 0x01];
const UPLINK: u32 = 3;

fn client() -> Pod {
    pod(5)
}
fn backends() -> [Pod; 2] {
    [pod(7), pod(8)]
}

/// The client and two backend pods, `VIP:80/TCP` -> both on 8080, and `settings`.
fn node(test: &str, settings: DatapathSettings) -> (PinDir, Datapath) {
    let [b1, b2] = backends();
    let (pins, mut dp) = datapath(test, &[client(), b1, b2]);
    dp.upsert_service(&clusterip(
        "web",
        VIP,
        80,
        Protocol::Tcp,
        &[active(b1.ip, 8080), active(b2.ip, 8080)],
    ))
    .expect("program the Service");
    dp.set_settings(&settings).expect("settings");
    (pins, dp)
}

/// Kernel host routing (what kube-proxy beside weft needs) with `handoff`.
fn kernel(handoff: ServiceHandoff) -> DatapathSettings {
    DatapathSettings {
        bpf_host_routing: false,
        uplink: Some(UPLINK),
        handoff,
        ..DatapathSettings::default()
    }
}

fn to_vip(sport: u16, flags: u8) -> Vec<u8> {
    from_pod(&client(), &tcp_packet(client().ip, sport, VIP, 80, 1000, 1, flags, b""))
}

fn lb_counter(dp: &Datapath, name: &str) -> u64 {
    dp.lb_counters()
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no Service path counter {name}"))
        .1
}

fn is_backend(ip: [u8; 4]) -> bool {
    backends().iter().any(|b| b.ip == ip)
}

#[test]
fn taking_over_leaves_kube_proxys_connections_to_the_stack_and_translates_new_ones() {
    let (_pins, mut dp) = node("takeover", kernel(ServiceHandoff::Takeover));

    // A segment of a connection kube-proxy translated before weft took over: weft knows no
    // backend for it, the stack's conntrack does.
    let segment = to_vip(40000, TCP_ACK);
    let out = dp.test_run_from_pod(&segment).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK, "to the stack");
    assert_eq!(out.frame, segment, "untouched");
    assert_eq!(lb_counter(&dp, "handed_to_kernel"), 1);
    assert_eq!(lb_counter(&dp, "ct_miss_established"), 0);
    assert_eq!(dp.conntrack_len().unwrap(), 0, "no entry for a flow weft did not open");
    // Its end too (FIN, RST: no SYN).
    let fin = to_vip(40000, TCP_ACK | TCP_FIN);
    assert_eq!(dp.test_run_from_pod(&fin).unwrap().frame, fin);

    // A new connection is weft's from its SYN on, with both entries.
    let out = dp.test_run_from_pod(&to_vip(40001, TCP_SYN)).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK, "kernel host routing: the stack forwards it");
    let backend = seen(&out.frame).dst;
    assert!(is_backend(backend), "translated to a backend, not {backend:?}");
    assert_checksums(&out.frame);
    let out = dp.test_run_from_pod(&to_vip(40001, TCP_ACK)).unwrap();
    assert_eq!(seen(&out.frame).dst, backend, "its next segment stays on its backend");
    assert_eq!(dp.conntrack_len().unwrap(), 2);
    assert_eq!(lb_counter(&dp, "handed_to_kernel"), 2);

    // Outside a switch the same unknown segment is balanced afresh (counted).
    dp.set_settings(&kernel(ServiceHandoff::None)).unwrap();
    let out = dp.test_run_from_pod(&to_vip(40002, TCP_ACK)).unwrap();
    assert!(is_backend(seen(&out.frame).dst));
    assert_eq!(lb_counter(&dp, "ct_miss_established"), 1);
    assert_eq!(lb_counter(&dp, "handed_to_kernel"), 2);
    assert_no_drops(&dp);
}

#[test]
fn handing_back_sends_new_connections_to_the_stack_and_keeps_weft_s_own_both_ways() {
    let (_pins, mut dp) = node("release", kernel(ServiceHandoff::None));
    // A connection weft opened before the switch back.
    let out = dp.test_run_from_pod(&to_vip(41000, TCP_SYN)).unwrap();
    let backend = seen(&out.frame).dst;
    assert!(is_backend(backend));
    dp.set_settings(&kernel(ServiceHandoff::Release)).unwrap();

    // New connections are kube-proxy's: their SYN reaches the stack with the Service address.
    let syn = to_vip(41001, TCP_SYN);
    let out = dp.test_run_from_pod(&syn).unwrap();
    assert_eq!((out.verdict, &out.frame), (TC_ACT_OK, &syn));
    assert_eq!(lb_counter(&dp, "handed_to_kernel"), 1);
    assert_eq!(dp.conntrack_len().unwrap(), 2, "no entry for it");

    // weft's connection keeps its backend, and its replies their reverse NAT.
    let out = dp.test_run_from_pod(&to_vip(41000, TCP_ACK)).unwrap();
    assert_eq!(seen(&out.frame).dst, backend);
    let b = backends().into_iter().find(|b| b.ip == backend).unwrap();
    let reply = from_pod(&b, &tcp_packet(b.ip, 8080, client().ip, 41000, 5000, 1001, TCP_ACK, b"r"));
    let out = dp.test_run_from_pod(&reply).unwrap();
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 80, client().ip, 41000));
    assert_checksums(&out.frame);

    // Once it closes, a new connection on its tuple is kube-proxy's too, all of it: the closed
    // flow's entries (alive for 10 s more) must not capture its segments or its answers.
    dp.test_run_from_pod(&to_vip(41000, TCP_ACK | TCP_RST)).unwrap();
    let again = to_vip(41000, TCP_SYN);
    assert_eq!(dp.test_run_from_pod(&again).unwrap().frame, again);
    let next = to_vip(41000, TCP_ACK);
    assert_eq!(dp.test_run_from_pod(&next).unwrap().frame, next, "its next segment is the stack's");
    assert_eq!(lb_counter(&dp, "handed_to_kernel"), 3);
    // kube-proxy's masquerade may give the backend's answer the closed flow's reply tuple.
    for flags in [TCP_SYN | TCP_ACK, TCP_ACK] {
        let answer = from_pod(&b, &tcp_packet(b.ip, 8080, client().ip, 41000, 7000, 1001, flags, b""));
        let out = dp.test_run_from_pod(&answer).unwrap();
        assert_eq!(out.frame, answer, "the kernel's connection's answer (flags {flags:#x}) is the stack's");
    }
    assert_eq!(dp.conntrack_len().unwrap(), 0, "the closed flow's entries are gone");
    assert_no_drops(&dp);
}

#[test]
fn with_kernel_host_routing_a_nodeport_flow_translated_to_the_node_address_leaves_by_redirect() {
    // NodePort, externalTrafficPolicy Cluster: an outside client's SYN to a remote backend
    // leaves with the node's address as source, and so does a local backend's reply. The
    // stack drops a forwarded packet from one of its own addresses, in either routing mode.
    let local = pod(7);
    let (_pins, mut dp) = datapath("np-kernel", &[local]);
    dp.set_settings(&kernel(ServiceHandoff::Takeover)).unwrap();
    let nodeport = |backend: [u8; 4]| {
        let mut f = frontend(FrontendKind::NodePort, NODE_IP, 30080, Protocol::Tcp, &[active(backend, 8080)]);
        f.snat_remote = Some(Ipv4Addr::from(NODE_IP));
        service("np", vec![f])
    };
    let arriving = |packet: &[u8]| ethernet(UPLINK_MAC, ROUTER_MAC, ETH_P_IP, packet);

    dp.upsert_service(&nodeport(REMOTE)).unwrap();
    let syn = arriving(&tcp_packet(OUTSIDE, 42000, NODE_IP, 30080, 1, 0, TCP_SYN, &[]));
    let out = dp.test_run(Prog::FromNetdev.name(), &syn, 1).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "out of the uplink, not to the stack");
    let s = seen(&out.frame);
    assert_eq!((s.src, s.dst, s.dport), (NODE_IP, REMOTE, 8080));
    assert_checksums(&out.frame);
    // The remote backend's answer goes straight back out to the client.
    let reply = arriving(&tcp_packet(REMOTE, 8080, NODE_IP, s.sport, 9, 2, TCP_SYN | TCP_ACK, &[]));
    let out = dp.test_run(Prog::FromNetdev.name(), &reply, 1).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (NODE_IP, 30080, OUTSIDE, 42000));

    // A local backend: the request is the stack's to deliver (kernel host routing), the
    // reply, from the NodePort, leaves by redirect.
    dp.upsert_service(&nodeport(local.ip)).unwrap();
    let syn = arriving(&tcp_packet(OUTSIDE, 42001, NODE_IP, 30080, 1, 0, TCP_SYN, &[]));
    let out = dp.test_run(Prog::FromNetdev.name(), &syn, 1).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK);
    assert_eq!(seen(&out.frame).dst, local.ip);
    let reply = from_pod(&local, &tcp_packet(local.ip, 8080, OUTSIDE, 42001, 5, 2, TCP_SYN | TCP_ACK, &[]));
    let out = dp.test_run_from_pod(&reply).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "redirected to the uplink, not handed to the stack");
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (NODE_IP, 30080, OUTSIDE, 42001));
    assert_checksums(&out.frame);
    assert_no_drops(&dp);
}
