//! The Service suite against kube-proxy in nftables mode with the reference bridge CNI.

use weft_tests::services::{run, Proxy};

#[test]
fn services_behave_as_users_expect_with_kube_proxy_nftables() {
    run("/run/weft-lab-e2e-svc-nft", &["--nodes", "2", "--cni", "bridge", "--proxy", "nftables"], Proxy::KubeProxyNftables);
}
