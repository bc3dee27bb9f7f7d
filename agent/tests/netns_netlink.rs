//! The netlink layer (`weft::netlink`) against the real kernel, in throw-away network
//! namespaces (root): veth pairs across namespaces, addresses, neighbours, main-table routes,
//! VXLAN devices and FDB entries. What it makes is observed with iproute2, independently.

mod support;

use std::net::Ipv4Addr;
use std::path::Path;

use ipnetwork::Ipv4Network;
use serde_json::Value;
use support::netns::{fmt_mac, Netns as TestNs};
use support::{require_root, require_tools, sh};
use weft::api::Mac;
use weft::netlink::{
    Blocking, FdbEntry, Neighbour, Netlink, Netns, Route, Veth, Vxlan, VxlanMode, MAIN_TABLE,
};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The `proto` number these tests tag their routes with.
const PROTO: u8 = 87;

fn preconditions() {
    require_root("netlink tests");
    require_tools(&["ip", "bridge"]);
}

fn open(ns: &TestNs) -> Netns {
    Netns::open(Path::new(&ns.path())).unwrap()
}

fn net(s: &str) -> Ipv4Network {
    s.parse().unwrap()
}

/// `ip -j -d link show dev NAME` in `ns`: the one link object.
fn ip_link(ns: &TestNs, name: &str) -> Value {
    ns.ip_json(&["-d", "link", "show", "dev", name])
        .pop()
        .unwrap_or_else(|| panic!("{name} not in {}", ns.name))
}

