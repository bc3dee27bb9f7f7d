//! The routing reconciler, the VXLAN device and the egress table against a real kernel: a
//! node namespace with an uplink, the real pinned `NODE_ROUTES4`, rtnetlink and nft. Root only.

mod support;

use std::net::Ipv4Addr;

use support::bpf::{require_root_and_bpffs, PinDir};
use support::netns::Netns;
use weft::agent::options::RoutingMode;
use weft::datapath::{Datapath, NodeHop, NodeRoutes};
use weft::egress::{self, EgressSpec};
use weft::k8s::node::NodeInfo;
use weft::netlink::Netlink;
use weft::routing::kernel::NetlinkTable;
use weft::routing::overlay;
use weft::routing::Reconciler;

const ME: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 11);

/// A node namespace whose `eth0` (to a peer namespace) holds 172.30.0.11/24.
fn node() -> (Netns, Netns) {
    let node = Netns::unique("wrt", "node");
    let peer = Netns::unique("wrt", "peer");
    node.exec(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer.name]);
    node.exec(&["ip", "addr", "add", "172.30.0.11/24", "dev", "eth0"]);
    node.exec(&["ip", "link", "set", "eth0", "up"]);
    peer.exec(&["ip", "link", "set", "eth0", "up"]);
    (node, peer)
}

