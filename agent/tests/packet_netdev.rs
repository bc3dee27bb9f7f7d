//! The uplink's Service path (`lb::netdev` + local delivery, through the `netdev_lb` test
//! entry) with BPF_PROG_TEST_RUN: NodePort, externalIP and load-balancer frontends from outside
//! clients, externalTrafficPolicy Cluster (source translated to the node when the backend is
//! remote) and Local (client address kept), and replies from remote backends reverse-NATed on
//! the uplink; replies whose source becomes a NodePort leave through the uplink directly.
//! Root only; fails (not skips) without root or bpffs.

mod support;

use std::net::Ipv4Addr;

use support::bpf::*;
use support::frames::*;
use support::lb::*;
use weft::datapath::{DatapathSettings, Prog};
use weft::lb::{FrontendKind, Protocol};

const NODE_IP: [u8; 4] = [192, 168, 50, 11];
const OUTSIDE: [u8; 4] = [203, 0, 113, 10];
const REMOTE: [u8; 4] = [10, 200, 1, 9];
const UPLINK_MAC: Mac = [0x02, 0x50, 0, 0, 0, 0x11];
const ROUTER_MAC: Mac = [0x02, 0x50, 0, 0, 0, 0x01];

fn local() -> Pod {
    pod(7)
}

/// A frame arriving on the uplink from the router.
fn arriving(ip_packet: &[u8]) -> Vec<u8> {
    ethernet(UPLINK_MAC, ROUTER_MAC, ETH_P_IP, ip_packet)
}

fn nodeport(backends: &[weft::lb::Backend], snat: bool) -> weft::lb::Service {
    let mut f = frontend(FrontendKind::NodePort, NODE_IP, 30080, Protocol::Tcp, backends);
    if snat {
        f.snat_remote = Some(Ipv4Addr::from(NODE_IP));
    }
    service("np", vec![f])
}

#[test]
fn nodeport_to_a_local_backend_is_delivered_with_the_client_address() {
    let (_pins, mut dp) = datapath("np-local", &[local()]);
    dp.upsert_service(&nodeport(&[active(local().ip, 8080)], true))
        .unwrap();
    let syn = arriving(&tcp_packet(OUTSIDE, 40000, NODE_IP, 30080, 1, 0, TCP_SYN, &[]));

    let out = dp.test_run_netdev(&syn).unwrap();

    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport), (OUTSIDE, 40000), "a local backend needs no source translation");
    assert_eq!((s.dst, s.dport), (local().ip, 8080));
    assert_eq!(s.dst_mac, local().ep.pod_mac);
    assert_checksums(&out.frame);

    // The backend's reply leaves through from_pod, from the NodePort, towards the outside
    // client (left to the stack/forwarding: the client is not a local pod).
    let l = local();
    let reply = from_pod(&l, &tcp_packet(l.ip, 8080, OUTSIDE, 40000, 5, 2, TCP_SYN | TCP_ACK, &[]));
    let out = dp.test_run_from_pod(&reply).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK);
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (NODE_IP, 30080, OUTSIDE, 40000));
    assert_checksums(&out.frame);
    assert_no_drops(&dp);
}

#[test]
fn nodeport_cluster_policy_translates_the_source_for_a_remote_backend_and_back() {
    let (_pins, mut dp) = datapath("np-snat", &[]);
    dp.upsert_service(&nodeport(&[active(REMOTE, 8080)], true))
        .unwrap();
    let syn = arriving(&tcp_packet(OUTSIDE, 40001, NODE_IP, 30080, 1, 0, TCP_SYN, &[]));

    let out = dp.test_run_netdev(&syn).unwrap();

    assert_eq!(out.verdict, TC_ACT_OK, "a remote backend is left to forwarding");
    let s = seen(&out.frame);
    assert_eq!((s.dst, s.dport), (REMOTE, 8080));
    assert_eq!(s.src, NODE_IP, "the backend must answer this node");
    let snat_port = s.sport;
    assert_checksums(&out.frame);

    // The remote backend answers the node; the uplink restores NodePort -> client.
    let reply = arriving(&tcp_packet(REMOTE, 8080, NODE_IP, snat_port, 9, 2, TCP_SYN | TCP_ACK, &[]));
    let out = dp.test_run_netdev(&reply).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK, "back out to the outside client");
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (NODE_IP, 30080, OUTSIDE, 40001));
    assert_checksums(&out.frame);
    assert_no_drops(&dp);
}

