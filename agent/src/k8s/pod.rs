//! Which pods live on this node, as IPAM's reconcile needs them.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Pod;

use crate::api::PodRef;

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
