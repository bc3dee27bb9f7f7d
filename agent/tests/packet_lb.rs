//! Service translation in `from_pod` (BPF_PROG_TEST_RUN against the real pinned maps,
//! programmed through the reconciler): DNAT to a backend, conntrack keeping a flow on its
//! backend, reverse NAT of replies, ClientIP affinity, refusal without backends, hairpin, UDP
//! flows leaving a removed backend, and exact checksums (recomputed here from the bytes).
//! Root only; fails (not skips) without root or bpffs.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use support::bpf::*;
use support::frames::*;
use support::lb::*;
use weft::lb::{BackendState, Protocol};

const VIP: [u8; 4] = [10, 32, 0, 10];
const HAIRPIN_SRC: [u8; 4] = [169, 254, 42, 1];

fn client() -> Pod {
    pod(5)
}
fn b1() -> Pod {
    pod(7)
}
fn b2() -> Pod {
    pod(8)
}

/// A datapath with the client and two backend pods, and `VIP:80/TCP` -> both on 8080.
fn two_backends(test: &str) -> (PinDir, weft::datapath::Datapath) {
    let (pins, mut dp) = datapath(test, &[client(), b1(), b2()]);
    dp.upsert_service(&clusterip(
        "web",
        VIP,
        80,
        Protocol::Tcp,
        &[active(b1().ip, 8080), active(b2().ip, 8080)],
    ))
    .expect("program the Service");
    (pins, dp)
}

fn syn(sport: u16) -> Vec<u8> {
    from_pod(&client(), &tcp_packet(client().ip, sport, VIP, 80, 1000, 0, TCP_SYN, &[]))
}

/// The pod whose IP is `ip` among the backends.
fn backend_pod(ip: [u8; 4]) -> Pod {
    [b1(), b2()]
        .into_iter()
        .find(|p| p.ip == ip)
        .unwrap_or_else(|| panic!("{ip:?} is not a backend"))
}

#[test]
fn clusterip_syn_is_dnatted_to_a_backend_with_exact_checksums() {
    let (_pins, dp) = two_backends("dnat");
    let frame = syn(40000);

    let out = dp.test_run_from_pod(&frame).expect("test run");

    assert_eq!(out.verdict, TC_ACT_REDIRECT, "delivered to the local backend pod");
    let s = seen(&out.frame);
    let b = backend_pod(s.dst);
    assert_eq!((s.src, s.sport), (client().ip, 40000), "source untouched");
    assert_eq!(s.dport, 8080, "destination port translated");
    assert_eq!((s.dst_mac, s.src_mac), (b.ep.pod_mac, b.ep.host_mac));
    assert_eq!(s.ttl, 64);
    assert_checksums(&out.frame);
    assert_eq!(out.frame.len(), frame.len());
    assert_no_drops(&dp);
}

#[test]
fn udp_is_dnatted_and_its_checksum_updated_or_left_zero() {
    let (_pins, mut dp) = datapath("udp", &[client(), b1()]);
    dp.upsert_service(&clusterip("dns", VIP, 53, Protocol::Udp, &[active(b1().ip, 5353)]))
        .unwrap();

    let with = from_pod(&client(), &udp_packet(client().ip, 40001, VIP, 53, b"query"));
    let out = dp.test_run_from_pod(&with).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.dst, s.dport), (b1().ip, 5353));
    assert_ne!(s.l4_csum, 0, "a real checksum stays a real checksum");
    assert_checksums(&out.frame);

    let without = from_pod(&client(), &udp0_packet(client().ip, 40002, VIP, 53, b"query"));
    let out = dp.test_run_from_pod(&without).unwrap();
    let s = seen(&out.frame);
    assert_eq!((s.dst, s.dport), (b1().ip, 5353));
    assert_eq!(s.l4_csum, 0, "a zero UDP checksum means none and must stay zero");
    assert_checksums(&out.frame);
    assert_no_drops(&dp);
}

#[test]
fn udp_checksum_that_would_become_zero_is_written_as_ffff() {
    // Find a payload whose translated checksum is exactly 0 (RFC 768: must be sent as 0xffff).
    let (_pins, mut dp) = datapath("udpffff", &[client(), b1()]);
    dp.upsert_service(&clusterip("dns", VIP, 53, Protocol::Udp, &[active(b1().ip, 53)]))
        .unwrap();
    let data = (0u16..=u16::MAX)
        .map(|w| w.to_be_bytes())
        .find(|d| {
            let u = udp(40003, 53, d);
            l4_checksum(client().ip, b1().ip, IPPROTO_UDP, &u) == 0
        })
        .expect("some 2-byte payload sums to zero");
    let frame = from_pod(&client(), &udp_packet(client().ip, 40003, VIP, 53, &data));
    let out = dp.test_run_from_pod(&frame).unwrap();
    let s = seen(&out.frame);
    assert_eq!(s.dst, b1().ip);
    assert_eq!(s.l4_csum, 0xffff);
    assert_checksums(&out.frame);
}

