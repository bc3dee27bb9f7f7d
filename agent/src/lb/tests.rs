//! Golden scenario tests: each `testdata/*.txtar` holds the node (`node.yaml`), Kubernetes
//! objects (`objects.yaml`: Services and EndpointSlices) and the expected translation
//! (`want`, as [`render`] prints it). `UPDATE_GOLDEN=1 cargo test -p weft --lib lb::` rewrites
//! the `want` sections after a deliberate change; review the diff.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Service as K8sService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;

use super::*;

/// One txtar archive: a leading comment and named sections.
struct Txtar {
    comment: String,
    sections: Vec<(String, String)>,
}

impl Txtar {
    fn parse(text: &str) -> Self {
        let mut comment = String::new();
        let mut sections: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let marker = line
                .strip_prefix("-- ")
                .and_then(|l| l.strip_suffix(" --"))
                .map(str::trim);
            match (marker, sections.last_mut()) {
                (Some(name), _) => sections.push((name.to_owned(), String::new())),
                (None, Some((_, body))) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {
                    comment.push_str(line);
                    comment.push('\n');
                }
            }
        }
        Self { comment, sections }
    }

    fn section(&self, name: &str) -> &str {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_str())
            .unwrap_or_else(|| panic!("no `-- {name} --` section"))
    }

    fn print(&self) -> String {
        let mut out = self.comment.clone();
        for (name, body) in &self.sections {
            out.push_str(&format!("-- {name} --\n{body}"));
        }
        out
    }
}

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
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata())
        .expect("testdata dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txtar"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "scenarios missing: {files:?}");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let mut archive = Txtar::parse(&text);
        let got = run(&archive);
        let want = archive.section("want").to_owned();
        if got != want {
            if update {
                for (name, body) in &mut archive.sections {
                    if name == "want" {
                        *body = got.clone();
                    }
                }
                std::fs::write(path, archive.print()).unwrap();
            } else {
                failures.push(format!(
                    "{}:\n--- want\n{want}--- got\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn txtar_round_trips() {
    let text = "comment\n-- a --\none\n-- b --\ntwo\nthree\n";
    let t = Txtar::parse(text);
    assert_eq!(t.comment, "comment\n");
    assert_eq!(t.section("b"), "two\nthree\n");
    assert_eq!(t.print(), text);
}
