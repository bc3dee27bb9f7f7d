//! Golden scenario tests: each `testdata/*.txtar` holds the node (`node.yaml`), Kubernetes
//! objects (`objects.yaml`: Namespaces, Pods, NetworkPolicies), optionally connections to
//! trace (`trace`: `SRC DST PROTO/PORT` per line) and the expected state (`want`, as
//! [`render`] prints it, then the traces). `UPDATE_GOLDEN=1 cargo test -p weft --lib policy::`
//! rewrites the `want` sections after a deliberate change; review the diff.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;

use super::*;
use crate::golden::Txtar;
use crate::k8s::pod::Pod;

#[derive(Deserialize)]
struct NodeYaml {
    name: String,
    #[serde(default)]
    addresses: Vec<Ipv4Addr>,
}

struct Objects {
    namespaces: BTreeMap<String, Labels>,
    pods: Vec<PodInfo>,
    policies: Vec<Policy>,
}

fn objects(yaml: &str) -> Objects {
    let mut o = Objects {
        namespaces: BTreeMap::new(),
        pods: Vec::new(),
        policies: Vec::new(),
    };
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = serde_yaml_ng::Value::deserialize(doc).expect("valid YAML");
        if value.is_null() {
            continue;
        }
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("Namespace") => {
                let ns: Namespace = serde_yaml_ng::from_value(value).expect("a Namespace");
                let (name, mut labels) = namespace_labels(&ns);
                labels.insert("kubernetes.io/metadata.name".into(), name.clone());
                o.namespaces.insert(name, labels);
            }
            Some("Pod") => {
                let pod: Pod = serde_yaml_ng::from_value(value).expect("a Pod");
                o.pods.extend(PodInfo::from_pod(&pod));
            }
            Some("NetworkPolicy") => {
                let np: NetworkPolicy = serde_yaml_ng::from_value(value).expect("a NetworkPolicy");
                o.policies.push(Policy::parse(&np));
            }
            other => panic!("unexpected object kind {other:?}"),
        }
    }
    o
}

fn run(archive: &Txtar) -> String {
    let node: NodeYaml = serde_yaml_ng::from_str(archive.section("node.yaml")).expect("node.yaml");
    let o = objects(archive.section("objects.yaml"));
    let inputs = Inputs {
        namespaces: &o.namespaces,
        pods: &o.pods,
        policies: &o.policies,
        node_addresses: &node.addresses,
    };
    let mut ids = Identities::default();
    let local = translate(&inputs, &mut ids, |p| p.node == node.name);
    let mut out = render(&local);
    let traces = archive.section_opt("trace").unwrap_or_default();
    if traces.trim().is_empty() {
        return out;
    }
    // Traces see every pod's rules (the agent computes the two ends it is asked about).
    let all = translate(&inputs, &mut ids, |_| true);
    out.push_str("traces\n");
    for line in traces.lines().filter(|l| !l.trim().is_empty()) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [src, dst, pp] = w[..] else {
            panic!("trace line {line:?}: SRC DST PROTO/PORT")
        };
        let (proto, port) = pp.split_once('/').expect("PROTO/PORT");
        let proto = match proto {
            "TCP" => 6,
            "UDP" => 17,
            "SCTP" => 132,
            "ICMP" => 1,
            p => panic!("protocol {p}"),
        };
        let t = trace(
            &all,
            src.parse().unwrap(),
            dst.parse().unwrap(),
            proto,
            port.parse().unwrap(),
        );
        let word = if t.allowed() { "ALLOW" } else { "DENY" };
        let _ = writeln!(
            out,
            "  {line}: {word}\n    egress: {}\n    ingress: {}",
            t.egress, t.ingress
        );
    }
    out
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy/testdata")
}

#[test]
fn golden_scenarios() {
    crate::golden::check_scenarios(&testdata(), 6, run);
}
