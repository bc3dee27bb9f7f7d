//! The seeds' walkthrough with weft as the CNI and no kube-proxy at all: weft translates the
//! ClusterIPs (nginx's, kube-dns's for nslookup, and the `kubernetes` Service CoreDNS uses to
//! reach the API server) in eBPF, per connection at the socket and per packet in `from_pod`.

#[test]
fn seeds_walkthrough_runs_with_weft_replacing_kube_proxy() {
    weft_tests::walkthrough::run("/run/weft-lab-e2e-weft-kpr", &["--nodes", "2", "--cni", "weft", "--proxy", "none"]);
}
