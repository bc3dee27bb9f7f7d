//! What the agent needs of a Node: its pod CIDR(s) and its underlay address.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Node;

/// A Node as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// IPv4 pod CIDRs (`spec.podCIDRs`, else `spec.podCIDR`); IPv6 ones are ignored.
    pub pod_cidrs: Vec<Ipv4Network>,
    /// The first IPv4 `InternalIP` in `status.addresses`.
    pub internal_ip: Option<Ipv4Addr>,
}

/// Read a Node; unparsable or IPv6 entries are skipped (a dual-stack Node still routes its
/// IPv4 half).
pub fn node_info(node: &Node) -> NodeInfo {
    let name = node.metadata.name.clone().unwrap_or_default();
    let spec = node.spec.as_ref();
    let mut raw: Vec<&str> = spec
        .and_then(|s| s.pod_cidrs.as_ref())
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    if raw.is_empty() {
        raw.extend(spec.and_then(|s| s.pod_cidr.as_deref()));
    }
    let pod_cidrs = raw
        .into_iter()
        .filter_map(|c| c.parse::<Ipv4Network>().ok())
        .map(crate::ipam::canonical)
        .collect();
    let internal_ip = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|addrs| {
            addrs
                .iter()
                .filter(|a| a.type_ == "InternalIP")
                .find_map(|a| a.address.parse::<Ipv4Addr>().ok())
        });
    NodeInfo {
        name,
        pod_cidrs,
        internal_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: serde_json::Value) -> Node {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_pod_cidrs_and_the_ipv4_internal_ip() {
        let n = node(serde_json::json!({
            "metadata": {"name": "node-2"},
            "spec": {"podCIDR": "10.200.2.0/24", "podCIDRs": ["10.200.2.0/24", "fd00:2::/64"]},
            "status": {"addresses": [
                {"type": "Hostname", "address": "node-2"},
                {"type": "InternalIP", "address": "fd00::12"},
                {"type": "InternalIP", "address": "172.30.0.12"}
            ]}
        }));
        assert_eq!(
            node_info(&n),
            NodeInfo {
                name: "node-2".into(),
                pod_cidrs: vec!["10.200.2.0/24".parse().unwrap()],
                internal_ip: Some(Ipv4Addr::new(172, 30, 0, 12)),
            }
        );
    }

    #[test]
    fn a_new_node_has_neither_yet_and_pod_cidr_alone_is_enough() {
        let n = node(serde_json::json!({"metadata": {"name": "fresh"}}));
        assert_eq!(node_info(&n).pod_cidrs, vec![]);
        assert_eq!(node_info(&n).internal_ip, None);
        let n = node(serde_json::json!({
            "metadata": {"name": "old"}, "spec": {"podCIDR": "10.200.7.9/24"}
        }));
        assert_eq!(node_info(&n).pod_cidrs, vec!["10.200.7.0/24".parse().unwrap()]);
    }
}