#[test]
fn an_established_flow_keeps_its_backend_and_new_flows_spread() {
    let (_pins, dp) = two_backends("spread");
    let first = seen(&dp.test_run_from_pod(&syn(41000)).unwrap().frame).dst;
    for seq in 1..20u32 {
        let ack = from_pod(
            &client(),
            &tcp_packet(client().ip, 41000, VIP, 80, 1000 + seq, 1, TCP_ACK, b"x"),
        );
        let out = dp.test_run_from_pod(&ack).unwrap();
        assert_eq!(seen(&out.frame).dst, first, "packet {seq} of the flow changed backend");
        assert_checksums(&out.frame);
    }
    let mut hits: BTreeMap<[u8; 4], usize> = BTreeMap::new();
    for sport in 42000..42064 {
        *hits.entry(seen(&dp.test_run_from_pod(&syn(sport)).unwrap().frame).dst).or_default() += 1;
    }
    // 64 flows over 2 backends: all on one would happen with probability 2^-63.
    assert_eq!(hits.len(), 2, "new flows all went to one backend: {hits:?}");
    assert_no_drops(&dp);
}

#[test]
fn the_backends_reply_is_reverse_natted_and_delivered_to_the_client() {
    let (_pins, dp) = two_backends("revnat");
    let out = dp.test_run_from_pod(&syn(43000)).unwrap();
    let b = backend_pod(seen(&out.frame).dst);

    let reply = from_pod(
        &b,
        &tcp_packet(b.ip, 8080, client().ip, 43000, 5000, 1001, TCP_SYN | TCP_ACK, &[]),
    );
    let out = dp.test_run_from_pod(&reply).unwrap();

    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport), (VIP, 80), "the reply comes from the ClusterIP");
    assert_eq!((s.dst, s.dport), (client().ip, 43000));
    assert_eq!((s.dst_mac, s.src_mac), (client().ep.pod_mac, client().ep.host_mac));
    assert_eq!((s.seq, s.ack, s.tcp_flags), (5000, 1001, TCP_SYN | TCP_ACK));
    assert_checksums(&out.frame);
    assert_no_drops(&dp);
}

/// A client port used again for a new connection while the old connection's service entry
/// still lives (closing) and its reply entry has gone: each direction refreshes its own entry,
/// at most once a second, so the two expire apart and the sweep takes one first. The new SYN
/// must open a new flow with both entries, or the backend's SYN-ACK finds no reverse NAT (the
/// lab saw this under load: one client port's handshakes unanswered again and again). A
/// retransmitted SYN of a live connection keeps its backend.
#[test]
fn a_new_connection_on_the_tuple_of_a_closed_one_gets_its_reverse_nat() {
    let (pins, dp) = two_backends("reopen");
    let first = seen(&dp.test_run_from_pod(&syn(43100)).unwrap().frame).dst;
    for _ in 0..8 {
        let again = seen(&dp.test_run_from_pod(&syn(43100)).unwrap().frame).dst;
        assert_eq!(again, first, "a retransmitted SYN changed backend");
    }
    let b = backend_pod(first);
    let fin = |from: &Pod, pkt: Vec<u8>| dp.test_run_from_pod(&from_pod(from, &pkt)).unwrap();
    fin(&client(), tcp_packet(client().ip, 43100, VIP, 80, 1001, 5001, TCP_FIN | TCP_ACK, &[]));
    fin(&b, tcp_packet(b.ip, 8080, client().ip, 43100, 5001, 1002, TCP_FIN | TCP_ACK, &[]));

    // The reply entry expires and is swept first.
    remove_the_reply_entry(&pins);

    // A new connection from the same port, and its backend's answer.
    let b = backend_pod(seen(&dp.test_run_from_pod(&syn(43100)).unwrap().frame).dst);
    assert_syn_ack_comes_from_the_vip(&dp, &b, 43100);
    assert_no_drops(&dp);
}

/// The SYN-ACK `b` sends to the client's `port` leaves from the ClusterIP, checksums exact.
fn assert_syn_ack_comes_from_the_vip(dp: &weft::datapath::Datapath, b: &Pod, port: u16) {
    let syn_ack = from_pod(
        b,
        &tcp_packet(b.ip, 8080, client().ip, port, 9000, 1001, TCP_SYN | TCP_ACK, &[]),
    );
    let out = dp.test_run_from_pod(&syn_ack).unwrap();
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport), (VIP, 80), "the SYN-ACK comes from the ClusterIP");
    assert_eq!((s.dst, s.dport), (client().ip, port));
    assert_checksums(&out.frame);
}

/// Delete the one reply entry in the pinned `CT4` (as expiry, eviction or a sweep would).
fn remove_the_reply_entry(pins: &PinDir) {
    use aya::maps::{HashMap, Map, MapData};
    use dataplane_common::ct::{Ct4Key, Ct4Value, CT4_KIND_REPLY};

    let data = MapData::from_pin(pins.path().join("CT4")).expect("open the pinned CT4");
    let mut ct: HashMap<_, Ct4Key, Ct4Value> = HashMap::try_from(Map::LruHashMap(data)).unwrap();
    let replies: Vec<Ct4Key> = ct
        .keys()
        .map(Result::unwrap)
        .filter(|k| k.kind == CT4_KIND_REPLY)
        .collect();
    assert_eq!(replies.len(), 1);
    ct.remove(&replies[0]).unwrap();
}

