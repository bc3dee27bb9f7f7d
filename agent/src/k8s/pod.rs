//! Pods as the agent keeps them (a slim type holding only what IPAM and NetworkPolicy read)
//! and which of them live on this node, as IPAM's reconcile needs them.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{ContainerPort, PodIP};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::ids::PodRef;

/// A pod as the agent keeps it: the API server's JSON deserialized straight into the fields
/// IPAM and NetworkPolicy read, so nothing else (images, env, volumes, conditions) is ever
/// allocated. Field names and shapes are `k8s_openapi::api::core::v1::Pod`'s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<Container>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    /// `Always` on an init container: a sidecar, which serves ports as containers do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs", skip_serializing_if = "Option::is_none")]
    pub pod_ips: Option<Vec<PodIP>>,
}

impl k8s_openapi::Resource for Pod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for Pod {
    const LIST_KIND: &'static str = "PodList";
}

impl k8s_openapi::Metadata for Pod {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Drop what the agent does not read but the slim type still holds: annotations (often large:
/// kubectl's last-applied copy), owner references, finalizers, managed fields, unnamed
/// container ports and init containers that are not sidecars.
pub fn trim(pod: &mut Pod) {
    let m = &mut pod.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.owner_references = None;
    m.finalizers = None;
    if let Some(spec) = &mut pod.spec {
        let named = |c: &mut Container| {
            if let Some(ps) = &mut c.ports {
                ps.retain(|p| p.name.is_some());
            }
        };
        spec.containers.iter_mut().for_each(named);
        if let Some(init) = &mut spec.init_containers {
            init.retain(|c| c.restart_policy.as_deref() == Some("Always"));
            init.iter_mut().for_each(named);
        }
    }
}

/// Whether `pod` is scheduled to node `node`.
pub fn on_node(pod: &Pod, node: &str) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
}

/// The pods that still hold a claim on an address: listed, not finished. A pod whose phase is
/// Succeeded or Failed has had its network torn down by the kubelet.
pub fn live_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> HashSet<PodRef> {
    pods.into_iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|p| {
            Some(PodRef {
                namespace: p.metadata.namespace.clone()?,
                name: p.metadata.name.clone()?,
                uid: p.metadata.uid.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_what_ipam_and_policy_read() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "x", "name": "a", "uid": "u", "labels": {"app": "web"},
                "annotations": {"big": "x"}, "managedFields": [{"manager": "m"}]},
            "spec": {"nodeName": "node-1", "hostNetwork": false,
                "containers": [{"name": "c", "image": "nginx", "env": [{"name": "E", "value": "v"}],
                    "ports": [{"name": "http", "containerPort": 80}, {"containerPort": 81}]}],
                "initContainers": [
                    {"name": "once", "image": "i", "ports": [{"name": "x", "containerPort": 1}]},
                    {"name": "side", "image": "i", "restartPolicy": "Always",
                        "ports": [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Running", "podIP": "10.200.1.5", "podIPs": [{"ip": "10.200.1.5"}],
                "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let before = crate::policy::PodInfo::from_pod(&pod);
        trim(&mut pod);
        assert_eq!(
            crate::policy::PodInfo::from_pod(&pod),
            before,
            "policy sees the same pod"
        );
        assert!(
            before.is_some_and(|p| p.named_ports.len() == 2),
            "http and the sidecar's metrics"
        );
        assert!(on_node(&pod, "node-1"));
        assert_eq!(pod.metadata.uid.as_deref(), Some("u"));
        assert_eq!(
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("web")
        );
        assert!(pod.metadata.annotations.is_none() && pod.metadata.managed_fields.is_none());
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.containers[0].ports.as_ref().unwrap().len(),
            1,
            "unnamed ports go"
        );
        assert_eq!(
            spec.init_containers.as_ref().unwrap().len(),
            1,
            "only sidecars stay"
        );
        // Nothing else was kept: the whole pod serializes back to these fields only.
        let back = serde_json::to_value(&pod).unwrap();
        assert!(
            back["spec"].get("volumes").is_none()
                && back["spec"]["containers"][0].get("image").is_none()
        );
        assert!(back["status"].get("conditions").is_none());
    }

    #[test]
    fn finished_pods_hold_no_claim() {
        let pods: Vec<Pod> = serde_json::from_value(serde_json::json!([
            {"metadata": {"namespace": "a", "name": "run", "uid": "u1"}, "status": {"phase": "Running"}},
            {"metadata": {"namespace": "a", "name": "new", "uid": "u2"}},
            {"metadata": {"namespace": "a", "name": "done", "uid": "u3"}, "status": {"phase": "Succeeded"}},
            {"metadata": {"namespace": "a", "name": "bad", "uid": "u4"}, "status": {"phase": "Failed"}}
        ]))
        .unwrap();
        let live = live_pods(&pods);
        let names: HashSet<_> = live.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, HashSet::from(["run", "new"]));
    }
}