#[test]
fn two_outside_clients_with_the_same_port_get_different_translated_ports() {
    let (_pins, mut dp) = datapath("np-ports", &[]);
    dp.upsert_service(&nodeport(&[active(REMOTE, 8080)], true))
        .unwrap();
    let from = |client: [u8; 4]| {
        let f = arriving(&tcp_packet(client, 40002, NODE_IP, 30080, 1, 0, TCP_SYN, &[]));
        seen(&dp.test_run_netdev(&f).unwrap().frame).sport
    };
    let a = from(OUTSIDE);
    let b = from([203, 0, 113, 11]);
    assert_eq!(a, 40002, "the client's own port when free");
    assert_ne!(a, b);
    assert!((61000..=65535).contains(&b), "translated port {b} outside the SNAT range");
    // Each reply finds its own client.
    for (port, client) in [(a, OUTSIDE), (b, [203, 0, 113, 11])] {
        let reply = arriving(&tcp_packet(REMOTE, 8080, NODE_IP, port, 1, 2, TCP_ACK, &[]));
        let s = seen(&dp.test_run_netdev(&reply).unwrap().frame);
        assert_eq!((s.dst, s.dport), (client, 40002));
    }
    assert_no_drops(&dp);
}

#[test]
fn local_policy_keeps_the_client_address_and_refuses_without_a_local_endpoint() {
    let (_pins, mut dp) = datapath("np-local-policy", &[local()]);
    // externalTrafficPolicy Local: the outside scope lists the local endpoint only, no SNAT.
    dp.upsert_service(&nodeport(&[active(local().ip, 8080)], false))
        .unwrap();
    let syn = arriving(&tcp_packet(OUTSIDE, 40003, NODE_IP, 30080, 1, 0, TCP_SYN, &[]));
    let s = seen(&dp.test_run_netdev(&syn).unwrap().frame);
    assert_eq!((s.src, s.dst), (OUTSIDE, local().ip));

    dp.upsert_service(&nodeport(&[], false)).unwrap();
    let syn = arriving(&tcp_packet(OUTSIDE, 40004, NODE_IP, 30080, 77, 0, TCP_SYN, &[]));
    let out = dp.test_run_netdev(&syn).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "the refusal goes back out of the uplink");
    let s = seen(&out.frame);
    assert_eq!((s.dst_mac, s.src_mac), (ROUTER_MAC, UPLINK_MAC), "Ethernet addresses swapped");
    assert_eq!((s.src, s.sport, s.dst, s.dport), (NODE_IP, 30080, OUTSIDE, 40004));
    assert_eq!((s.tcp_flags, s.ack), (TCP_RST | TCP_ACK, 78));
    assert_checksums(&out.frame);
    assert_eq!(counter(&dp, "service_no_backend"), 1);
}

#[test]
fn external_and_load_balancer_ips_are_translated_on_the_uplink() {
    let (_pins, mut dp) = datapath("extip", &[local()]);
    let b = [active(local().ip, 8443)];
    let mut ext = frontend(FrontendKind::ExternalIp, [203, 0, 113, 7], 443, Protocol::Udp, &b);
    ext.snat_remote = Some(Ipv4Addr::from(NODE_IP));
    let lb = frontend(FrontendKind::LoadBalancer, [198, 51, 100, 20], 443, Protocol::Udp, &b);
    dp.upsert_service(&service("shop", vec![ext, lb])).unwrap();
    for vip in [[203, 0, 113, 7], [198, 51, 100, 20]] {
        let f = arriving(&udp_packet(OUTSIDE, 40005, vip, 443, b"hello"));
        let out = dp.test_run_netdev(&f).unwrap();
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        let s = seen(&out.frame);
        assert_eq!((s.src, s.dst, s.dport), (OUTSIDE, local().ip, 8443));
        assert_checksums(&out.frame);
    }
    assert_no_drops(&dp);
}

