//! `weft policy list` (each local pod's NetworkPolicy isolation and allowed peers, ports and
//! rules, like `cilium-dbg endpoint get` + `policy get`) and `weft policy trace` (allowed or
//! denied, and by which rule, from the translation the datapath is written from).

use std::path::Path;

use super::{ask, table, Output};
use crate::api::{PolicyDirectionRow, PolicyEndpointRow, Request, Response};

pub fn list(socket: &Path, output: Output) -> anyhow::Result<()> {
    let endpoints = match ask(socket, Request::PolicyList, "its NetworkPolicy state")? {
        Response::Policies { endpoints } => endpoints,
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&endpoints)?),
        Output::Table => print!("{}", render(&endpoints)),
    }
    Ok(())
}

/// `--port` as `N/PROTO` (or `N`, TCP).
pub fn parse_port(s: &str) -> Result<(u16, String), String> {
    let (n, proto) = s.split_once('/').unwrap_or((s, "TCP"));
    let n = n
        .parse::<u16>()
        .map_err(|_| format!("{s:?}: expected PORT/PROTOCOL, e.g. 80/TCP"))?;
    Ok((n, proto.to_ascii_uppercase()))
}

pub fn trace(
    socket: &Path,
    from: &str,
    to: &str,
    port: &str,
    output: Output,
) -> anyhow::Result<()> {
    let (port, protocol) = parse_port(port).map_err(anyhow::Error::msg)?;
    let request = Request::PolicyTrace {
        from: from.into(),
        to: to.into(),
        protocol,
        port,
    };
    let report = match ask(socket, request, "a policy trace")? {
        Response::PolicyTrace(r) => r,
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => {
            println!(
                "{} -> {} {}/{}",
                report.from, report.to, report.port, report.protocol
            );
            println!("  egress of the sender:    {}", report.egress);
            println!("  ingress of the receiver: {}", report.ingress);
            println!(
                "  verdict: {}",
                if report.allowed { "ALLOWED" } else { "DENIED" }
            );
        }
    }
    if !report.allowed {
        std::process::exit(3);
    }
    Ok(())
}

fn direction(d: &PolicyDirectionRow) -> String {
    if d.isolated_by.is_empty() {
        "open".into()
    } else {
        format!("isolated ({})", d.isolated_by.join(", "))
    }
}

/// One block per pod: its isolation, then one line per allowed key.
pub fn render(endpoints: &[PolicyEndpointRow]) -> String {
    let mut rows = Vec::new();
    for ep in endpoints {
        for (i, (name, d, each)) in [
            ("ingress", &ep.ingress, "  allow from"),
            ("egress", &ep.egress, "  allow to"),
        ]
        .into_iter()
        .enumerate()
        {
            let (pod, ip) = if i == 0 {
                (ep.pod.clone(), ep.ip.to_string())
            } else {
                Default::default()
            };
            rows.push(vec![
                pod,
                ip,
                name.into(),
                direction(d),
                String::new(),
                String::new(),
            ]);
            for r in &d.allow {
                rows.push(vec![
                    String::new(),
                    String::new(),
                    each.into(),
                    r.peer.clone(),
                    r.ports.clone(),
                    r.rules.join(", "),
                ]);
            }
        }
    }
    table(
        &["POD", "IP", "DIRECTION", "PEER / STATE", "PORTS", "RULES"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_with_a_default_protocol() {
        assert_eq!(parse_port("80/udp"), Ok((80, "UDP".into())));
        assert_eq!(parse_port("443"), Ok((443, "TCP".into())));
        assert!(parse_port("http/TCP").is_err());
    }
}
