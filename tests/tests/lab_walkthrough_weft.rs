//! The same walkthrough with weft as the CNI (the lab runs `weft agent` per node) and
//! kube-proxy (iptables) for Services: weft's pod networking against the real cluster.
//!
//! Ignored for now: everything passes except same-node Service traffic through kube-proxy
//! (curl pod → ClusterIP → DNAT to an nginx on the same node gets no answer; cross-node
//! backends answer). The agent's `from_pod` redirects the reply straight to the local client
//! pod, so it never passes conntrack's reverse DNAT. Run it with `-- --ignored` once the agent
//! handles that (or once weft's own Service load balancing replaces kube-proxy here).

#[test]
#[ignore = "weft from_pod local redirect bypasses kube-proxy's reverse DNAT for same-node Service backends"]
fn seeds_walkthrough_runs_in_the_lab_with_weft_cni_and_kube_proxy_iptables() {
    weft_tests::walkthrough::run("/run/weft-lab-e2e-weft", &["--nodes", "2", "--cni", "weft", "--proxy", "iptables"]);
}
