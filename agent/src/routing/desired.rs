//! Which pod CIDR belongs to which other node: a pure function of the Nodes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::k8s::node::NodeInfo;

/// The node that owns a pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    /// Its underlay address (InternalIP): next hop or tunnel end.
    pub ip: Ipv4Addr,
}

/// A Node that could not be routed, and why (logged by the reconciler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No IPv4 InternalIP yet (a node still registering).
    NoAddress { node: String },
    /// Its pod CIDR overlaps one already claimed by `by` (first by name wins).
    Overlap {
        node: String,
        cidr: Ipv4Network,
        by: String,
    },
}

/// Every other node's pod CIDRs and how to reach that node. Nodes are taken in name order so
/// the outcome of a conflict does not depend on list order; this node's own CIDRs are local.
pub fn desired(nodes: &[NodeInfo], me: &str) -> (BTreeMap<Ipv4Network, Peer>, Vec<Problem>) {
    let mut nodes: Vec<&NodeInfo> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut claimed: Vec<(Ipv4Network, &str)> = Vec::new();
    let mut routes = BTreeMap::new();
    let mut problems = Vec::new();
    // Claim this node's CIDRs first: another node overlapping them must not be routed away.
    for n in nodes.iter().filter(|n| n.name == me) {
        claimed.extend(n.pod_cidrs.iter().map(|c| (*c, n.name.as_str())));
    }
    for n in nodes.iter().filter(|n| n.name != me) {
        if n.pod_cidrs.is_empty() {
            continue; // no CIDR allocated yet: nothing to route
        }
        let Some(ip) = n.internal_ip else {
            problems.push(Problem::NoAddress {
                node: n.name.clone(),
            });
            continue;
        };
        for cidr in &n.pod_cidrs {
            if let Some((_, by)) = claimed.iter().find(|(c, _)| c.overlaps(*cidr)) {
                problems.push(Problem::Overlap {
                    node: n.name.clone(),
                    cidr: *cidr,
                    by: by.to_string(),
                });
                continue;
            }
            claimed.push((*cidr, n.name.as_str()));
            routes.insert(
                *cidr,
                Peer {
                    node: n.name.clone(),
                    ip,
                },
            );
        }
    }
    (routes, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidrs: &[&str], ip: Option<[u8; 4]>) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            pod_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            internal_ip: ip.map(Ipv4Addr::from),
        }
    }

    #[test]
    fn every_other_node_with_a_cidr_and_an_address_is_routed() {
        let nodes = [
            node("node-1", &["10.200.1.0/24"], Some([172, 30, 0, 11])),
            node("node-2", &["10.200.2.0/24"], Some([172, 30, 0, 12])),
            node("node-3", &["10.200.3.0/24"], None),
            node("node-4", &[], Some([172, 30, 0, 14])),
        ];
        let (routes, problems) = desired(&nodes, "node-1");
        assert_eq!(
            routes.into_iter().collect::<Vec<_>>(),
            vec![(
                "10.200.2.0/24".parse().unwrap(),
                Peer {
                    node: "node-2".into(),
                    ip: Ipv4Addr::new(172, 30, 0, 12)
                }
            )]
        );
        assert_eq!(problems, vec![Problem::NoAddress { node: "node-3".into() }]);
    }

    #[test]
    fn overlaps_go_to_the_first_name_and_never_over_this_node() {
        let nodes = [
            node("node-c", &["10.200.5.0/24"], Some([172, 30, 0, 3])),
            node("node-b", &["10.200.4.0/23"], Some([172, 30, 0, 2])),
            node("node-a", &["10.200.0.0/16"], Some([172, 30, 0, 1])),
            node("me", &["10.200.9.0/24"], Some([172, 30, 0, 9])),
        ];
        let (routes, problems) = desired(&nodes, "me");
        // node-a's /16 would swallow this node's own CIDR: refused. node-b comes before
        // node-c by name and keeps the /23 that node-c's /24 falls into.
        assert_eq!(
            routes.keys().copied().collect::<Vec<_>>(),
            vec!["10.200.4.0/23".parse::<Ipv4Network>().unwrap()]
        );
        assert_eq!(routes.values().next().unwrap().node, "node-b");
        assert_eq!(
            problems,
            vec![
                Problem::Overlap {
                    node: "node-a".into(),
                    cidr: "10.200.0.0/16".parse().unwrap(),
                    by: "me".into()
                },
                Problem::Overlap {
                    node: "node-c".into(),
                    cidr: "10.200.5.0/24".parse().unwrap(),
                    by: "node-b".into()
                },
            ]
        );
    }
}
