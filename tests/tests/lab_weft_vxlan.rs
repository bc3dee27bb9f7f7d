//! weft in VXLAN mode on a routed topology: each node on its own subnet behind the switch as a
//! router, so pod addresses cannot be routed natively and only the tunnel carries them.

use std::time::Duration;

use weft_tests::lab::Lab;
use weft_tests::weft::*;

const STATE: &str = "/run/weft-lab-e2e-vxlan";

#[test]
fn vxlan_carries_pod_traffic_between_nodes_on_different_subnets() {
    let mut lab = Lab::new(STATE);
    lab.up(
        &["--nodes", "2", "--cni", "weft", "--proxy", "none", "--topology", "routed"],
        Duration::from_secs(120 * 60),
    );
    let nodes = nodes(&lab);
    assert!(nodes.iter().all(|(_, ip)| ip.starts_with("172.31.")), "routed node addresses: {nodes:?}");
    let pods = start_pods(&lab, &nodes, "");

    full_mesh(&lab, &pods);
    nodes_and_pods(&lab, &pods);
    traceroute_shows_both_nodes(&lab, &pods[0], &pods[1]);
    egress_is_masqueraded(&lab, &pods);

    // The tunnel's overhead is taken from the pods' MTU, so full-size packets fit: 1400-byte
    // pings and a TCP transfer of full-size segments cross it.
    let mtu = exec_ok(&lab, &pods[0].client, &["cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1450", "pod MTU = uplink 1500 - 50 of VXLAN");
    exec_ok(&lab, &pods[0].client, &["ping", "-c", "3", "-W", "2", "-s", "1400", &pods[1].server_ip]);
    let manifest = format!(
        "{}{}",
        pinned_pod("perf-srv", &pods[1].node, "networkstatic/iperf3", &[], &["-s"]),
        pinned_pod("perf-cli", &pods[0].node, "networkstatic/iperf3", &["sleep"], &["3600"]),
    );
    lab.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    lab.kubectl(&["wait", "--for=condition=Ready", "pod/perf-srv", "pod/perf-cli", "--timeout=120s"]);
    let srv = pod_ip(&lab, "perf-srv");
    let (ok, out) = lab.exec("default/perf-cli", &["iperf3", "-c", &srv, "-t", "3", "-J"], Duration::from_secs(120));
    let report = json(&out[out.find('{').unwrap_or(0)..]);
    assert!(ok, "iperf3 through the tunnel: {report:#}");
    // Full-size segments (MSS 1410 inside 1450) fill every interval; packets over the pod MTU
    // would stall the stream.
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received >= 20 << 20, "received {received} bytes in 3 s");
    for (i, iv) in report["intervals"].as_array().expect("intervals").iter().enumerate() {
        assert!(iv["sum"]["bytes"].as_u64().unwrap_or(0) > 0, "interval {i} carried nothing: {iv:#}");
    }

    for p in &pods {
        let st = weft_status(&lab, &p.node);
        let routes = st["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 1, "{st:#}");
        assert_eq!(routes[0]["via"], "vxlan");
        let link = lab.ok(&["node-exec", &p.node, "--", "ip", "-d", "link", "show", "weft_vxlan"], Duration::from_secs(30));
        assert!(link.contains("mtu 1450") && link.contains("external") && link.contains("NOARP"), "{link}");
    }

    let left = lab.down();
    assert!(left.is_empty(), "lab down left things behind: {left:#?}");
}
