//! Pod egress masquerade: traffic from this node's pods to anything that is neither a pod
//! nor a node leaves with the node's address. One nftables table, `ip weft`, owned entirely by
//! weft and replaced in one transaction (nft applies a batch atomically), so packets never see
//! a half-written rule set.
//!
//! Why nftables and not eBPF SNAT: the reply path of a masqueraded flow needs connection
//! tracking and port allocation; the kernel's conntrack already does both, costs nothing on
//! pod-to-pod traffic (which never reaches netfilter when eBPF host routing is on), and is
//! what a node's operator can inspect with `nft list table ip weft`.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use nftables::schema::Nftables;
use serde_json::{json, Value};

/// nftables family and table name weft owns.
pub const TABLE: &str = "weft";

/// What the masquerade rule needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressSpec {
    /// This node's pod CIDR: the sources to masquerade.
    pub pod_cidr: Ipv4Network,
    /// The pod network (the cluster CIDR, or every node's pod CIDR): never masqueraded to.
    pub cluster: Vec<Ipv4Network>,
    /// Every node's address: pod-to-node traffic keeps the pod's address too.
    pub nodes: Vec<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("nft: {0}")]
    Nft(#[from] nftables::helper::NftablesError),
    #[error("the generated rule set does not fit nftables' JSON schema: {0}")]
    Schema(#[from] serde_json::Error),
}

/// Prefixes with every one contained in another dropped (an interval set refuses overlaps).
fn outermost(mut nets: Vec<Ipv4Network>) -> Vec<Ipv4Network> {
    nets.sort_by_key(|n| (n.prefix(), n.network()));
    let mut out: Vec<Ipv4Network> = Vec::new();
    for n in nets {
        if !out.iter().any(|o| o.contains(n.network()) && o.prefix() <= n.prefix()) {
            out.push(n);
        }
    }
    out.sort_by_key(|n| n.network());
    out
}

/// The batch that makes `table ip weft` exactly `spec`.
pub fn ruleset(spec: &EgressSpec) -> Value {
    let table = json!({"family": "ip", "name": TABLE});
    let cluster: Vec<Value> = outermost(spec.cluster.clone())
        .iter()
        .map(|n| json!({"prefix": {"addr": n.network().to_string(), "len": n.prefix()}}))
        .collect();
    let mut nodes: Vec<Ipv4Addr> = spec.nodes.clone();
    nodes.sort();
    nodes.dedup();
    let nodes: Vec<Value> = nodes.iter().map(|ip| json!(ip.to_string())).collect();
    let cluster_set =
        json!({"family": "ip", "table": TABLE, "name": "cluster", "type": "ipv4_addr", "flags": ["interval"]});
    let nodes_set = json!({"family": "ip", "table": TABLE, "name": "nodes", "type": "ipv4_addr"});
    let mut cmds = vec![
        json!({"add": {"table": table}}),
        // Empties every chain of the table (not its sets), inside the same transaction.
        json!({"flush": {"table": table}}),
        json!({"add": {"set": cluster_set}}),
        json!({"add": {"set": nodes_set}}),
        // Sets keep their elements through a table flush: empty them explicitly.
        json!({"flush": {"set": cluster_set}}),
        json!({"flush": {"set": nodes_set}}),
    ];
    if !cluster.is_empty() {
        cmds.push(json!({"add": {"element": {"family": "ip", "table": TABLE, "name": "cluster",
            "elem": cluster}}}));
    }
    if !nodes.is_empty() {
        cmds.push(json!({"add": {"element": {"family": "ip", "table": TABLE, "name": "nodes",
            "elem": nodes}}}));
    }
    let field = |f: &str| json!({"payload": {"protocol": "ip", "field": f}});
    cmds.push(json!({"add": {"chain": {"family": "ip", "table": TABLE, "name": "postrouting",
        "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}));
    cmds.push(json!({"add": {"rule": {"family": "ip", "table": TABLE, "chain": "postrouting",
        "comment": "weft: pod egress leaves with the node's address",
        "expr": [
            {"match": {"op": "==", "left": field("saddr"),
                "right": {"prefix": {"addr": spec.pod_cidr.network().to_string(), "len": spec.pod_cidr.prefix()}}}},
            {"match": {"op": "!=", "left": field("daddr"), "right": "@cluster"}},
            {"match": {"op": "!=", "left": field("daddr"), "right": "@nodes"}},
            {"counter": null},
            {"masquerade": null},
        ]}}}));
    json!({"nftables": cmds})
}

/// Make `table ip weft` exactly `spec` (blocking: runs `nft`).
pub fn apply(spec: &EgressSpec) -> Result<(), EgressError> {
    let batch: Nftables = serde_json::from_value(ruleset(spec))?;
    nftables::helper::apply_ruleset(&batch)?;
    Ok(())
}

/// Whether `table ip weft` exists (blocking: runs `nft`).
pub fn exists() -> Result<bool, std::io::Error> {
    let out = std::process::Command::new("nft").args(["list", "table", "ip", TABLE]).output()?;
    Ok(out.status.success())
}

/// Remove weft's table (uninstall); absent is fine.
pub fn remove() -> Result<(), EgressError> {
    let batch: Nftables = serde_json::from_value(json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": TABLE}}},
        {"delete": {"table": {"family": "ip", "name": TABLE}}},
    ]}))?;
    nftables::helper::apply_ruleset(&batch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> EgressSpec {
        EgressSpec {
            pod_cidr: "10.200.1.0/24".parse().unwrap(),
            cluster: vec![
                "10.200.2.0/24".parse().unwrap(),
                "10.200.0.0/16".parse().unwrap(),
                "10.96.0.0/24".parse().unwrap(),
            ],
            nodes: vec![Ipv4Addr::new(172, 30, 0, 12), Ipv4Addr::new(172, 30, 0, 11), Ipv4Addr::new(172, 30, 0, 12)],
        }
    }

    #[test]
    fn nested_prefixes_collapse_to_the_outermost() {
        let got = outermost(spec().cluster);
        assert_eq!(got, vec!["10.96.0.0/24".parse().unwrap(), "10.200.0.0/16".parse().unwrap()]);
    }

    #[test]
    fn the_ruleset_parses_as_nftables_json_and_says_what_it_must() {
        let v = ruleset(&spec());
        let _: Nftables = serde_json::from_value(v.clone()).expect("fits the nftables schema");
        let text = v.to_string();
        assert!(text.contains(r#""flush":{"table":{"family":"ip","name":"weft"}}"#), "{text}");
        assert!(text.contains(r#""elem":["172.30.0.11","172.30.0.12"]"#), "deduped and sorted: {text}");
        assert!(text.contains(r#""addr":"10.200.1.0","len":24"#), "{text}");
        assert!(text.contains(r#""masquerade":null"#), "{text}");
        // Pod-to-pod and pod-to-node are excluded before the masquerade.
        let rule = &v["nftables"].as_array().unwrap().last().unwrap()["add"]["rule"]["expr"];
        assert_eq!(rule[1]["match"]["right"], "@cluster");
        assert_eq!(rule[2]["match"]["right"], "@nodes");
    }

    #[test]
    fn empty_sets_get_no_element_command() {
        let v = ruleset(&EgressSpec {
            pod_cidr: "10.200.1.0/24".parse().unwrap(),
            cluster: vec![],
            nodes: vec![],
        });
        assert!(!v.to_string().contains("\"element\""));
    }
}