/// A live flow whose reply entry is gone while its service entry lives on (evicted, or taken
/// by a sweep racing a new flow on the same tuple; the lab saw the same state after a backend's
/// RST, and one client port's handshakes then went unanswered for minutes, since the service
/// entry of an open connection lives for hours). The next SYN keeps the flow's backend and
/// writes the reply entry again, so the SYN-ACK gets its reverse NAT.
#[test]
fn a_syn_on_a_flow_whose_reply_entry_is_gone_gets_it_back() {
    let (pins, dp) = two_backends("restore");
    let first = seen(&dp.test_run_from_pod(&syn(43300)).unwrap().frame).dst;
    remove_the_reply_entry(&pins);

    let again = seen(&dp.test_run_from_pod(&syn(43300)).unwrap().frame).dst;
    assert_eq!(again, first, "the flow kept its backend");
    let b = backend_pod(first);
    assert_syn_ack_comes_from_the_vip(&dp, &b, 43300);
    let restored = dp.lb_counters().unwrap().into_iter().find(|(n, _)| *n == "reply_restored");
    assert_eq!(restored, Some(("reply_restored", 1)));
    assert_no_drops(&dp);
}

/// A flow's first FIN or RST closes both its entries, whichever direction it came from. A
/// backend that refuses or aborts a connection sends the flow's last packet: had only the reply
/// entry noted it, the service entry would live on for hours after the reply entry expired, and
/// the next connection from that client port would go to this backend without reverse NAT.
#[test]
fn a_reset_from_either_side_closes_both_entries_of_the_flow() {
    use weft::api::CtEntry;

    let (_pins, dp) = two_backends("rst-closes");
    let closing = |port: u16| -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = dp
            .conntrack()
            .unwrap()
            .into_iter()
            .filter(|e: &CtEntry| e.sport == port || e.dport == port)
            .map(|e| (e.kind.clone(), e.flags.iter().any(|f| f == "closing")))
            .collect();
        v.sort();
        v
    };
    let both_open = vec![("reply".to_owned(), false), ("service".to_owned(), false)];
    let both_closing = vec![("reply".to_owned(), true), ("service".to_owned(), true)];

    // The backend refuses.
    let b = backend_pod(seen(&dp.test_run_from_pod(&syn(43400)).unwrap().frame).dst);
    assert_eq!(closing(43400), both_open);
    let rst = tcp_packet(b.ip, 8080, client().ip, 43400, 0, 1001, TCP_RST | TCP_ACK, &[]);
    let out = dp.test_run_from_pod(&from_pod(&b, &rst)).unwrap();
    assert_eq!(seen(&out.frame).src, VIP, "the reset is reverse-natted");
    assert_eq!(closing(43400), both_closing, "after the backend's reset");

    // The client aborts.
    let b = backend_pod(seen(&dp.test_run_from_pod(&syn(43401)).unwrap().frame).dst);
    let rst = tcp_packet(client().ip, 43401, VIP, 80, 1001, 0, TCP_RST, &[]);
    let out = dp.test_run_from_pod(&from_pod(&client(), &rst)).unwrap();
    assert_eq!(seen(&out.frame).dst, b.ip);
    assert_eq!(closing(43401), both_closing, "after the client's reset");
    assert_no_drops(&dp);
}

#[test]
fn traffic_of_other_flows_is_not_touched() {
    let (_pins, dp) = two_backends("untouched");
    dp.test_run_from_pod(&syn(44000)).unwrap();
    // The backend talks to the client from another port: not a reply of the Service flow.
    let b = b1();
    let other = from_pod(&b, &tcp_packet(b.ip, 9999, client().ip, 44000, 1, 0, TCP_SYN, &[]));
    let out = dp.test_run_from_pod(&other).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(out.frame[12..], other[12..], "only the MACs change on plain delivery");
    // A non-Service port on the ClusterIP goes to the stack unchanged.
    let off = from_pod(&client(), &tcp_packet(client().ip, 44001, VIP, 81, 1, 0, TCP_SYN, &[]));
    let out = dp.test_run_from_pod(&off).unwrap();
    assert_eq!((out.verdict, out.frame), (TC_ACT_OK, off));
    assert_no_drops(&dp);
}

#[test]
fn client_ip_affinity_holds_until_its_timeout() {
    let clients: Vec<Pod> = (20..28).map(pod).collect();
    let mut pods = clients.clone();
    pods.extend([b1(), b2(), pod(9)]);
    let (_pins, mut dp) = datapath("affinity", &pods);
    let mut svc = clusterip(
        "sticky",
        VIP,
        80,
        Protocol::Tcp,
        &[active(b1().ip, 8080), active(b2().ip, 8080), active(pod(9).ip, 8080)],
    );
    svc.frontends[0].affinity_timeout_s = Some(1);
    dp.upsert_service(&svc).unwrap();
    let new_flow = |c: &Pod, sport: u16| {
        let f = from_pod(c, &tcp_packet(c.ip, sport, VIP, 80, 1, 0, TCP_SYN, &[]));
        seen(&dp.test_run_from_pod(&f).unwrap().frame).dst
    };

    let chosen: Vec<[u8; 4]> = clients.iter().map(|c| new_flow(c, 45000)).collect();
    for (c, b) in clients.iter().zip(&chosen) {
        for sport in 45001..45006 {
            assert_eq!(new_flow(c, sport), *b, "client {:?} lost its backend", c.ip);
        }
    }
    let hits = dp.lb_counters().unwrap().into_iter().find(|(n, _)| *n == "affinity_hits");
    assert_eq!(hits, Some(("affinity_hits", 8 * 5)));
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let after: Vec<[u8; 4]> = clients.iter().map(|c| new_flow(c, 46000)).collect();
    // Each client now draws afresh among 3 backends: all 8 keeping theirs has p = 3^-8.
    assert_ne!(after, chosen, "affinity outlived its 1 s timeout");
    assert_no_drops(&dp);
}

