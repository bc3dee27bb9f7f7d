//! The Service suite against kube-proxy in iptables mode with the reference bridge CNI: the
//! baseline of what users of kube-proxy expect.

use weft_tests::services::{run, Proxy};

#[test]
fn services_behave_as_users_expect_with_kube_proxy_iptables() {
    run("/run/weft-lab-e2e-svc-ipt", &["--nodes", "2", "--cni", "bridge", "--proxy", "iptables"], Proxy::KubeProxyIptables);
}
