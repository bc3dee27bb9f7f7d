//! The control plane in the `wl-cp` namespace: etcd, kube-apiserver, kube-controller-manager
//! and kube-scheduler, with the lab's PKI and RBAC.

use std::time::Duration;

use crate::kubectl;
use crate::pki::PkiFiles;
use crate::procs;
use crate::spec::{
    APISERVER_PORT, CLUSTER_CIDR, CLUSTER_DOMAIN, CP_IP, CP_NS, NODE_CIDR_MASK, SERVICE_CIDR,
};
use crate::state::{LabRecord, StateDir};

/// Controllers kube-controller-manager runs: those the lab needs, named as v1.36 names them.
/// node-lifecycle-controller is needed: the TaintNodesByCondition admission plugin registers
/// every Node with the `node.kubernetes.io/not-ready:NoSchedule` taint and only that
/// controller lifts it once the node reports Ready (the kubelet stand-ins renew their leases).
/// taint-eviction-controller stays off: on a loaded 2-core machine a late heartbeat must not
/// evict the pods under test.
pub const CONTROLLERS: &[&str] = &[
    "node-ipam-controller",
    "node-lifecycle-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "endpoints-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    // The e2e Service tests run their backends as ReplicationControllers (e2erc.RunRC).
    "replicationcontroller-controller",
    "daemonset-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "service-cidr-controller",
    "ttl-controller",
];

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn p(path: std::path::PathBuf) -> String {
    path.to_string_lossy().into_owned()
}

pub fn etcd_args(state: &StateDir) -> Vec<String> {
    vec![
        s("--name=weft-lab"),
        format!("--data-dir={}", p(state.etcd_data())),
        s("--listen-client-urls=http://127.0.0.1:2379"),
        s("--advertise-client-urls=http://127.0.0.1:2379"),
        s("--listen-peer-urls=http://127.0.0.1:2380"),
        s("--initial-advertise-peer-urls=http://127.0.0.1:2380"),
        s("--initial-cluster=weft-lab=http://127.0.0.1:2380"),
        // A throwaway store on tmpfs: durability buys nothing here.
        s("--unsafe-no-fsync"),
        s("--log-level=warn"),
    ]
}

pub fn apiserver_args(state: &StateDir) -> Vec<String> {
    let f = PkiFiles::new(state);
    vec![
        s("--etcd-servers=http://127.0.0.1:2379"),
        format!("--advertise-address={CP_IP}"),
        s("--bind-address=0.0.0.0"),
        format!("--secure-port={APISERVER_PORT}"),
        format!("--tls-cert-file={}", p(f.cert("apiserver"))),
        format!("--tls-private-key-file={}", p(f.key("apiserver"))),
        format!("--client-ca-file={}", p(f.ca_cert())),
        s("--authorization-mode=Node,RBAC"),
        // ServiceAccount admission is on by default; NodeRestriction limits what nodes write.
        s("--enable-admission-plugins=NodeRestriction"),
        format!("--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}"),
        format!("--service-account-key-file={}", p(f.sa_pub())),
        format!("--service-account-signing-key-file={}", p(f.sa_key())),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        s("--allow-privileged=true"),
        // Reach kubelets (logs) by the InternalIP they register, as kubeadm sets it: node
        // names do not resolve in the lab.
        s("--kubelet-preferred-address-types=InternalIP,Hostname"),
        // The identity kubelets check before serving logs and exec.
        format!("--kubelet-client-certificate={}", p(f.cert(crate::pki::APISERVER_KUBELET_CLIENT))),
        format!("--kubelet-client-key={}", p(f.key(crate::pki::APISERVER_KUBELET_CLIENT))),
        s("--profiling=false"),
        s("--v=1"),
    ]
}

fn client_args(state: &StateDir, identity: &str) -> Vec<String> {
    let kc = p(state.kubeconfig(identity));
    vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        s("--leader-elect=false"),
        s("--bind-address=127.0.0.1"),
    ]
}