#[test]
fn a_service_without_backends_answers_tcp_with_a_reset() {
    let (_pins, mut dp) = datapath("rst", &[client()]);
    dp.upsert_service(&clusterip("empty", VIP, 80, Protocol::Tcp, &[]))
        .unwrap();
    let frame = from_pod(
        &client(),
        &tcp_packet(client().ip, 47000, VIP, 80, 7777, 0, TCP_SYN, &[]),
    );

    let out = dp.test_run_from_pod(&frame).unwrap();

    assert_eq!(out.verdict, TC_ACT_REDIRECT, "the answer goes back into the client pod");
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport), (VIP, 80));
    assert_eq!((s.dst, s.dport), (client().ip, 47000));
    assert_eq!(s.tcp_flags, TCP_RST | TCP_ACK);
    assert_eq!((s.seq, s.ack), (0, 7778), "acknowledges the SYN");
    assert_eq!((s.dst_mac, s.src_mac), (client().ep.pod_mac, client().ep.host_mac));
    assert_eq!(out.frame.len(), 14 + 40);
    assert_checksums(&out.frame);
    assert_eq!(counter(&dp, "service_no_backend"), 1);

    // A segment with ACK set gets a RST whose sequence number is that ACK.
    let ack = from_pod(
        &client(),
        &tcp_packet(client().ip, 47001, VIP, 80, 1, 4242, TCP_ACK, b"data"),
    );
    let s = seen(&dp.test_run_from_pod(&ack).unwrap().frame);
    assert_eq!((s.tcp_flags, s.seq), (TCP_RST, 4242));
    // A RST is never answered.
    let rst = from_pod(
        &client(),
        &tcp_packet(client().ip, 47002, VIP, 80, 1, 0, TCP_RST, &[]),
    );
    assert_eq!(dp.test_run_from_pod(&rst).unwrap().verdict, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "service_no_backend"), 3);
}

#[test]
fn a_service_without_backends_answers_udp_with_icmp_port_unreachable() {
    let (_pins, mut dp) = datapath("icmp", &[client()]);
    dp.upsert_service(&clusterip("empty", VIP, 53, Protocol::Udp, &[]))
        .unwrap();
    let packet = udp_packet(client().ip, 48000, VIP, 53, b"a dns query, longer than 8 bytes");
    let frame = from_pod(&client(), &packet);

    let out = dp.test_run_from_pod(&frame).unwrap();

    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.src, s.dst, s.proto), (VIP, client().ip, IPPROTO_ICMP));
    assert_eq!((s.l4[0], s.l4[1]), (3, 3), "destination unreachable, port unreachable");
    assert_eq!(
        s.l4[8..],
        packet[..28],
        "quotes the original IPv4 header and the first 8 bytes after it"
    );
    assert_eq!(out.frame.len(), 14 + 20 + 8 + 28);
    assert_checksums(&out.frame);
    assert_eq!(counter(&dp, "service_no_backend"), 1);
}

#[test]
fn a_pod_reaches_itself_through_its_service_hairpin() {
    let (_pins, mut dp) = datapath("hairpin", &[client()]);
    dp.upsert_service(&clusterip("self", VIP, 80, Protocol::Tcp, &[active(client().ip, 8080)]))
        .unwrap();
    let c = client();

    let out = dp.test_run_from_pod(&syn(49000)).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.dst, s.dport), (c.ip, 8080), "to itself");
    assert_eq!(
        (s.src, s.sport),
        (HAIRPIN_SRC, 49000),
        "from the hairpin address: a pod drops packets from its own address"
    );
    assert_eq!(s.dst_mac, c.ep.pod_mac);
    assert_checksums(&out.frame);

    // The pod answers the hairpin address; the answer comes back from the ClusterIP.
    let reply = from_pod(
        &c,
        &tcp_packet(c.ip, 8080, HAIRPIN_SRC, 49000, 9, 1001, TCP_SYN | TCP_ACK, &[]),
    );
    let out = dp.test_run_from_pod(&reply).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 80, c.ip, 49000));
    assert_checksums(&out.frame);
    assert_no_drops(&dp);
}

