//! The same walkthrough with kube-proxy in nftables mode (2 nodes: the replicas still land on
//! different nodes, and the curl pod shares a node with one of them).

#[test]
fn seeds_walkthrough_runs_in_the_lab_with_bridge_and_kube_proxy_nftables() {
    weft_tests::walkthrough::run("/run/weft-lab-e2e-nft", &["--nodes", "2", "--cni", "bridge", "--proxy", "nftables"]);
}