pub fn controller_manager_args(state: &StateDir) -> Vec<String> {
    let f = PkiFiles::new(state);
    let mut a = client_args(state, "kube-controller-manager");
    a.extend([
        format!("--controllers={}", CONTROLLERS.join(",")),
        s("--allocate-node-cidrs=true"),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        format!("--node-cidr-mask-size={NODE_CIDR_MASK}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--root-ca-file={}", p(f.ca_cert())),
        format!("--service-account-private-key-file={}", p(f.sa_key())),
        s("--use-service-account-credentials=true"),
        s("--v=1"),
    ]);
    a
}

pub fn scheduler_args(state: &StateDir) -> Vec<String> {
    let mut a = client_args(state, "kube-scheduler");
    a.push(s("--v=1"));
    a
}

/// Starts the four control-plane processes and waits until the API server is ready and the
/// controllers have made the `default` ServiceAccount (pods cannot be created before).
pub fn start(state: &StateDir, rec: &LabRecord) -> anyhow::Result<()> {
    let b = &rec.bins;
    std::fs::create_dir_all(state.etcd_data())?;
    eprintln!("  starting etcd");
    let etcd = procs::spawn(state, "etcd", CP_NS, &b.etcd, &etcd_args(state))?;
    eprintln!("  starting kube-apiserver on https://{CP_IP}:{APISERVER_PORT}");
    let api = procs::spawn(state, "kube-apiserver", CP_NS, &b.kube_apiserver, &apiserver_args(state))?;
    kubectl::wait_for("kube-apiserver /readyz", Duration::from_secs(120), || {
        procs::check_running(state, "etcd", etcd)?;
        procs::check_running(state, "kube-apiserver", api)?;
        Ok(kubectl::output(state, rec, &["get", "--raw", "/readyz"]).ok().filter(|o| o.trim() == "ok"))
    })?;
    eprintln!("  starting kube-controller-manager and kube-scheduler");
    let kcm = procs::spawn(
        state,
        "kube-controller-manager",
        CP_NS,
        &b.kube_controller_manager,
        &controller_manager_args(state),
    )?;
    let sched = procs::spawn(state, "kube-scheduler", CP_NS, &b.kube_scheduler, &scheduler_args(state))?;
    kubectl::wait_for("the default ServiceAccount", Duration::from_secs(90), || {
        procs::check_running(state, "kube-controller-manager", kcm)?;
        procs::check_running(state, "kube-scheduler", sched)?;
        Ok(kubectl::output(state, rec, &["get", "serviceaccount", "default", "-o", "name"]).ok())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_manager_runs_the_issue_controllers_and_allocates_pod_cidrs() {
        let a = controller_manager_args(&StateDir::at("/x")).join(" ");
        for c in ["node-ipam", "endpointslice", "serviceaccount", "serviceaccount-token",
                  "garbage-collector", "namespace", "deployment", "replicaset", "daemonset",
                  "replicationcontroller"] {
            assert!(CONTROLLERS.contains(&format!("{c}-controller").as_str()), "{c}");
        }
        assert!(a.contains("--cluster-cidr=10.200.0.0/16"));
        assert!(a.contains("--node-cidr-mask-size=24"));
        assert!(a.contains("--service-cluster-ip-range=10.32.0.0/24"));
        assert!(a.contains("--allocate-node-cidrs=true"));
    }

    #[test]
    fn apiserver_keeps_serviceaccount_admission_and_advertises_the_cp_address() {
        let a = apiserver_args(&StateDir::at("/x")).join(" ");
        assert!(!a.contains("disable-admission-plugins"));
        assert!(a.contains("--advertise-address=172.30.0.2"));
        assert!(a.contains("--authorization-mode=Node,RBAC"));
        assert!(a.contains("--service-account-signing-key-file=/x/pki/sa.key"));
        assert!(a.contains("--kubelet-client-certificate=/x/pki/apiserver-kubelet-client.crt"));
        assert!(a.contains("--kubelet-client-key=/x/pki/apiserver-kubelet-client.key"));
    }
}