fn is_up(v: &Value) -> bool {
    v["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

/// A namespace with a veth pair `wnup0`/`wnup1` in it, both up, 192.0.2.1/24 on `wnup0`: an
/// "uplink" for routes and VXLAN. Returns the connection, wnup0's ifindex.
fn with_uplink(k: &Blocking, ns: &TestNs) -> (Netlink, u32) {
    let nl = k.connect(Some(&open(ns))).unwrap();
    let up0 = k
        .run(async {
            nl.add_veth(&Veth {
                name: "wnup0",
                peer: "wnup1",
                peer_netns: None,
                mtu: 1500,
            })
            .await?;
            let up0 = nl.link("wnup0").await?.unwrap();
            let up1 = nl.link("wnup1").await?.unwrap();
            nl.add_address(up0.index, net("192.0.2.1/24")).await?;
            nl.set_link_up(up0.index).await?;
            nl.set_link_up(up1.index).await?;
            Ok::<_, weft::netlink::NetlinkError>(up0.index)
        })
        .unwrap();
    (nl, up0)
}

/// The inode of the calling thread's network namespace.
fn my_netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

#[test]
fn veth_peer_is_born_in_the_other_namespace_and_links_are_managed_there() {
    preconditions();
    let (node, pod) = (TestNs::unique("wn", "node"), TestNs::unique("wn", "pod"));
    let before = my_netns();
    let k = Blocking::new().unwrap();
    let nl = k.connect(Some(&open(&node))).unwrap();
    assert_eq!(my_netns(), before, "connecting moved the calling thread");
    let pod_ns = open(&pod);
    let veth = Veth {
        name: "wnveth0",
        peer: "eth0",
        peer_netns: Some(&pod_ns),
        mtu: 1400,
    };
    k.run(nl.add_veth(&veth)).unwrap();
    assert!(node.links().contains(&"wnveth0".to_owned()));
    assert!(
        !node.links().contains(&"eth0".to_owned()),
        "peer created in the node"
    );
    assert!(
        pod.links().contains(&"eth0".to_owned()),
        "{:?}",
        pod.links()
    );
    for (ns, name) in [(&node, "wnveth0"), (&pod, "eth0")] {
        let v = ip_link(ns, name);
        assert_eq!(v["mtu"], 1400, "{v}");
        assert!(!is_up(&v), "{v}");
    }

    let link = k.run(nl.link("wnveth0")).unwrap().expect("link read back");
    let (ifindex, mac) = node.link("wnveth0");
    assert_eq!(
        (link.index, link.mac, link.mtu),
        (ifindex, Some(Mac(mac)), 1400)
    );
    assert_eq!((link.up, link.kind.as_deref()), (false, Some("veth")));
    assert_eq!(
        k.run(nl.link_by_index(ifindex)).unwrap(),
        Some(link.clone())
    );
    let again = k.run(nl.add_veth(&veth)).unwrap_err();
    assert!(again.is_exists(), "{again}");

    k.run(nl.set_link_up(ifindex)).unwrap();
    assert!(is_up(&ip_link(&node, "wnveth0")));
    k.run(nl.set_link_mtu(ifindex, 1300)).unwrap();
    assert_eq!(ip_link(&node, "wnveth0")["mtu"], 1300);
    k.run(nl.set_link_down(ifindex)).unwrap();
    assert!(!is_up(&ip_link(&node, "wnveth0")));
    let named: Vec<String> = k
        .run(nl.links_with_prefix("wnveth"))
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(named, ["wnveth0"]);

    assert!(k.run(nl.delete_link("wnveth0")).unwrap());
    assert_eq!(pod.links(), ["lo"], "the peer goes with its veth");
    assert!(!k.run(nl.delete_link("wnveth0")).unwrap(), "second delete");
    assert_eq!(k.run(nl.link("wnveth0")).unwrap(), None);
    assert_eq!(my_netns(), before);
}

#[test]
fn pod_side_address_permanent_neighbour_and_onlink_default_route() {
    preconditions();
    let (node, pod) = (TestNs::unique("wn", "node"), TestNs::unique("wn", "pod"));
    let k = Blocking::new().unwrap();
    let pod_ns = open(&pod);
    let (n, p) = (
        k.connect(Some(&open(&node))).unwrap(),
        k.connect(Some(&pod_ns)).unwrap(),
    );
    let ip = Ipv4Addr::new(10, 9, 0, 5);
    let (host, eth0) = k
        .run(async {
            n.add_veth(&Veth {
                name: "wnveth1",
                peer: "eth0",
                peer_netns: Some(&pod_ns),
                mtu: 1500,
            })
            .await?;
            let host = n.link("wnveth1").await?.unwrap();
            let eth0 = p.link("eth0").await?.unwrap();
            p.add_address(eth0.index, net("10.9.0.5/32")).await?;
            p.set_link_up(eth0.index).await?;
            p.replace_neighbour(eth0.index, GATEWAY, host.mac.unwrap())
                .await?;
            p.add_route(&Route::via(net("0.0.0.0/0"), GATEWAY, eth0.index).onlink())
                .await?;
            n.set_link_up(host.index).await?;
            n.replace_route(&Route::device(net("10.9.0.5/32"), host.index))
                .await?;
            Ok::<_, weft::netlink::NetlinkError>((host, eth0))
        })
        .unwrap();

    assert!(pod.addresses().contains(&"10.9.0.5/32".to_owned()));
    let routes = pod.exec(&["ip", "-4", "route", "show"]);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0 onlink"),
        "{routes}"
    );
    let neigh = pod.exec(&["ip", "neigh", "show", "169.254.1.1"]);
    let host_mac = fmt_mac(host.mac.unwrap().0);
    assert!(
        neigh.contains(&host_mac) && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    let node_routes = node.exec(&["ip", "-4", "route", "show"]);
    assert!(
        node_routes.contains("10.9.0.5 dev wnveth1 scope link"),
        "{node_routes}"
    );

    // Read back through netlink: what was written, field for field.
    assert_eq!(
        k.run(p.ipv4_addresses(eth0.index)).unwrap(),
        [net("10.9.0.5/32")]
    );
    let want = Neighbour {
        index: eth0.index,
        ip: GATEWAY,
        mac: host.mac,
        permanent: true,
    };
    assert_eq!(k.run(p.neighbours(Some(eth0.index))).unwrap(), [want]);
    let pod_routes = k.run(p.routes(MAIN_TABLE)).unwrap();
    assert!(
        pod_routes.contains(&Route::via(net("0.0.0.0/0"), GATEWAY, eth0.index).onlink()),
        "{pod_routes:?}"
    );

    // Replacing the neighbour changes its MAC; deletes report whether something went.
    k.run(p.replace_neighbour(eth0.index, GATEWAY, Mac([2, 0, 0, 0, 0, 9])))
        .unwrap();
    let neigh = pod.exec(&["ip", "neigh", "show", "169.254.1.1"]);
    assert!(neigh.contains("02:00:00:00:00:09"), "{neigh}");
    assert!(k.run(p.delete_neighbour(eth0.index, GATEWAY)).unwrap());
    assert!(!k.run(p.delete_neighbour(eth0.index, GATEWAY)).unwrap());
    assert_eq!(pod.exec(&["ip", "neigh", "show", "169.254.1.1"]).trim(), "");
    assert!(k
        .run(p.delete_address(eth0.index, net("10.9.0.5/32")))
        .unwrap());
    assert!(!k
        .run(p.delete_address(eth0.index, net("10.9.0.5/32")))
        .unwrap());
    assert!(!pod.addresses().contains(&format!("{ip}/32")));
}

#[test]
fn main_table_routes_are_added_replaced_listed_and_deleted() {
    preconditions();
    let ns = TestNs::unique("wn", "rt");
    let k = Blocking::new().unwrap();
    let (nl, up0) = with_uplink(&k, &ns);
    let show = |dst: &str| ns.exec(&["ip", "route", "show", dst]).trim().to_owned();
    let ours = || -> Vec<Route> {
        let mut r = k.run(nl.routes(MAIN_TABLE)).unwrap();
        r.retain(|r| r.protocol == PROTO);
        r
    };

    // A prefix via a gateway on the device (native routing to another node's pod CIDR).
    let gw = Route::via(net("10.201.2.0/24"), Ipv4Addr::new(192, 0, 2, 12), up0).protocol(PROTO);
    k.run(nl.add_route(&gw)).unwrap();
    assert_eq!(
        show("10.201.2.0/24"),
        "10.201.2.0/24 via 192.0.2.12 dev wnup0 proto 87"
    );
    let dup = k.run(nl.add_route(&gw)).unwrap_err();
    assert!(dup.is_exists(), "{dup}");
    let moved = Route {
        gateway: Some(Ipv4Addr::new(192, 0, 2, 13)),
        ..gw.clone()
    };
    k.run(nl.replace_route(&moved)).unwrap();
    assert_eq!(
        show("10.201.2.0/24"),
        "10.201.2.0/24 via 192.0.2.13 dev wnup0 proto 87"
    );

    // A prefix on the device with a source address, and a gateway no connected subnet covers
    // (an overlay's next hop), which needs `onlink`.
    let dev = Route::device(net("10.201.3.0/24"), up0)
        .src(Ipv4Addr::new(192, 0, 2, 1))
        .protocol(PROTO);
    k.run(nl.add_route(&dev)).unwrap();
    assert_eq!(
        show("10.201.3.0/24"),
        "10.201.3.0/24 dev wnup0 proto 87 scope link src 192.0.2.1"
    );
    let far = Route::via(net("10.201.4.0/24"), Ipv4Addr::new(10, 201, 4, 0), up0).protocol(PROTO);
    let refused = k.run(nl.add_route(&far)).unwrap_err();
    assert!(refused.errno().is_some(), "kernel must refuse: {refused}");
    let far = far.onlink();
    k.run(nl.add_route(&far)).unwrap();
    assert_eq!(
        show("10.201.4.0/24"),
        "10.201.4.0/24 via 10.201.4.0 dev wnup0 proto 87 onlink"
    );

    let mut listed = ours();
    listed.sort_by_key(|r| r.dst);
    assert_eq!(listed, [moved.clone(), dev.clone(), far.clone()]);

    // Another table stays apart from the main one.
    let other = Route::via(net("10.201.5.0/24"), Ipv4Addr::new(192, 0, 2, 12), up0)
        .protocol(PROTO)
        .table(100);
    k.run(nl.add_route(&other)).unwrap();
    assert_eq!(k.run(nl.routes(100)).unwrap(), std::slice::from_ref(&other));
    assert!(!ours().contains(&other));
    assert!(ns
        .exec(&["ip", "route", "show", "table", "100"])
        .contains("10.201.5.0/24 via 192.0.2.12"));

    for r in [&moved, &dev, &far, &other] {
        assert!(k.run(nl.delete_route(r)).unwrap(), "{r}");
        assert!(!k.run(nl.delete_route(r)).unwrap(), "second delete of {r}");
    }
    assert!(ours().is_empty());
    assert_eq!(show("10.201.0.0/16"), "");
}

#[test]
fn external_vxlan_device_is_created_read_back_and_deleted() {
    preconditions();
    let ns = TestNs::unique("wn", "vx");
    let k = Blocking::new().unwrap();
    let nl = k.connect(Some(&open(&ns))).unwrap();
    let want = Vxlan::external("wnvx0", 8472).mtu(1450);
    k.run(nl.add_vxlan(&want)).unwrap();
    let v = ip_link(&ns, "wnvx0");
    assert_eq!(v["mtu"], 1450, "{v}");
    let info = &v["linkinfo"];
    assert_eq!(info["info_kind"], "vxlan", "{v}");
    assert_eq!(info["info_data"]["external"], true, "{v}");
    assert_eq!(info["info_data"]["port"], 8472, "{v}");
    assert_eq!(info["info_data"]["learning"], false, "{v}");

    let (got, link) = k.run(nl.vxlan("wnvx0")).unwrap().expect("read back");
    assert_eq!(got, want);
    assert_eq!(link.kind.as_deref(), Some("vxlan"));
    let dup = k.run(nl.add_vxlan(&want)).unwrap_err();
    assert!(dup.is_exists(), "{dup}");
    assert_eq!(k.run(nl.vxlan("wnvx-none")).unwrap(), None);
    let not_vxlan = k.run(nl.vxlan("lo")).unwrap_err();
    assert!(not_vxlan.to_string().contains("lo is a"), "{not_vxlan}");

    k.run(nl.set_link_up(link.index)).unwrap();
    assert!(is_up(&ip_link(&ns, "wnvx0")));
    assert!(k.run(nl.delete_link("wnvx0")).unwrap());
    assert_eq!(ns.links(), ["lo"]);
}

#[test]
fn classic_vxlan_device_with_permanent_fdb_entries() {
    preconditions();
    let ns = TestNs::unique("wn", "fdb");
    let k = Blocking::new().unwrap();
    let (nl, up0) = with_uplink(&k, &ns);
    let want = Vxlan {
        name: "wnvx1".into(),
        mode: VxlanMode::Classic {
            vni: 42,
            local: Some(Ipv4Addr::new(192, 0, 2, 1)),
            dev: Some(up0),
            learning: false,
        },
        port: 4789,
        mtu: Some(1450),
    };
    k.run(nl.add_vxlan(&want)).unwrap();
    let data = ip_link(&ns, "wnvx1")["linkinfo"]["info_data"].clone();
    assert_eq!(
        (&data["id"], &data["local"], &data["link"], &data["port"]),
        (
            &Value::from(42),
            &Value::from("192.0.2.1"),
            &Value::from("wnup0"),
            &Value::from(4789)
        ),
        "{data}"
    );
    assert_eq!(data.get("external"), None, "{data}");
    let (got, vx) = k.run(nl.vxlan("wnvx1")).unwrap().unwrap();
    assert_eq!(got, want);

    let fdb_show = || -> Vec<(String, String, String)> {
        let out = sh(&[
            "bridge", "-n", &ns.name, "-j", "fdb", "show", "dev", "wnvx1",
        ]);
        let v: Vec<Value> = serde_json::from_str(&out).unwrap();
        let mut rows: Vec<_> = v
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (s("mac"), s("dst"), s("state"))
            })
            .collect();
        rows.sort();
        rows
    };
    let zero = Mac([0; 6]);
    let remote = |last: u8| Some(Ipv4Addr::new(192, 0, 2, last));
    let (flood12, flood13) = (
        FdbEntry::new(vx.index, zero, remote(12)),
        FdbEntry::new(vx.index, zero, remote(13)),
    );
    k.run(nl.append_fdb(&flood12)).unwrap();
    k.run(nl.append_fdb(&flood13)).unwrap();
    k.run(nl.append_fdb(&flood13)).unwrap(); // again: no second copy (checked below)
    let mac = Mac([2, 0, 0, 0, 0, 1]);
    k.run(nl.replace_fdb(&FdbEntry::new(vx.index, mac, remote(12))))
        .unwrap();
    let pinned = FdbEntry::new(vx.index, mac, remote(14));
    k.run(nl.replace_fdb(&pinned)).unwrap();
    let p = |mac: &str, dst: &str| (mac.to_owned(), dst.to_owned(), "permanent".to_owned());
    assert_eq!(
        fdb_show(),
        [
            p("00:00:00:00:00:00", "192.0.2.12"),
            p("00:00:00:00:00:00", "192.0.2.13"),
            p("02:00:00:00:00:01", "192.0.2.14"),
        ]
    );
    let mut listed = k.run(nl.fdb(vx.index)).unwrap();
    listed.sort_by_key(|e| (e.mac.0, e.dst));
    assert_eq!(listed, [flood12.clone(), flood13.clone(), pinned.clone()]);

    assert!(k.run(nl.delete_fdb(&flood12)).unwrap());
    assert!(k.run(nl.delete_fdb(&pinned)).unwrap());
    assert!(
        !k.run(nl.delete_fdb(&pinned)).unwrap(),
        "no entry for the MAC left"
    );
    assert_eq!(fdb_show(), [p("00:00:00:00:00:00", "192.0.2.13")]);
    assert!(k.run(nl.delete_link("wnvx1")).unwrap());
}

