//! `weft uninstall` on a node netns: refused while the agent answers; once it is stopped,
//! everything the agent and the plugin made (pins, the pod-CIDR route, the pods' host veths
//! with their tc filters, the IPAM store, the CNI files) is removed and listed. Root only;
//! fails (not skips) without root, bpffs or `ip`.

mod support;

use support::node::{Node, WEFT};

#[test]
fn uninstall_waits_for_the_agent_to_go_then_removes_what_it_made() {
    let mut node = Node::start();
    let pod = node.pod(0);
    node.add("ctr-a", &pod).ip();
    let cni_bin = node.dir.0.join("cni-bin");
    let cni_conf = node.dir.0.join("cni-conf");
    std::fs::create_dir_all(&cni_bin).unwrap();
    std::fs::create_dir_all(&cni_conf).unwrap();
    std::fs::copy(WEFT, cni_bin.join("weft")).unwrap();
    std::fs::write(cni_conf.join("05-weft.conflist"), "{}").unwrap();
    std::fs::write(cni_conf.join("10-other.conflist"), "{}").unwrap();
    let uninstall = |node: &Node| {
        let mut cmd = node.in_node(WEFT);
        cmd.args(["uninstall", "-o", "json", "--socket"])
            .arg(node.socket())
            .arg("--pin-dir")
            .arg(&node.pin_dir)
            .arg("--state-dir")
            .arg(node.state_dir())
            .arg("--cni-bin-dir")
            .arg(&cni_bin)
            .arg("--cni-conf-dir")
            .arg(&cni_conf);
        cmd.output().expect("run weft uninstall")
    };
    let proto = |node: &Node| node.ns.exec(&["ip", "route", "show", "proto", "201"]);
    assert!(
        !proto(&node).trim().is_empty(),
        "the agent installed no proto 201 route"
    );
    assert!(!node.host_veths().is_empty() && node.pin_dir.exists());

    let refused = uninstall(&node);
    assert!(
        !refused.status.success(),
        "uninstall ran beside a live agent"
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("an agent answers"), "{said}");
    assert!(
        node.pin_dir.exists() && cni_bin.join("weft").exists(),
        "a refused uninstall removed something"
    );

    node.stop_agent();
    let done = uninstall(&node);
    assert!(
        done.status.success(),
        "weft uninstall: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let removed: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON output");
    let whats: Vec<&str> = removed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["what"].as_str())
        .collect();
    for want in [
        "cni config",
        "cni plugin",
        "pins",
        "route",
        "device",
        "ipam store",
    ] {
        assert!(whats.contains(&want), "no {want} removed: {removed:#}");
    }
    assert!(!node.pin_dir.exists(), "pins left");
    assert!(
        node.host_veths().is_empty(),
        "devices left: {:?}",
        node.host_veths()
    );
    assert!(
        proto(&node).trim().is_empty(),
        "routes left: {}",
        proto(&node)
    );
    assert!(!node.state_dir().exists(), "IPAM store left");
    assert!(!cni_bin.join("weft").exists() && !cni_conf.join("05-weft.conflist").exists());
    assert!(
        cni_conf.join("10-other.conflist").exists(),
        "another CNI's config was removed"
    );

    let again = uninstall(&node);
    assert!(
        again.status.success(),
        "a second uninstall: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        again,
        serde_json::json!([]),
        "nothing is left to remove the second time"
    );
}
