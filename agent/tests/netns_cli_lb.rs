//! `weft service list` and `weft ct list` against a running agent: the CLI asks the agent over
//! its socket, the agent reads the pinned maps. The Service is programmed (and one flow
//! translated) through a second handle on the agent's pins, as the watchers will once the agent
//! runs them. Root only; fails (not skips) without root, bpffs or `ip`.

mod support;

use std::process::Command;

use serde_json::Value;
use support::bpf::TC_ACT_REDIRECT;
use support::frames::*;
use support::lb::{active, clusterip, from_pod, pod, tcp_packet};
use support::node::{Node, WEFT};
use weft::datapath::Datapath;
use weft::lb::Protocol;

fn weft(node: &Node, args: &[&str]) -> String {
    let out = Command::new(WEFT)
        .args(args)
        .arg("--socket")
        .arg(node.socket())
        .output()
        .expect("run weft");
    assert!(out.status.success(), "weft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(node: &Node, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&weft(node, &a)).expect("JSON output")
}

#[test]
fn service_and_ct_list_show_what_the_datapath_holds() {
    let node = Node::start();
    assert_eq!(json(&node, &["service", "list"]), serde_json::json!([]));
    assert_eq!(json(&node, &["ct", "list"]), serde_json::json!([]));

    let (client, backend) = (pod(5), pod(7));
    let mut dp = Datapath::open(&node.pin_dir).expect("a second handle on the agent's pins");
    for p in [client, backend] {
        dp.upsert_endpoint(p.ip.into(), &p.ep).unwrap();
    }
    dp.upsert_service(&clusterip("web", [10, 32, 0, 10], 80, Protocol::Tcp, &[active(backend.ip, 8080)]))
        .unwrap();
    dp.upsert_service(&clusterip("empty", [10, 32, 0, 11], 53, Protocol::Udp, &[]))
        .unwrap();
    let syn = from_pod(&client, &tcp_packet(client.ip, 40000, [10, 32, 0, 10], 80, 1, 0, TCP_SYN, &[]));
    assert_eq!(dp.test_run_from_pod(&syn).unwrap().verdict, TC_ACT_REDIRECT);

    let services = json(&node, &["service", "list"]);
    let list = services.as_array().unwrap();
    assert_eq!(list.len(), 2, "{services:#}");
    assert_eq!(list[0]["address"], "10.32.0.10");
    assert_eq!(list[0]["kind"], "ClusterIP");
    assert_eq!(list[0]["backends"][0]["address"], "10.200.0.7");
    assert_eq!(list[0]["backends"][0]["port"], 8080);
    assert_eq!(list[1]["backends"], serde_json::json!([]));

    let table = weft(&node, &["service", "list"]);
    assert!(table.contains("10.32.0.10:80/TCP") && table.contains("=> 10.200.0.7:8080"), "{table}");
    assert!(table.contains("10.32.0.11:53/UDP") && table.contains("(none: refused)"), "{table}");

    let ct = json(&node, &["ct", "list"]);
    let kinds: Vec<&str> = ct.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["service", "reply"], "{ct:#}");
    assert_eq!(ct[0]["nat_addr"], "10.200.0.7");
    let table = weft(&node, &["ct", "list"]);
    assert!(table.contains("10.200.0.5:40000") && table.contains("10.32.0.10:80"), "{table}");
}
