//! The Node object: registration with status in the create (as kubelet does), the node Lease
//! renewed every 10 s, a periodic Ready heartbeat, and the wait for `spec.podCIDR`.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::status::now;
use super::Config;

pub const KUBELET_VERSION: &str = "v1.36.3";
/// `status.declaredFeatures` (sorted and unique, as validation demands).
pub const DECLARED_FEATURES: [&str; 1] = ["ExtendWebSocketsToKubelet"];
const LEASE_DURATION_SECONDS: i32 = 40;
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const STATUS_REPORT: Duration = Duration::from_secs(60);

fn capacity() -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({"cpu": cpus.to_string(), "memory": format!("{mem_kib}Ki"), "pods": "110", "ephemeral-storage": "10Gi"})
}

fn conditions(ts: &str) -> Value {
    let c = |kind: &str, status: &str, reason: &str, message: &str| json!({"type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": ts, "lastTransitionTime": ts});
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status (weft lab stand-in)"
        ),
    ])
}

/// The Node as kubelet registers it (status included in the create).
pub fn node_object(cfg: &Config) -> Value {
    let ts = now();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": cfg.node_name,
            "labels": {
                "kubernetes.io/hostname": cfg.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "beta.kubernetes.io/os": "linux",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": cfg.node_ip.to_string()},
                {"type": "Hostname", "address": cfg.node_name},
            ],
            "capacity": capacity(),
            "allocatable": capacity(),
            "conditions": conditions(&ts),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            // The kubelet API streams exec over WebSocket itself: the API server passes the
            // client's WebSocket through instead of translating it to SPDY (KEP-4006).
            "declaredFeatures": DECLARED_FEATURES,
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": kernel_version(),
                "osImage": "weft lab (Debian)",
                "containerRuntimeVersion": "lab://0.1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            },
        },
    })
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Creates the Node, or refreshes the status of an existing one (a restarted stand-in).
pub async fn register(nodes: &Api<Node>, cfg: &Config) -> Result<(), kube::Error> {
    let obj = node_object(cfg);
    let node: Node = serde_json::from_value(obj.clone()).expect("the Node literal is a valid Node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {
            tracing::info!(node = cfg.node_name, "node registered");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let labels = json!({"metadata": {"labels": obj["metadata"]["labels"]}});
            nodes
                .patch(
                    &cfg.node_name,
                    &PatchParams::default(),
                    &Patch::Strategic(&labels),
                )
                .await?;
            let status = json!({"status": obj["status"]});
            nodes
                .patch_status(
                    &cfg.node_name,
                    &PatchParams::default(),
                    &Patch::Strategic(&status),
                )
                .await?;
            tracing::info!(
                node = cfg.node_name,
                "node already registered; status refreshed"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Renews `kube-node-lease/<node>` (creating it if needed).
pub async fn renew_lease(
    leases: &Api<Lease>,
    node: &str,
    node_uid: Option<String>,
) -> Result<(), kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match leases.get_opt(node).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(node.to_string());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            leases.replace(node, &PostParams::default(), &lease).await?;
        }
        None => {
            let owner = node_uid.map(|uid| {
                vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node.to_string(),
                        uid,
                        ..Default::default()
                    },
                ]
            });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    namespace: Some("kube-node-lease".into()),
                    owner_references: owner,
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.to_string()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Refreshes the node conditions' heartbeat times.
pub async fn heartbeat(nodes: &Api<Node>, node: &str) -> Result<(), kube::Error> {
    let ts = now();
    let mut conds = conditions(&ts);
    // Only the heartbeat moves; the transition time stays where the apiserver has it.
    for c in conds.as_array_mut().expect("array") {
        c.as_object_mut()
            .expect("object")
            .remove("lastTransitionTime");
    }
    let body = json!({"status": {"conditions": conds}});
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Strategic(&body))
        .await?;
    Ok(())
}

/// Writes the CNI config template with the pod CIDR filled in; true if the file changed.
pub fn write_conf_template(
    conf_dir: &Path,
    template: &str,
    pod_cidr: &str,
) -> std::io::Result<bool> {
    let text = render_template(template, pod_cidr);
    let path = conf_dir.join("10-lab.conflist");
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    std::fs::create_dir_all(conf_dir)?;
    let tmp = conf_dir.join(".10-lab.conflist.tmp");
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}

/// containerd's `conf_template` substitution.
pub fn render_template(template: &str, pod_cidr: &str) -> String {
    template
        .replace("{{podCIDR}}", pod_cidr)
        .replace("{{.PodCIDR}}", pod_cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            node_name: "wl-node-1".into(),
            node_ip: "172.30.0.11".parse().unwrap(),
            kubeconfig: "/k".into(),
            state_dir: "/s".into(),
            cni_bin_dir: "/b".into(),
            cni_conf_dir: "/c".into(),
            cni_conf_template: None,
            host_root: None,
            cgroup: None,
            netns_prefix: "wl-n1-".into(),
            cluster_dns: "10.32.0.10".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            bin_paths: None,
            images: vec![],
            client_ca_file: None,
        }
    }

    #[test]
    fn node_object_is_a_valid_ready_node() {
        let v = node_object(&cfg());
        let node: Node = serde_json::from_value(v).unwrap();
        let status = node.status.unwrap();
        let addrs: Vec<(String, String)> = status
            .addresses
            .unwrap()
            .into_iter()
            .map(|a| (a.type_, a.address))
            .collect();
        assert_eq!(
            addrs,
            [
                ("InternalIP".to_string(), "172.30.0.11".to_string()),
                ("Hostname".into(), "wl-node-1".into())
            ]
        );
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(status.node_info.unwrap().kubelet_version, KUBELET_VERSION);
        assert_eq!(
            node.metadata.labels.unwrap()["kubernetes.io/hostname"],
            "wl-node-1"
        );
        assert!(status.capacity.unwrap().contains_key("pods"));
        // The API server passes exec WebSockets straight through only to nodes declaring this.
        assert_eq!(status.declared_features.unwrap(), ["ExtendWebSocketsToKubelet"]);
    }

    #[test]
    fn template_gets_the_pod_cidr() {
        let t = r#"{"ipam":{"ranges":[[{"subnet":"{{podCIDR}}"}]]}}"#;
        assert_eq!(
            render_template(t, "10.200.1.0/24"),
            r#"{"ipam":{"ranges":[[{"subnet":"10.200.1.0/24"}]]}}"#
        );
        let dir = crate::kubelet::testutil::tempdir("wk-node-tpl");
        assert!(write_conf_template(&dir, t, "10.200.1.0/24").unwrap());
        assert!(
            !write_conf_template(&dir, t, "10.200.1.0/24").unwrap(),
            "unchanged content is not rewritten"
        );
        assert!(std::fs::read_to_string(dir.join("10-lab.conflist"))
            .unwrap()
            .contains("10.200.1.0/24"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
