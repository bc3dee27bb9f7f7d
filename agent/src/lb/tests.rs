//! Golden scenario tests: each `testdata/*.txtar` holds the node (`node.yaml`), Kubernetes
//! objects (`objects.yaml`: Services and EndpointSlices) and the expected translation
//! (`want`, as [`render`] prints it). `UPDATE_GOLDEN=1 cargo test -p weft --lib lb::` rewrites
//! the `want` sections after a deliberate change; review the diff.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Service as K8sService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;

use super::*;
use crate::golden::Txtar;

#[derive(Deserialize)]
struct NodeYaml {
    name: String,
    #[serde(default)]
    addresses: Vec<std::net::Ipv4Addr>,
}

/// Services and EndpointSlices from a multi-document YAML stream.
fn objects(yaml: &str) -> (Vec<K8sService>, Vec<EndpointSlice>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = serde_yaml_ng::Value::deserialize(doc).expect("valid YAML");
        if value.is_null() {
            continue;
        }
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("Service") => services.push(serde_yaml_ng::from_value(value).expect("a Service")),
            Some("EndpointSlice") => {
                slices.push(serde_yaml_ng::from_value(value).expect("an EndpointSlice"))
            }
            other => panic!("unexpected object kind {other:?}"),
        }
    }
    (services, slices)
}

fn run(archive: &Txtar) -> String {
    let node: NodeYaml = serde_yaml_ng::from_str(archive.section("node.yaml")).expect("node.yaml");
    let node = NodeContext {
        name: node.name,
        addresses: node.addresses,
    };
    let (services, slices) = objects(archive.section("objects.yaml"));
    let slice_refs: Vec<&EndpointSlice> = slices.iter().collect();
    let out: Vec<Service> = services
        .iter()
        .map(|s| translate(s, &slice_refs, &node))
        .collect();
    render(&out)
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lb/testdata")
}

#[test]
fn golden_scenarios() {
    crate::golden::check_scenarios(&testdata(), 8, run);
}