#[test]
fn a_udp_flow_moves_when_its_backend_is_removed() {
    let (_pins, mut dp) = datapath("udpmove", &[client(), b1(), b2()]);
    let both = [active(b1().ip, 53), active(b2().ip, 53)];
    dp.upsert_service(&clusterip("dns", VIP, 53, Protocol::Udp, &both))
        .unwrap();
    let frame = from_pod(&client(), &udp_packet(client().ip, 50000, VIP, 53, b"q"));
    let first = seen(&dp.test_run_from_pod(&frame).unwrap().frame).dst;
    let other = if first == b1().ip { b2().ip } else { b1().ip };

    dp.upsert_service(&clusterip("dns", VIP, 53, Protocol::Udp, &[active(other, 53)]))
        .unwrap();

    let out = dp.test_run_from_pod(&frame).unwrap();
    assert_eq!(seen(&out.frame).dst, other, "the same UDP flow must not stick to a removed backend");
    assert_checksums(&out.frame);
    // And its replies come back from the ClusterIP.
    let b = backend_pod(other);
    let reply = from_pod(&b, &udp_packet(b.ip, 53, client().ip, 50000, b"a"));
    let s = seen(&dp.test_run_from_pod(&reply).unwrap().frame);
    assert_eq!((s.src, s.sport), (VIP, 53));
    assert_no_drops(&dp);
}

#[test]
fn a_backend_that_stops_serving_loses_its_udp_flows_but_keeps_its_tcp_flows() {
    let (_pins, mut dp) = datapath("notserving", &[client(), b1(), b2()]);
    let program = |dp: &mut weft::datapath::Datapath, state: BackendState| {
        for (name, proto) in [("u", Protocol::Udp), ("t", Protocol::Tcp)] {
            let port = if proto == Protocol::Udp { 53 } else { 80 };
            dp.upsert_service(&clusterip(
                name,
                VIP,
                port,
                proto,
                &[with_state(active(b1().ip, 8080), state), active(b2().ip, 8080)],
            ))
            .unwrap();
        }
    };
    program(&mut dp, BackendState::Active);
    // Find one flow of each protocol that went to b1.
    let udp_flow = (51000..51100)
        .map(|p| from_pod(&client(), &udp_packet(client().ip, p, VIP, 53, b"q")))
        .find(|f| seen(&dp.test_run_from_pod(f).unwrap().frame).dst == b1().ip)
        .expect("a UDP flow on b1");
    let tcp_flow = (52000..52100)
        .map(syn)
        .find(|f| seen(&dp.test_run_from_pod(f).unwrap().frame).dst == b1().ip)
        .expect("a TCP flow on b1");

    program(&mut dp, BackendState::NotServing);

    assert_eq!(seen(&dp.test_run_from_pod(&udp_flow).unwrap().frame).dst, b2().ip);
    assert_eq!(seen(&dp.test_run_from_pod(&tcp_flow).unwrap().frame).dst, b1().ip);
    for p in 53000..53032 {
        assert_eq!(seen(&dp.test_run_from_pod(&syn(p)).unwrap().frame).dst, b2().ip, "new flows avoid b1");
    }
}

#[test]
fn a_backend_set_change_keeps_established_flows_and_new_flows_see_only_the_new_set() {
    let (_pins, mut dp) = datapath("flip", &[client(), b1(), b2(), pod(9)]);
    dp.upsert_service(&clusterip("web", VIP, 80, Protocol::Tcp, &[active(b1().ip, 8080)]))
        .unwrap();
    let old_flow = syn(54000);
    assert_eq!(seen(&dp.test_run_from_pod(&old_flow).unwrap().frame).dst, b1().ip);

    // b1 drains (terminating, serving); b2 and pod 9 take new flows.
    let next = [
        with_state(active(b1().ip, 8080), BackendState::Draining),
        active(b2().ip, 8080),
        active(pod(9).ip, 8080),
    ];
    dp.upsert_service(&clusterip("web", VIP, 80, Protocol::Tcp, &next))
        .unwrap();

    assert_eq!(seen(&dp.test_run_from_pod(&old_flow).unwrap().frame).dst, b1().ip);
    let new: BTreeSet<[u8; 4]> = (54001..54041)
        .map(|p| seen(&dp.test_run_from_pod(&syn(p)).unwrap().frame).dst)
        .collect();
    assert_eq!(new, BTreeSet::from([b2().ip, pod(9).ip]));
    assert_no_drops(&dp);
}

#[test]
fn a_removed_service_is_no_longer_translated_and_late_replies_are_dropped() {
    let (_pins, mut dp) = two_backends("removed");
    let out = dp.test_run_from_pod(&syn(55000)).unwrap();
    let b = backend_pod(seen(&out.frame).dst);
    dp.delete_service(&weft::lb::ServiceName {
        namespace: "default".into(),
        name: "web".into(),
    })
    .unwrap();

    let again = syn(55001);
    let out = dp.test_run_from_pod(&again).unwrap();
    assert_eq!((out.verdict, &out.frame), (TC_ACT_OK, &again), "the ClusterIP is gone");
    let reply = from_pod(&b, &tcp_packet(b.ip, 8080, client().ip, 55000, 1, 1, TCP_ACK, &[]));
    assert_eq!(dp.test_run_from_pod(&reply).unwrap().verdict, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "revnat_missing"), 1);
}

#[test]
fn fragments_to_a_service_are_counted_drops() {
    let (_pins, dp) = two_backends("frag");
    let mut packet = tcp_packet(client().ip, 56000, VIP, 80, 1, 0, TCP_SYN, &[]);
    packet[6] |= 0x20; // more fragments
    packet[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&c.to_be_bytes());
    let out = dp.test_run_from_pod(&from_pod(&client(), &packet)).unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(counter(&dp, "frag_to_service"), 1);
}

