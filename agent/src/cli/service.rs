//! `weft service list`: every frontend in the datapath with its flags and backends, like
//! `cilium-dbg service list`.

use std::path::Path;

use super::{ask, table, Output};
use crate::api::{Request, Response};
use crate::api::ServiceRow;

pub fn run(socket: &Path, output: Output) -> anyhow::Result<()> {
    let services = match ask(socket, Request::ServiceList, "its Services")? {
        Response::Services { services } => services,
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&services)?),
        Output::Table => print!("{}", render(&services)),
    }
    Ok(())
}

/// One line per frontend with its first backend, one more line per further backend.
pub fn render(services: &[ServiceRow]) -> String {
    let mut rows = Vec::new();
    for s in services {
        let backends: Vec<String> = s
            .backends
            .iter()
            .map(|b| {
                let addr = b
                    .address
                    .map(|a| format!("{a}:{}", b.port))
                    .unwrap_or_else(|| "?".into());
                let flags = if b.flags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", b.flags.join(", "))
                };
                format!("{} => {addr}{flags}", b.id)
            })
            .collect();
        let mut first = vec![
            s.id.to_string(),
            format!("{}:{}/{}", s.address, s.port, s.protocol),
            s.scope.clone(),
            s.kind.clone(),
            s.service
                .as_ref()
                .map(|n| match &s.port_name {
                    Some(p) if !p.is_empty() => format!("{n}:{p}"),
                    _ => n.clone(),
                })
                .unwrap_or_else(|| "-".into()),
            if s.flags.is_empty() {
                "-".into()
            } else {
                s.flags.join(" ")
            },
        ];
        let mut rest = backends.into_iter();
        first.push(rest.next().unwrap_or_else(|| "(none: refused)".into()));
        rows.push(first);
        for b in rest {
            let mut row = vec![String::new(); 6];
            row.push(b);
            rows.push(row);
        }
    }
    table(
        &["ID", "FRONTEND", "SCOPE", "TYPE", "SERVICE", "FLAGS", "BACKENDS"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BackendRow;

    #[test]
    fn frontends_list_their_backends_on_following_lines() {
        let row = |id: u16, port: u16, backends: Vec<BackendRow>| ServiceRow {
            id,
            address: "10.32.0.10".parse().unwrap(),
            port,
            protocol: "UDP".into(),
            scope: "external".into(),
            kind: "ClusterIP".into(),
            service: Some("kube-system/kube-dns".into()),
            port_name: Some("dns".into()),
            flags: vec!["affinity=10800s".into()],
            generation: 0,
            backends,
        };
        let b = |id: u32, last: u8, flags: &[&str]| BackendRow {
            id,
            slot: 0,
            address: Some(std::net::Ipv4Addr::new(10, 200, 0, last)),
            port: 53,
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        let text = render(&[
            row(1, 53, vec![b(1, 7, &["local"]), b(2, 9, &[])]),
            row(2, 54, vec![]),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID ") && lines[0].ends_with("BACKENDS"), "{text}");
        assert!(
            lines[1].starts_with("1 ")
                && lines[1].contains("10.32.0.10:53/UDP")
                && lines[1].contains("kube-system/kube-dns:dns")
                && lines[1].contains("affinity=10800s")
                && lines[1].ends_with("1 => 10.200.0.7:53 (local)"),
            "{text}"
        );
        assert!(lines[2].trim() == "2 => 10.200.0.9:53", "{text}");
        assert!(lines[3].ends_with("(none: refused)"), "{text}");
    }
}
