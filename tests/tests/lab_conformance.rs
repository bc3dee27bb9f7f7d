//! Kubernetes' own network conformance tests (the 47 `Conformance && sig-network` tests of
//! v1.36, the set Cilium's and Calico's kube-proxy-replacement lanes run) against the lab:
//! with the reference parts (the bridge CNI and kube-proxy, in iptables and nftables mode),
//! with weft and kube-proxy, and with weft alone. Every one must pass in every configuration.
//! Kubernetes' NetworkPolicy suite runs with weft and against the reference engine
//! (kube-router beside the bridge plugin). `--nocapture` shows the progress.

use weft_tests::conformance::{not_passed, run, run_with, NETWORK_CONFORMANCE_TESTS};

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

/// Kubernetes' NetworkPolicy suite (`--suite netpol`: the 48 `Netpol` specs and the 2 `Netpol
/// API` specs of v1.36) with weft and no kube-proxy: every IPv4 TCP and UDP spec passes,
/// ipBlock and except included (the three Cilium's lane skips). The 3 SCTP-connectivity specs
/// are skipped because this kernel has no SCTP; the two specs about SCTP rules probe over TCP
/// and run.
#[test]
fn network_policy_suite_passes_with_weft_and_no_kube_proxy() {
    netpol_suite_passes("/run/weft-lab-netpol-weft", &["--nodes", "3", "--cni", "weft", "--proxy", "none"], "netpol-weft-kpr");
}

/// `--suite netpol` in a lab brought up with `up_args`: 50 selected, the 3 SCTP-connectivity
/// specs skipped (no SCTP in this kernel), every other one passed.
fn netpol_suite_passes(state: &str, up_args: &[&str], report: &str) {
    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(report);
    let summary = run_with(state, up_args, &report, &["--suite", "netpol"]);
    let counts = &summary["counts"];
    assert_eq!(counts["selected"], 50, "{summary:#}");
    assert_eq!(counts["skipped"], 3, "only the SCTP-connectivity specs are skipped: {summary:#}");
    assert_eq!(counts["passed"], 47, "not passed: {:#?}", not_passed(&summary));
    let skipped: Vec<&str> = summary["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] == "skipped")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(skipped.iter().all(|n| n.contains("[Feature:SCTPConnectivity]")), "{skipped:#?}");
}

/// weft as the CNI with kube-proxy (iptables) doing the Services.
#[test]
fn network_conformance_passes_with_weft_cni_and_kube_proxy_iptables() {
    all_pass("/run/weft-lab-conf-weft", &["--nodes", "3", "--cni", "weft", "--proxy", "iptables"], "conformance-weft-iptables");
}

/// The same NetworkPolicy suite against the reference: the bridge plugin, kube-proxy
/// (iptables) and kube-router v2.1.0's firewall controller (`--netpol kube-router`), the
/// column docs/conformance.md compares weft with. The counts are what kube-router does here,
/// so a change (a spec that stops passing, a skip that appears) is noticed.
#[test]
fn network_policy_suite_runs_against_kube_router() {
    // Observed: kube-router v2.1.0 passes every spec the lab runs, as weft does (recorded per
    // spec in docs/conformance.md). A spec that starts failing is a regression of the lab.
    netpol_suite_passes(
        "/run/weft-lab-netpol-kr",
        &["--nodes", "3", "--cni", "bridge", "--proxy", "iptables", "--netpol", "kube-router"],
        "netpol-kube-router",
    );
}
