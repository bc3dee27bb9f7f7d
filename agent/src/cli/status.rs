//! `weft status`: the node's pod CIDR, attachments, ENDPOINTS entries, routes to the other
//! nodes and drop counters.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::{table, Output};
use crate::api::{Client, Request, Response, StatusReport};

pub fn run(socket: &Path, output: Output) -> anyhow::Result<()> {
    let client = Client::new(socket, Duration::from_secs(10));
    let report = match client
        .call(Request::Status)
        .context("asking the agent for its status")?
    {
        Response::Status(r) => r,
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", render(&report)),
    }
    Ok(())
}

/// The human-readable report.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let cidr = r
        .pod_cidr
        .map(|c| c.to_string())
        .unwrap_or_else(|| "(none)".into());
    if let Some(node) = &r.node {
        let _ = writeln!(out, "Node: {node}");
    }
    let _ = writeln!(
        out,
        "Pod CIDR: {cidr}   addresses in use: {}/{}",
        r.allocated, r.capacity
    );
    if let Some(f) = &r.forwarding {
        let handoff = match f.handoff.as_str() {
            "takeover" => " (taking Services over: kube-proxy's connections stay with the kernel)",
            "release" => " (handing Services back: kube-proxy takes new connections)",
            _ => "",
        };
        let _ = writeln!(out, "Host routing: {}   kube-proxy handoff: {}{handoff}", f.host_routing, f.handoff);
    }
    out.push('\n');
    let owners: HashMap<_, _> = r.attachments.iter().map(|a| (a.ip, &a.key)).collect();
    let mut rows: Vec<Vec<String>> = r
        .endpoints
        .iter()
        .map(|e| {
            let owner = owners.get(&e.ip);
            vec![
                e.ip.to_string(),
                e.ifindex.to_string(),
                e.host_mac.to_string(),
                e.pod_mac.to_string(),
                owner
                    .map(|k| k.container_id.chars().take(12).collect())
                    .unwrap_or_else(|| "(orphan)".into()),
                owner.map(|k| k.ifname.clone()).unwrap_or_default(),
                format!("{:?}", e.program).to_lowercase(),
            ]
        })
        .collect();
    for a in r
        .attachments
        .iter()
        .filter(|a| !r.endpoints.iter().any(|e| e.ip == a.ip))
    {
        let id = a.key.container_id.chars().take(12).collect();
        rows.push(vec![
            a.ip.to_string(),
            "-".into(),
            "-".into(),
            "-".into(),
            id,
            a.key.ifname.clone(),
            "-".into(),
        ]);
    }
    rows.sort_by_key(|r| r[0].parse::<std::net::Ipv4Addr>().ok());
    out += "ENDPOINTS\n";
    out += &table(
        &[
            "IP",
            "IFINDEX",
            "HOST MAC",
            "POD MAC",
            "CONTAINER",
            "IFNAME",
            "PROGRAM",
        ],
        &rows,
    );
    if r.node.is_some() {
        out += "\nROUTES TO OTHER NODES\n";
        let routes: Vec<Vec<String>> = r
            .routes
            .iter()
            .map(|x| vec![x.pod_cidr.to_string(), x.node.clone(), x.node_ip.to_string(), x.via.clone()])
            .collect();
        out += &table(&["POD CIDR", "NODE", "NODE IP", "VIA"], &routes);
    }
    out += "\nDROPS\n";
    out += &counts_table(["REASON", "PACKETS"], &r.drops);
    out += "\nSERVICE PATH COUNTERS\n";
    out += &counts_table(["COUNTER", "COUNT"], &r.service_counters);
    out
}

/// A two-column table of named counts.
fn counts_table(headers: [&str; 2], counts: &[(String, u64)]) -> String {
    let rows: Vec<Vec<String>> = counts.iter().map(|(n, c)| vec![n.clone(), c.to_string()]).collect();
    table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AttachmentInfo, AttachmentKey, EndpointInfo};

    #[test]
    fn table_lists_endpoints_with_owner_and_unregistered_attachments() {
        let key = |id: &str| AttachmentKey {
            container_id: id.into(),
            ifname: "eth0".into(),
        };
        let report = StatusReport {
            pod_cidr: Some("10.200.1.0/24".parse().unwrap()),
            allocated: 2,
            capacity: 253,
            attachments: vec![
                AttachmentInfo {
                    key: key("aaaaaaaaaaaaaaaa"),
                    ip: "10.200.1.2".parse().unwrap(),
                },
                AttachmentInfo {
                    key: key("bbbb"),
                    ip: "10.200.1.3".parse().unwrap(),
                },
            ],
            endpoints: vec![EndpointInfo {
                ip: "10.200.1.2".parse().unwrap(),
                ifindex: 7,
                host_mac: "0a:00:00:00:00:01".parse().unwrap(),
                pod_mac: "0a:00:00:00:00:02".parse().unwrap(),
                program: crate::api::LinkProgram::Previous,
            }],
            drops: vec![("no_endpoint".into(), 3)],
            service_counters: vec![("reply_restored".into(), 1)],
            node: Some("node-1".into()),
            routes: vec![crate::api::RouteInfo {
                pod_cidr: "10.200.2.0/24".parse().unwrap(),
                node: "node-2".into(),
                node_ip: "172.30.0.12".parse().unwrap(),
                via: "native".into(),
            }],
            forwarding: Some(crate::api::ForwardingInfo {
                host_routing: "kernel".into(),
                handoff: "takeover".into(),
            }),
        };
        let text = render(&report);
        assert!(
            text.contains("Host routing: kernel   kube-proxy handoff: takeover (taking Services over"),
            "{text}"
        );
        assert!(
            text.contains("Pod CIDR: 10.200.1.0/24   addresses in use: 2/253"),
            "{text}"
        );
        assert!(text.starts_with("Node: node-1\n"), "{text}");
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["10.200.2.0/24", "node-2", "172.30.0.12", "native"]),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let ep = lines
            .iter()
            .find(|l| l.starts_with("10.200.1.2 "))
            .expect(&text);
        assert!(
            ep.contains(" 7 ")
                && ep.contains("aaaaaaaaaaaa ")
                && ep.contains(" eth0 ")
                && ep.ends_with("previous"),
            "{ep}"
        );
        let pending = lines
            .iter()
            .find(|l| l.starts_with("10.200.1.3 "))
            .expect(&text);
        assert!(pending.contains("bbbb"), "{pending}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("no_endpoint") && l.ends_with('3')),
            "{text}"
        );
        let counters = text.split("SERVICE PATH COUNTERS\n").nth(1).expect(&text);
        assert!(
            counters.lines().any(|l| l.starts_with("reply_restored") && l.ends_with('1')),
            "{text}"
        );
    }
}
