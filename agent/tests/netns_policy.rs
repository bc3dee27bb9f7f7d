//! NetworkPolicy on real veths: two pods and a node in network namespaces, wired like the CNI
//! plugin wires them, `from_pod` attached through the real `Datapath` API and the policy maps
//! written through `PolicyMaps`. Real TCP connections and pings show what the packet tests
//! show with crafted frames: an allowed port connects, its replies come back, a denied port
//! and ICMP do not get through, and lifting the isolation opens everything. Root only.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ipnetwork::Ipv4Network;
use support::bpf::*;
use support::netns::Netns;
use support::veth::{node_netns, register_and_attach, Pod};
use weft::datapath::{Datapath, PolicyEndpoint, PolicyMaps};
use weft::policy::{port_blocks, Direction, IpIdentity, PortMatch, Proto, RuleKey};

const CLIENT_ID: u32 = 300;
const SERVER_ID: u32 = 301;

struct Scene {
    _pins: PinDir,
    _node: Netns,
    client: Pod,
    server: Pod,
    dp: Datapath,
    maps: PolicyMaps,
}

fn scene(test: &str) -> Scene {
    let pins = PinDir::new(test);
    let node = node_netns();
    node.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]);
    let client = Pod::new(&node, "pc", "wdpc", "10.200.0.5");
    let server = Pod::new(&node, "ps", "wdps", "10.200.0.7");
    let mut dp = Datapath::open(pins.path()).expect("open datapath");
    register_and_attach(&mut dp, &node, &[&client, &server]);
    let mut maps = PolicyMaps::open(pins.path()).expect("policy maps");
    for (pod, id) in [(&client, CLIENT_ID), (&server, SERVER_ID)] {
        let net = Ipv4Network::new(pod.ip.parse().unwrap(), 32).unwrap();
        maps.set_identity(
            net,
            IpIdentity {
                label: id,
                prefix: 0,
            },
        )
        .unwrap();
    }
    Scene {
        _pins: pins,
        _node: node,
        client,
        server,
        dp,
        maps,
    }
}

/// Listen on `ports` in the server pod, then try a TCP connection to each from the client
/// pod (1 s timeout); which ones the client connected to (its SYN let in, the server's SYN-ACK
/// let back) and the server accepted with the client's byte sent.
fn connects(s: &Scene, ports: &[u16]) -> Vec<bool> {
    let ip: Ipv4Addr = s.server.ip.parse().unwrap();
    let listeners: Vec<TcpListener> = s.server.ns.run(|| {
        ports
            .iter()
            .map(|p| TcpListener::bind((ip, *p)).expect("listen in the server pod"))
            .collect()
    });
    for l in &listeners {
        l.set_nonblocking(true).unwrap();
    }
    let results = s.client.ns.run(|| {
        ports
            .iter()
            .map(|p| {
                let Ok(mut c) =
                    TcpStream::connect_timeout(&SocketAddr::from((ip, *p)), Duration::from_secs(1))
                else {
                    return false;
                };
                use std::io::Write;
                c.write_all(b"x").is_ok()
            })
            .collect::<Vec<bool>>()
    });
    results
        .iter()
        .zip(&listeners)
        .map(|(ok, l)| *ok && l.accept().is_ok())
        .collect()
}

#[test]
fn an_isolated_pod_takes_only_what_its_rules_allow_over_real_veths() {
    let mut s = scene("netns-policy");
    assert_eq!(
        connects(&s, &[8080, 8081]),
        [true, true],
        "no policy: both ports"
    );
    assert!(s.client.ping(&s.server.ip, 1), "no policy: ping");

    let ep = PolicyEndpoint {
        policy_id: 1,
        ingress_isolated: true,
        egress_isolated: false,
    };
    s.maps
        .set_endpoint(s.server.ip.parse().unwrap(), &ep)
        .unwrap();
    for b in port_blocks(8080, 8080) {
        let key = RuleKey {
            peer: CLIENT_ID,
            ports: PortMatch::Proto(Proto::Tcp, b),
        };
        s.maps.insert_rule(1, Direction::Ingress, &key).unwrap();
    }
    assert_eq!(
        connects(&s, &[8080, 8081]),
        [true, false],
        "only the allowed port"
    );
    assert!(!s.client.ping(&s.server.ip, 1), "ICMP has no rule");
    assert!(
        counter(&s.dp, "policy_denied_ingress") >= 2,
        "the denials are counted"
    );

    // The server pod's own connection back to the client is a new flow of its egress, which
    // is not isolated: it goes out, and the client (untracked) takes it.
    assert!(
        s.server.ping(&s.client.ip, 1),
        "egress of the server is not isolated"
    );

    s.maps
        .remove_endpoint(s.server.ip.parse().unwrap())
        .unwrap();
    assert_eq!(
        connects(&s, &[8080, 8081]),
        [true, true],
        "untracked again: both ports"
    );
}
