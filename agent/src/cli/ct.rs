//! `weft ct list`: the conntrack entries of translated flows.

use std::path::Path;

use super::{ask, table, Output};
use crate::api::{Request, Response};
use crate::api::CtEntry;

pub fn run(socket: &Path, output: Output) -> anyhow::Result<()> {
    let entries = match ask(socket, Request::CtList, "its conntrack entries")? {
        Response::Conntrack { entries } => entries,
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        Output::Table => print!("{}", render(&entries)),
    }
    Ok(())
}

pub fn render(entries: &[CtEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let nat = match (e.kind.as_str(), e.snat) {
                ("service", Some((a, p))) => format!("{}:{} from {a}:{p}", e.nat_addr, e.nat_port),
                ("service", None) => format!("{}:{}", e.nat_addr, e.nat_port),
                _ => format!("frontend {} -> client {}:{}", e.rev_nat_id, e.nat_addr, e.nat_port),
            };
            vec![
                e.kind.clone(),
                e.protocol.clone(),
                format!("{}:{}", e.src, e.sport),
                format!("{}:{}", e.dst, e.dport),
                nat,
                if e.flags.is_empty() {
                    "-".into()
                } else {
                    e.flags.join(",")
                },
                format!("{}s", e.idle_s),
                format!("{}s", e.expires_in_s),
            ]
        })
        .collect();
    table(
        &["KIND", "PROTO", "SOURCE", "DESTINATION", "TRANSLATION", "FLAGS", "IDLE", "EXPIRES IN"],
        &rows,
    )
}
