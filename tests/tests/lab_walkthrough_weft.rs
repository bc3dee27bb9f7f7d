//! The seeds' walkthrough with weft as the CNI (installed from `deploy/` as a DaemonSet) and
//! kube-proxy (iptables) for Services: the lab's overlay sets weft's host routing to `kernel`,
//! so every pod packet passes the node's netfilter where kube-proxy's NAT lives (a same-node
//! Service backend's reply is reverse-translated by conntrack like any other).

#[test]
fn seeds_walkthrough_runs_in_the_lab_with_weft_cni_and_kube_proxy_iptables() {
    weft_tests::walkthrough::run("/run/weft-lab-e2e-weft-kp", &["--nodes", "2", "--cni", "weft", "--proxy", "iptables"]);
}