#[test]
fn in_node_clients_of_an_external_traffic_policy_local_nodeport_use_every_endpoint() {
    use weft::lb::{FrontendKind, Scope};
    let node_ip = [192, 168, 50, 11];
    let remote = active([10, 200, 1, 9], 8080);
    let (_pins, mut dp) = datapath("scopes", &[client()]);
    let mut outside = frontend(FrontendKind::NodePort, node_ip, 30080, Protocol::Tcp, &[]);
    outside.two_scopes = true;
    let mut inside = frontend(FrontendKind::NodePort, node_ip, 30080, Protocol::Tcp, &[remote]);
    inside.frontend.scope = Scope::Internal;
    dp.upsert_service(&service("np", vec![outside, inside])).unwrap();

    let f = from_pod(&client(), &tcp_packet(client().ip, 57000, node_ip, 30080, 1, 0, TCP_SYN, &[]));
    let out = dp.test_run_from_pod(&f).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK, "a remote backend is left to forwarding");
    let s = seen(&out.frame);
    assert_eq!((s.dst, s.dport), ([10, 200, 1, 9], 8080));
    assert_eq!(s.src, client().ip, "in-node clients keep their address");
    assert_checksums(&out.frame);

    // The uplink sees the outside scope: no local endpoint, refused.
    let outside_client = [203, 0, 113, 10];
    let f = ethernet(
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        ETH_P_IP,
        &tcp_packet(outside_client, 57001, node_ip, 30080, 1, 0, TCP_SYN, &[]),
    );
    let out = dp.test_run_netdev(&f).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "answered out of the uplink");
    assert_eq!(seen(&out.frame).tcp_flags, TCP_RST | TCP_ACK);
    let _ = Ipv4Addr::from(node_ip);
}

#[test]
fn conntrack_and_metrics_show_both_entries_of_a_translated_flow() {
    let (pins, dp) = two_backends("ctlist");
    let out = dp.test_run_from_pod(&syn(58000)).unwrap();
    let b = seen(&out.frame).dst;
    let entries = dp.conntrack().unwrap();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let svc = entries.iter().find(|e| e.kind == "service").unwrap();
    assert_eq!(
        (svc.src, svc.sport, svc.dst, svc.dport, svc.nat_addr, svc.nat_port),
        (Ipv4Addr::from(client().ip), 58000, Ipv4Addr::from(VIP), 80, Ipv4Addr::from(b), 8080)
    );
    let reply = entries.iter().find(|e| e.kind == "reply").unwrap();
    assert_eq!((reply.src, reply.dst), (Ipv4Addr::from(b), Ipv4Addr::from(client().ip)));
    assert!(svc.expires_in_s > 21000, "a TCP flow lives 6 h: {svc:?}");
    assert_eq!(dp.conntrack_len().unwrap(), 2);
    let m = dp.lb_metrics().unwrap();
    assert_eq!(
        (m.services, m.frontends, m.backends, m.conntrack_entries),
        (1, 1, 2, 2),
        "{m:?}"
    );
    assert_eq!(m.conntrack_capacity, 131072);
    assert_eq!(m.counters[0], ("new_flows".to_owned(), 1));
    // What /metrics reads, from the pins alone.
    let f = weft::datapath::read_stats(pins.path()).unwrap();
    assert_eq!(f.service_path[0], ("new_flows", 1));
    assert!(f.maps.contains(&("CT4", 2, 131072)), "{:?}", f.maps);
}

#[test]
fn an_established_connection_that_lost_its_conntrack_entry_is_counted() {
    let (_pins, mut dp) = two_backends("ctmiss");
    dp.test_run_from_pod(&syn(59000)).unwrap();
    let ack = from_pod(&client(), &tcp_packet(client().ip, 59000, VIP, 80, 2, 1, TCP_ACK, b"x"));
    dp.test_run_from_pod(&ack).unwrap();
    let miss = |dp: &weft::datapath::Datapath| {
        dp.lb_counters().unwrap().into_iter().find(|(n, _)| *n == "ct_miss_established").unwrap().1
    };
    assert_eq!(miss(&dp), 0, "the entry was there");
    // What a full CT4 does to an idle connection: its entries are gone.
    assert_eq!(dp.conntrack_flush().unwrap(), 2);
    let out = dp.test_run_from_pod(&ack).unwrap();
    assert_eq!(miss(&dp), 1);
    assert!(
        [b1().ip, b2().ip].contains(&seen(&out.frame).dst),
        "it gets a backend afresh rather than being lost"
    );
    assert_eq!(dp.conntrack_len().unwrap(), 2);
}

#[test]
fn a_reply_the_stack_delivers_is_reverse_natted_on_its_way_into_the_pod() {
    // A flow whose reply comes back through the node's stack (its backend is outside the pod
    // network and the request was masqueraded): `to_pod`, on the veth's egress, translates it.
    let (_pins, dp) = two_backends("to-pod");
    let out = dp.test_run_from_pod(&syn(44000)).unwrap();
    let b = backend_pod(seen(&out.frame).dst);
    let reply = from_pod(
        &b,
        &tcp_packet(b.ip, 8080, client().ip, 44000, 5000, 1001, TCP_SYN | TCP_ACK, &[]),
    );
    let out = dp.test_run(weft::datapath::Prog::ToPod.name(), &reply, 1).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK, "the stack delivers it");
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport), (VIP, 80), "the pod sees the ClusterIP it contacted");
    assert_eq!((s.dst, s.dport), (client().ip, 44000));
    assert_checksums(&out.frame);
    // Traffic of no translated flow passes untouched.
    let other = from_pod(&b, &tcp_packet(b.ip, 9999, client().ip, 1234, 1, 1, TCP_ACK, &[]));
    let out = dp.test_run(weft::datapath::Prog::ToPod.name(), &other, 1).unwrap();
    assert_eq!((out.verdict, out.frame), (TC_ACT_OK, other));
    assert_no_drops(&dp);
}