#[test]
fn a_prohibited_prefix_fails_senders_at_once() {
    preconditions();
    let ns = TestNs::unique("wn", "unr");
    let k = Blocking::new().unwrap();
    let (nl, _) = with_uplink(&k, &ns);
    // A node's own pod CIDR: addresses no pod holds are refused, not sent on.
    let r = Route::prohibit(net("10.201.7.0/24")).protocol(PROTO);
    k.run(nl.replace_route(&r)).unwrap();
    k.run(nl.replace_route(&r)).unwrap();
    assert_eq!(ns.exec(&["ip", "route", "show", "10.201.7.0/24"]).trim(), "prohibit 10.201.7.0/24 proto 87");
    let listed: Vec<Route> = k.run(nl.routes(MAIN_TABLE)).unwrap().into_iter().filter(|x| x.protocol == PROTO).collect();
    assert_eq!(listed, std::slice::from_ref(&r));
    // A local sender's connected UDP socket fails at once (EACCES); a forwarded packet gets
    // ICMP "administratively prohibited", the lab's Service suite checks that end.
    let out = ns.exec(&[
        "python3",
        "-c",
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         try:\n  s.connect(('10.201.7.5',90)); s.send(b'x'); print('sent')\n\
         except OSError as e: print(e.errno)",
    ]);
    assert_eq!(out.trim(), "13", "EACCES, got {out}");
    assert!(k.run(nl.delete_route(&r)).unwrap());
    assert_eq!(ns.exec(&["ip", "route", "show", "10.201.7.0/24"]).trim(), "");
}
