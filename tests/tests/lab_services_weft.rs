//! The Service suite against weft replacing kube-proxy (`--cni weft --proxy none`): the same
//! checks kube-proxy passes, through weft's eBPF Service translation.

use weft_tests::services::{run, Proxy};

#[test]
fn services_behave_as_users_expect_with_weft_replacing_kube_proxy() {
    run("/run/weft-lab-e2e-svc-weft", &["--nodes", "2", "--cni", "weft", "--proxy", "none"], Proxy::Weft);
}