fn info(name: &str, cidr: &str, ip: [u8; 4]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        pod_cidrs: vec![cidr.parse().unwrap()],
        internal_ip: Some(ip.into()),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn native_routes_are_programmed_converged_and_only_weft_s_are_touched() {
    require_root_and_bpffs();
    let (ns, _peer) = node();
    let pins = PinDir::new("routing-native");
    let _dp = Datapath::open(pins.path()).expect("datapath");
    // A route someone else owns must survive every pass.
    ns.exec(&["ip", "route", "add", "10.99.0.0/24", "via", "172.30.0.1"]);
    let mut nodes = vec![
        info("node-1", "10.200.1.0/24", [172, 30, 0, 11]),
        info("node-2", "10.200.2.0/24", [172, 30, 0, 12]),
        info("node-3", "10.200.3.0/24", [172, 30, 0, 13]),
    ];
    let routes = |ns: &Netns| ns.exec(&["ip", "route", "show", "proto", "201"]);
    ns.run(|| {
        rt().block_on(async {
            let nl = std::sync::Arc::new(Netlink::connect(None).await.unwrap());
            let up = overlay::find_uplink(&nl, None, Some(ME)).await.unwrap();
            assert_eq!((up.name.as_str(), up.ip), ("eth0", ME));
            let map = NodeRoutes::open(pins.path()).unwrap();
            let mut r = Reconciler::new("node-1".into(), RoutingMode::Native, up.clone(), None, map, NetlinkTable::new(nl));
            let out = r.reconcile(&nodes).await.unwrap();
            assert_eq!((out.routes, out.written, out.removed), (2, 4, 0));
            let k = routes(&ns);
            assert!(k.contains("10.200.2.0/24 via 172.30.0.12 dev eth0"), "{k}");
            assert!(k.contains("10.200.3.0/24 via 172.30.0.13 dev eth0"), "{k}");
            let map = NodeRoutes::open(pins.path()).unwrap();
            assert_eq!(
                map.list().unwrap(),
                vec![
                    ("10.200.2.0/24".parse().unwrap(), NodeHop::Native { node_ip: Ipv4Addr::new(172, 30, 0, 12), uplink_ifindex: up.ifindex }),
                    ("10.200.3.0/24".parse().unwrap(), NodeHop::Native { node_ip: Ipv4Addr::new(172, 30, 0, 13), uplink_ifindex: up.ifindex }),
                ]
            );

            // Nothing changed: nothing written. A route deleted by hand comes back.
            assert_eq!(r.reconcile(&nodes).await.unwrap().written, 0);
            ns.exec(&["ip", "route", "del", "10.200.3.0/24"]);
            assert_eq!(r.reconcile(&nodes).await.unwrap().written, 1);

            // node-3 leaves.
            nodes.pop();
            let out = r.reconcile(&nodes).await.unwrap();
            assert_eq!((out.routes, out.removed), (1, 2));
            let k = routes(&ns);
            assert!(!k.contains("10.200.3.0/24"), "{k}");
            assert_eq!(NodeRoutes::open(pins.path()).unwrap().list().unwrap().len(), 1);
        })
    });
    let all = ns.exec(&["ip", "route"]);
    assert!(all.contains("10.99.0.0/24 via 172.30.0.1"), "a foreign route was touched:\n{all}");
}

#[test]
fn the_vxlan_device_is_collect_metadata_without_arp_and_carries_the_node_routes() {
    require_root_and_bpffs();
    let (ns, _peer) = node();
    let pins = PinDir::new("routing-vxlan");
    let _dp = Datapath::open(pins.path()).expect("datapath");
    let nodes = vec![info("node-2", "10.200.2.0/24", [172, 31, 2, 10])];
    ns.run(|| {
        rt().block_on(async {
            let nl = std::sync::Arc::new(Netlink::connect(None).await.unwrap());
            let idx = overlay::ensure_vxlan(&nl, 1450).await.unwrap();
            assert_eq!(overlay::ensure_vxlan(&nl, 1450).await.unwrap(), idx, "idempotent");
            let up = overlay::find_uplink(&nl, Some("eth0"), Some(ME)).await.unwrap();
            let map = NodeRoutes::open(pins.path()).unwrap();
            let mut r = Reconciler::new("node-1".into(), RoutingMode::Vxlan, up, Some(idx), map, NetlinkTable::new(nl.clone()));
            r.reconcile(&nodes).await.unwrap();
            // Another MTU means another device.
            let idx2 = overlay::ensure_vxlan(&nl, 1400).await.unwrap();
            assert_ne!(idx2, idx);
        })
    });
    let link = ns.exec(&["ip", "-d", "link", "show", overlay::VXLAN_DEVICE]);
    for want in ["NOARP", "mtu 1400", "external", "dstport 8472", "state UNKNOWN"] {
        assert!(link.contains(want), "`{want}` missing:\n{link}");
    }
    let map = NodeRoutes::open(pins.path()).unwrap();
    assert_eq!(map.list().unwrap()[0].1, NodeHop::Tunnel { node_ip: Ipv4Addr::new(172, 31, 2, 10) });
}

#[test]
fn the_egress_table_is_replaced_whole_and_removed_cleanly() {
    support::require_tools(&["nft"]);
    let (ns, _peer) = node();
    let spec = |nodes: Vec<Ipv4Addr>| EgressSpec {
        pod_cidr: "10.200.1.0/24".parse().unwrap(),
        cluster: vec!["10.200.0.0/16".parse().unwrap()],
        nodes,
    };
    ns.run(|| egress::apply(&spec(vec![ME, Ipv4Addr::new(172, 30, 0, 12)])).expect("nft"));
    let table = ns.exec(&["nft", "list", "table", "ip", egress::TABLE]);
    for want in [
        "type nat hook postrouting priority srcnat",
        "ip saddr 10.200.1.0/24 ip daddr != @cluster ip daddr != @nodes counter packets 0 bytes 0 masquerade",
        "elements = { 10.200.0.0/16 }",
        "172.30.0.12",
    ] {
        assert!(table.contains(want), "`{want}` missing:\n{table}");
    }
    ns.run(|| egress::apply(&spec(vec![ME, Ipv4Addr::new(172, 30, 0, 13)])).expect("nft"));
    let table = ns.exec(&["nft", "list", "table", "ip", egress::TABLE]);
    assert!(table.contains("172.30.0.13") && !table.contains("172.30.0.12"), "{table}");
    assert_eq!(table.matches("masquerade").count(), 1, "one rule after a second apply:\n{table}");
    ns.run(|| egress::remove().expect("nft delete"));
    ns.run(|| egress::remove().expect("removing twice is fine"));
    let (ok, _) = ns.try_exec(&["nft", "list", "table", "ip", egress::TABLE]);
    assert!(!ok, "the table is gone");
}
