//! Pods as the agent keeps them (trimmed to what IPAM and NetworkPolicy read) and which of
//! them live on this node, as IPAM's reconcile needs them.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec, PodStatus};

use crate::ids::PodRef;

/// Keep only what the agent reads of a pod: name, namespace, UID and labels; the node, the
/// host-network flag and the containers' (and sidecars') named ports; phase and addresses.
/// Everything else (annotations, env, volumes, images, conditions) goes, so the cluster's pods
/// cost a few hundred bytes each in the agent rather than several kilobytes.
pub fn trim(pod: &mut Pod) {
    let m = &mut pod.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.owner_references = None;
    m.finalizers = None;
    let ports = |cs: &[Container], sidecars_only: bool| -> Vec<Container> {
        cs.iter()
            .filter(|c| !sidecars_only || c.restart_policy.as_deref() == Some("Always"))
            .map(|c| Container {
                name: c.name.clone(),
                restart_policy: c.restart_policy.clone(),
                ports: c.ports.as_ref().map(|ps| {
                    ps.iter()
                        .filter(|p| p.name.is_some())
                        .map(|p| ContainerPort {
                            name: p.name.clone(),
                            container_port: p.container_port,
                            protocol: p.protocol.clone(),
                            ..ContainerPort::default()
                        })
                        .collect()
                }),
                ..Container::default()
            })
            .collect()
    };
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            node_name: spec.node_name,
            host_network: spec.host_network,
            containers: ports(&spec.containers, false),
            init_containers: spec.init_containers.as_deref().map(|cs| ports(cs, true)),
            ..PodSpec::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            pod_ip: status.pod_ip,
            pod_ips: status.pod_ips,
            ..PodStatus::default()
        });
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
        assert_eq!(crate::policy::PodInfo::from_pod(&pod), before, "policy sees the same pod");
        assert!(on_node(&pod, "node-1"));
        assert_eq!(pod.metadata.uid.as_deref(), Some("u"));
        assert!(pod.metadata.annotations.is_none() && pod.metadata.managed_fields.is_none());
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none());
        assert_eq!(spec.containers[0].image, None);
        assert_eq!(spec.containers[0].ports.as_ref().unwrap().len(), 1, "unnamed ports go");
        assert_eq!(spec.init_containers.as_ref().unwrap().len(), 1, "only sidecars stay");
        assert!(pod.status.as_ref().unwrap().conditions.is_none());
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
