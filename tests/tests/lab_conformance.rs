//! Kubernetes' own network conformance tests (the 47 `Conformance && sig-network` tests of
//! v1.36, the set Cilium's and Calico's kube-proxy-replacement lanes run) against the lab:
//! with the reference parts (the bridge CNI and kube-proxy, in iptables and nftables mode),
//! with weft and kube-proxy, and with weft alone. Every one must pass in every configuration.
//! `--nocapture` shows the progress.

use weft_tests::conformance::{not_passed, run, NETWORK_CONFORMANCE_TESTS};

fn all_pass(state: &str, up_args: &[&str], report: &str) {
    // Kept after the test: JUnit, ginkgo's report and log, the summary.
    let summary = run(state, up_args, &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(report));
    assert_eq!(summary["counts"]["selected"], NETWORK_CONFORMANCE_TESTS, "{summary:#}");
    assert_eq!(summary["counts"]["passed"], NETWORK_CONFORMANCE_TESTS, "not passed: {:#?}", not_passed(&summary));
}

#[test]
fn network_conformance_passes_with_bridge_and_kube_proxy_iptables() {
    all_pass("/run/weft-lab-conf-ipt", &["--nodes", "3", "--cni", "bridge", "--proxy", "iptables"], "conformance-bridge-iptables");
}

#[test]
fn network_conformance_passes_with_bridge_and_kube_proxy_nftables() {
    all_pass("/run/weft-lab-conf-nft", &["--nodes", "3", "--cni", "bridge", "--proxy", "nftables"], "conformance-bridge-nftables");
}

/// weft as the CNI and the Service load balancer, no kube-proxy: the proof of kube-proxy
/// replacement. The same 47 must pass (HostPort through the `portmap` plugin the agent chains).
#[test]
fn network_conformance_passes_with_weft_and_no_kube_proxy() {
    all_pass("/run/weft-lab-conf-weft-kpr", &["--nodes", "3", "--cni", "weft", "--proxy", "none"], "conformance-weft-kpr");
}

/// weft as the CNI with kube-proxy (iptables) doing the Services.
#[test]
fn network_conformance_passes_with_weft_cni_and_kube_proxy_iptables() {
    all_pass("/run/weft-lab-conf-weft", &["--nodes", "3", "--cni", "weft", "--proxy", "iptables"], "conformance-weft-iptables");
}
