//! `weft-lab status`: nodes, pods and services of the running lab, as tables or JSON.

use serde::Serialize;
use serde_json::Value;

use crate::kubectl;
use crate::state::{LabRecord, StateDir};
use crate::table;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub internal_ip: String,
    pub pod_cidr: String,
    pub ready: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PodRow {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ip: String,
    pub phase: String,
    pub ready: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ServiceRow {
    pub namespace: String,
    pub name: String,
    pub r#type: String,
    pub cluster_ip: String,
    pub ports: Vec<String>,
    /// Ready endpoint addresses from the Service's EndpointSlices.
    pub endpoints: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    pub nodes: Vec<NodeRow>,
    pub pods: Vec<PodRow>,
    pub services: Vec<ServiceRow>,
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list["items"].as_array().into_iter().flatten()
}

fn condition_true(obj: &Value, kind: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Builds the status from `kubectl get … -o json` lists of nodes, pods, services and
/// EndpointSlices.
pub fn from_lists(nodes: &Value, pods: &Value, services: &Value, slices: &Value) -> Status {
    let nodes = items(nodes)
        .map(|n| NodeRow {
            name: str_of(&n["metadata"]["name"]),
            internal_ip: n["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .map(|a| str_of(&a["address"]))
                .unwrap_or_default(),
            pod_cidr: str_of(&n["spec"]["podCIDR"]),
            ready: condition_true(n, "Ready"),
        })
        .collect();
    let pods = items(pods)
        .map(|p| PodRow {
            namespace: str_of(&p["metadata"]["namespace"]),
            name: str_of(&p["metadata"]["name"]),
            node: str_of(&p["spec"]["nodeName"]),
            ip: str_of(&p["status"]["podIP"]),
            phase: if p["metadata"]["deletionTimestamp"].is_string() {
                "Terminating".into()
            } else {
                str_of(&p["status"]["phase"])
            },
            ready: condition_true(p, "Ready"),
        })
        .collect();
    let services = items(services)
        .map(|s| {
            let ns = str_of(&s["metadata"]["namespace"]);
            let name = str_of(&s["metadata"]["name"]);
            let ports = s["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], str_of(&p["protocol"])))
                .collect();
            let mut endpoints: Vec<String> = items(slices)
                .filter(|sl| {
                    sl["metadata"]["namespace"] == ns.as_str()
                        && sl["metadata"]["labels"]["kubernetes.io/service-name"] == name.as_str()
                })
                .flat_map(|sl| sl["endpoints"].as_array().into_iter().flatten())
                .filter(|e| e["conditions"]["ready"] != false)
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten().map(str_of))
                .collect();
            endpoints.sort();
            endpoints.dedup();
            ServiceRow {
                namespace: ns,
                name,
                r#type: str_of(&s["spec"]["type"]),
                cluster_ip: str_of(&s["spec"]["clusterIP"]),
                ports,
                endpoints,
            }
        })
        .collect();
    Status { nodes, pods, services }
}

pub fn collect(state: &StateDir, rec: &LabRecord) -> anyhow::Result<Status> {
    let nodes = kubectl::get_json(state, rec, &["nodes"])?;
    let pods = kubectl::get_json(state, rec, &["pods", "-A"])?;
    let services = kubectl::get_json(state, rec, &["services", "-A"])?;
    let slices = kubectl::get_json(state, rec, &["endpointslices", "-A"])?;
    Ok(from_lists(&nodes, &pods, &services, &slices))
}

fn yes(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

pub fn render(s: &Status, spec_line: &str) -> String {
    let mut out = format!("{spec_line}\n\nNODES\n");
    out += &table::render(
        &["NAME", "INTERNAL-IP", "POD-CIDR", "READY"],
        &s.nodes
            .iter()
            .map(|n| vec![n.name.clone(), n.internal_ip.clone(), n.pod_cidr.clone(), yes(n.ready)])
            .collect::<Vec<_>>(),
    );
    out += "\nPODS\n";
    out += &table::render(
        &["NAMESPACE/NAME", "NODE", "IP", "PHASE", "READY"],
        &s.pods
            .iter()
            .map(|p| {
                vec![format!("{}/{}", p.namespace, p.name), p.node.clone(), p.ip.clone(), p.phase.clone(), yes(p.ready)]
            })
            .collect::<Vec<_>>(),
    );
    out += "\nSERVICES\n";
    out += &table::render(
        &["NAMESPACE/NAME", "TYPE", "CLUSTER-IP", "PORTS", "ENDPOINTS"],
        &s.services
            .iter()
            .map(|v| {
                vec![
                    format!("{}/{}", v.namespace, v.name),
                    v.r#type.clone(),
                    v.cluster_ip.clone(),
                    v.ports.join(","),
                    if v.endpoints.is_empty() { "<none>".into() } else { v.endpoints.join(",") },
                ]
            })
            .collect::<Vec<_>>(),
    );
    out
}

/// Prints the status as tables, or as JSON with `json`.
pub fn print(state: &StateDir, rec: &LabRecord, json: bool) -> anyhow::Result<()> {
    let s = collect(state, rec)?;
    if json {
        let doc = serde_json::json!({"spec": rec.spec, "status": s});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let spec = format!(
            "lab: {} nodes, cni {:?}, proxy {:?}, netpol {}, state {}",
            rec.spec.nodes,
            rec.spec.cni,
            rec.spec.proxy,
            rec.spec.netpol.as_str(),
            state.root().display()
        )
        .to_lowercase();
        print!("{}", render(&s, &spec));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_joins_services_with_their_ready_endpoints() {
        let nodes = json!({"items": [{"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.200.0.0/24"},
            "status": {"addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "172.30.0.11"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}]});
        let pods = json!({"items": [{"metadata": {"namespace": "default", "name": "nginx-1"},
            "spec": {"nodeName": "node-1"}, "status": {"phase": "Running", "podIP": "10.200.0.2",
            "conditions": [{"type": "Ready", "status": "True"}]}}]});
        let services = json!({"items": [{"metadata": {"namespace": "default", "name": "nginx"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.32.0.99", "ports": [{"port": 80, "protocol": "TCP"}]}}]});
        let slices = json!({"items": [
            {"metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "nginx"}},
             "endpoints": [{"addresses": ["10.200.0.2"], "conditions": {"ready": true}},
                           {"addresses": ["10.200.1.7"], "conditions": {"ready": false}}]},
            {"metadata": {"namespace": "other", "labels": {"kubernetes.io/service-name": "nginx"}},
             "endpoints": [{"addresses": ["10.200.2.2"], "conditions": {"ready": true}}]}]});
        let s = from_lists(&nodes, &pods, &services, &slices);
        assert_eq!(s.nodes[0], NodeRow { name: "node-1".into(), internal_ip: "172.30.0.11".into(),
            pod_cidr: "10.200.0.0/24".into(), ready: true });
        assert_eq!(s.pods[0].ip, "10.200.0.2");
        assert!(s.pods[0].ready);
        assert_eq!(s.services[0].endpoints, vec!["10.200.0.2".to_string()]);
        assert_eq!(s.services[0].ports, vec!["80/TCP".to_string()]);
        let text = render(&s, "lab");
        assert!(text.contains("default/nginx   ClusterIP  10.32.0.99  80/TCP  10.200.0.2"), "{text}");
    }
}