#[test]
fn a_remote_backends_reply_to_a_local_pod_is_reverse_natted_on_the_uplink() {
    let client = pod(5);
    let vip = [10, 32, 0, 10];
    let (_pins, mut dp) = datapath("uplink-revnat", &[client]);
    dp.upsert_service(&clusterip("web", vip, 80, Protocol::Tcp, &[active(REMOTE, 8080)]))
        .unwrap();
    let syn = from_pod(&client, &tcp_packet(client.ip, 40006, vip, 80, 1, 0, TCP_SYN, &[]));
    let out = dp.test_run_from_pod(&syn).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK, "to the remote backend through forwarding");
    assert_eq!(seen(&out.frame).dst, REMOTE);

    // The reply comes back from the other node on the uplink, straight to the pod address.
    let reply = arriving(&tcp_packet(REMOTE, 8080, client.ip, 40006, 3, 2, TCP_SYN | TCP_ACK, &[]));
    let out = dp.test_run_netdev(&reply).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "delivered into the client pod");
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (vip, 80, client.ip, 40006));
    assert_eq!(s.dst_mac, client.ep.pod_mac);
    assert_checksums(&out.frame);
    assert_no_drops(&dp);
}

#[test]
fn uplink_traffic_that_is_neither_a_frontend_nor_a_reply_passes_unchanged() {
    let (_pins, mut dp) = datapath("uplink-other", &[local()]);
    dp.upsert_service(&nodeport(&[active(local().ip, 8080)], true))
        .unwrap();
    // To the node itself (ssh), and to a local pod directly (pod-to-pod across nodes).
    let ssh = arriving(&tcp_packet(OUTSIDE, 40007, NODE_IP, 22, 1, 0, TCP_SYN, &[]));
    let out = dp.test_run_netdev(&ssh).unwrap();
    assert_eq!((out.verdict, out.frame), (TC_ACT_OK, ssh));
    let direct = arriving(&tcp_packet(REMOTE, 40008, local().ip, 8080, 1, 0, TCP_SYN, &[]));
    let out = dp.test_run_netdev(&direct).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(out.frame[12..], direct[12..]);
    assert_no_drops(&dp);
}

#[test]
fn nodeport_replies_leave_through_the_uplink_not_the_stack() {
    // The stack drops a forwarded packet whose source is one of the node's own addresses (a
    // martian), and a reply reverse-NATed to a NodePort has exactly that source: with eBPF
    // host routing such replies are sent out of the uplink along the node's routes.
    const UPLINK: u32 = 3;
    let l = local();
    let (_pins, mut dp) = datapath("np-reply-out", &[l]);
    dp.set_settings(&DatapathSettings { uplink: Some(UPLINK), ..DatapathSettings::default() })
        .unwrap();
    dp.upsert_service(&nodeport(&[active(l.ip, 8080), active(REMOTE, 8080)], true))
        .unwrap();
    // Open a flow to each backend (the random choice is retried until both are seen).
    let mut remote_port = None;
    let mut local_port = None;
    for sport in 41000..41100u16 {
        let syn = arriving(&tcp_packet(OUTSIDE, sport, NODE_IP, 30080, 1, 0, TCP_SYN, &[]));
        let s = seen(&dp.test_run_netdev(&syn).unwrap().frame);
        match s.dst {
            d if d == l.ip => local_port = local_port.or(Some(sport)),
            _ => remote_port = remote_port.or(Some((sport, s.sport))),
        }
        if local_port.is_some() && remote_port.is_some() {
            break;
        }
    }
    let (local_port, (client_port, snat_port)) = (local_port.unwrap(), remote_port.unwrap());

    // The local backend's reply, from its veth: out of the uplink, from the NodePort.
    let reply = from_pod(&l, &tcp_packet(l.ip, 8080, OUTSIDE, local_port, 5, 2, TCP_SYN | TCP_ACK, &[]));
    let out = dp.test_run_from_pod(&reply).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "redirected to the uplink, not handed to the stack");
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (NODE_IP, 30080, OUTSIDE, local_port));
    assert_eq!(s.ttl, seen(&reply).ttl - 1, "a routed hop");
    assert_checksums(&out.frame);

    // The remote backend's reply arrives on the uplink and goes straight back out.
    let reply = arriving(&tcp_packet(REMOTE, 8080, NODE_IP, snat_port, 9, 2, TCP_SYN | TCP_ACK, &[]));
    let out = dp.test_run(Prog::FromNetdev.name(), &reply, 1).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (NODE_IP, 30080, OUTSIDE, client_port));
    assert_checksums(&out.frame);
    assert_no_drops(&dp);

    // Without a known uplink the stack gets it (what older agents wrote).
    dp.set_settings(&DatapathSettings::default()).unwrap();
    let again = from_pod(&l, &tcp_packet(l.ip, 8080, OUTSIDE, local_port, 6, 2, TCP_ACK, &[]));
    assert_eq!(dp.test_run_from_pod(&again).unwrap().verdict, TC_ACT_OK);
}
