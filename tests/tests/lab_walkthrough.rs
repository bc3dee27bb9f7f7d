//! The seeds' walkthrough in a 3-node lab with the reference bridge CNI and kube-proxy in
//! iptables mode (the faithfulness check); prints the time of up, walkthrough, down.

#[test]
fn seeds_walkthrough_runs_in_the_lab_with_bridge_and_kube_proxy_iptables() {
    weft_tests::walkthrough::run("/run/weft-lab-e2e", &["--nodes", "3", "--cni", "bridge", "--proxy", "iptables"]);
}