/// The agent's periodic sweep removes what the datapath already treats as gone, by the same
/// lifetimes: 6 h for an idle TCP flow, 10 s once it closed. Everything else stays.
#[test]
fn the_conntrack_sweep_removes_expired_entries_and_keeps_live_ones() {
    use aya::maps::{HashMap, Map, MapData};
    use dataplane_common::ct::{Ct4Key, Ct4Value, CT4_F_CLOSING, CT4_KIND_SERVICE};
    use weft::datapath::conntrack_sweep_pinned;

    let (pins, dp) = two_backends("ctgc");
    // Three flows, two entries each.
    for sport in [58100, 58101, 58102] {
        dp.test_run_from_pod(&syn(sport)).unwrap();
    }
    assert_eq!(dp.conntrack_len().unwrap(), 6);
    assert_eq!(conntrack_sweep_pinned(pins.path()).unwrap(), 0, "nothing has expired yet");

    // Age the entries as silence would: 58100 idle for 6 h and a second; 58101 closed and
    // idle for 11 s; 58102 open and idle for 11 s (well within its 6 h).
    let data = MapData::from_pin(pins.path().join("CT4")).expect("open the pinned CT4");
    let mut ct: HashMap<_, Ct4Key, Ct4Value> = HashMap::try_from(Map::LruHashMap(data)).unwrap();
    let client_port = |k: &Ct4Key| u16::from_be(if k.kind == CT4_KIND_SERVICE { k.sport_be } else { k.dport_be });
    let entries: Vec<(Ct4Key, Ct4Value)> = ct.iter().map(Result::unwrap).collect();
    for (k, mut v) in entries {
        let (idle_s, closing) = match client_port(&k) {
            58100 => (6 * 3600 + 1, false),
            58101 => (11, true),
            58102 => (11, false),
            other => panic!("unexpected flow from port {other}"),
        };
        v.last_seen_ns = v.last_seen_ns.wrapping_sub(idle_s * 1_000_000_000);
        if closing {
            v.flags |= CT4_F_CLOSING;
        }
        ct.insert(k, v, 0).unwrap();
    }

    assert_eq!(conntrack_sweep_pinned(pins.path()).unwrap(), 4, "both entries of the two expired flows");
    let left: BTreeSet<(String, u16)> = ct
        .iter()
        .map(Result::unwrap)
        .map(|(k, _)| (if k.kind == CT4_KIND_SERVICE { "service" } else { "reply" }.to_owned(), client_port(&k)))
        .collect();
    assert_eq!(
        left,
        BTreeSet::from([("service".to_owned(), 58102), ("reply".to_owned(), 58102)]),
        "the open flow keeps both its entries"
    );
    assert_eq!(conntrack_sweep_pinned(pins.path()).unwrap(), 0, "a second sweep finds nothing more");
}

/// The sweep never removes an entry a new flow wrote under an expired one's key while the sweep
/// ran: a client reuses its ports within seconds, and a sweep that deleted by key could take the
/// new flow's reply entry (its backend's answers then get no reverse NAT). Here a writer gives
/// each of 4,000 expired keys one fresh entry while sweeps run; every key must survive.
#[test]
fn the_conntrack_sweep_keeps_entries_that_new_flows_wrote_while_it_ran() {
    use aya::maps::{HashMap, Map, MapData};
    use dataplane_common::ct::{Ct4Key, Ct4Value, CT4_F_CLOSING, CT4_KIND_REPLY};
    use weft::datapath::conntrack_sweep_pinned;

    let (pins, _dp) = two_backends("ctgc-race");
    let open = || -> HashMap<MapData, Ct4Key, Ct4Value> {
        let data = MapData::from_pin(pins.path().join("CT4")).expect("open the pinned CT4");
        HashMap::try_from(Map::LruHashMap(data)).unwrap()
    };
    let now_ns = || {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: plain syscall writing into `t`.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    };
    let keys: Vec<Ct4Key> = (0..4000u16)
        .map(|i| Ct4Key {
            saddr_be: b1().ip,
            daddr_be: [172, 30, 0, 11],
            sport_be: 8080u16.to_be(),
            dport_be: (20000 + i).to_be(),
            proto: 6,
            kind: CT4_KIND_REPLY,
            _pad: [0; 2],
        })
        .collect();
    for round in 0..5 {
        let mut ct = open();
        let closed = Ct4Value {
            last_seen_ns: now_ns() - 11_000_000_000,
            flags: CT4_F_CLOSING,
            ..Ct4Value::default()
        };
        for k in &keys {
            ct.insert(k, closed, 0).unwrap();
        }
        let writer = {
            let (keys, mut ct) = (keys.clone(), open());
            std::thread::spawn(move || {
                for k in keys.iter().rev() {
                    let fresh = Ct4Value { last_seen_ns: now_ns(), ..Ct4Value::default() };
                    ct.insert(k, fresh, 0).unwrap();
                    // Spread over many sweeps, as new flows arrive.
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            })
        };
        while !writer.is_finished() {
            conntrack_sweep_pinned(pins.path()).unwrap();
        }
        writer.join().unwrap();
        let lost = keys.iter().filter(|k| ct.get(k, 0).is_err()).count();
        assert_eq!(lost, 0, "round {round}: the sweep removed {lost} entries new flows had written");
    }
}

/// A local pod's address is never a frontend: `from_pod` looks the destination up in
/// `ENDPOINTS4` first and delivers to the pod without the Service step (docs/design.md, the
/// invariant plain pod traffic saves a lookup on). A frontend at a pod's address (an externalIP
/// set to it) is not applied to the node's pods.
#[test]
fn traffic_to_a_local_pod_skips_the_service_step() {
    let (_pins, mut dp) = two_backends("local-pod-not-frontend");
    // A frontend at b2's own address and port, pointing at b1.
    dp.upsert_service(&clusterip("odd", b2().ip, 80, Protocol::Tcp, &[active(b1().ip, 8080)]))
        .unwrap();
    let frame = from_pod(&client(), &tcp_packet(client().ip, 40001, b2().ip, 80, 1, 0, TCP_SYN, &[]));

    let out = dp.test_run_from_pod(&frame).expect("test run");

    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.dst, s.dport), (b2().ip, 80), "delivered to the pod as addressed");
    assert_eq!(s.dst_mac, b2().ep.pod_mac);
    assert_eq!(out.frame, {
        let mut f = frame.clone();
        f[..6].copy_from_slice(&b2().ep.pod_mac);
        f[6..12].copy_from_slice(&b2().ep.host_mac);
        f
    }, "nothing but the Ethernet header rewritten");
    assert_no_drops(&dp);
    // The Service step still runs for a frontend that is not a local pod.
    assert_eq!(seen(&dp.test_run_from_pod(&syn(40002)).unwrap().frame).dport, 8080);
}

/// An upgrade across a `CT4` layout change: a handshake whose SYN the build before translated
/// (its entries only in that build's map, `CT4_V2`, written after this build's first copy) and
/// whose SYN-ACK meets this build's program is reverse-NATted all the same: while the migration
/// runs a `CT4` miss looks in the other map and carries the entry over.
#[test]
fn a_reply_only_the_other_layouts_map_knows_is_reverse_natted_while_migrating() {
    use aya::maps::{HashMap, Map, MapData};
    use dataplane_common::{Ct4Key, Ct4Value};
    let (pins, dp) = two_backends("migrating");
    let b = backend_pod(seen(&dp.test_run_from_pod(&syn(43100)).unwrap().frame).dst);
    let ct_path = pins.path().join("CT4");
    let ours: HashMap<MapData, Ct4Key, Ct4Value> =
        HashMap::try_from(Map::LruHashMap(MapData::from_pin(&ct_path).unwrap())).unwrap();
    let flow: Vec<(Ct4Key, Ct4Value)> = ours.iter().map(Result::unwrap).collect();
    assert_eq!(flow.len(), 2, "the SYN made a service and a reply entry");
    drop((ours, dp));

    // The build before had its own map: this build starts with an empty `CT4` beside it.
    std::fs::remove_file(&ct_path).unwrap();
    let other_path = pins.path().join("CT4_V2");
    pin(&create_hash_map(BPF_MAP_TYPE_LRU_HASH, 16, 40, dataplane_common::maps::CT4_MAX_ENTRIES), &other_path);
    let mut dp = weft::datapath::Datapath::open(pins.path()).expect("reopen during the migration");
    let mut other: HashMap<MapData, Ct4Key, [u8; 40]> =
        HashMap::try_from(Map::LruHashMap(MapData::from_pin(&other_path).unwrap())).unwrap();
    for (k, v) in &flow {
        let mut bumped = [0u8; 40];
        // SAFETY: Ct4Value is plain `#[repr(C)]` data of 32 bytes without implicit padding.
        bumped[..32].copy_from_slice(&unsafe { std::mem::transmute::<Ct4Value, [u8; 32]>(*v) });
        other.insert(k, bumped, 0).unwrap();
    }
    assert!(dp.conntrack().unwrap().is_empty(), "this build's map has none of the flow yet");

    let reply = from_pod(&b, &tcp_packet(b.ip, 8080, client().ip, 43100, 5000, 1001, TCP_SYN | TCP_ACK, &[]));
    let out = dp.test_run_from_pod(&reply).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let s = seen(&out.frame);
    assert_eq!((s.src, s.sport), (VIP, 80), "the SYN-ACK comes from the ClusterIP");
    assert_eq!((s.dst, s.dport), (client().ip, 43100));
    assert_checksums(&out.frame);
    assert_eq!(dp.conntrack().unwrap().len(), 1, "the reply entry was carried into CT4");

    assert_eq!(dp.finish_migrations().unwrap(), vec!["CT4"]);
    assert!(!other_path.exists());
    assert_no_drops(&dp);
}
