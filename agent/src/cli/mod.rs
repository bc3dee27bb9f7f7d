//! The inspection CLI: `weft status`, `weft service list`, `weft ct list`, `weft policy`,
//! `weft bpf-stats`, and `weft uninstall`.

pub mod bpf_stats;
pub mod ct;
pub mod policy;
pub mod service;
pub mod status;
pub mod uninstall;

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::api::{Client, Request, Response};

/// Send one request to the agent at `socket` and return its answer.
pub(crate) fn ask(socket: &Path, request: Request, what: &str) -> anyhow::Result<Response> {
    Client::new(socket, Duration::from_secs(10))
        .call(request)
        .with_context(|| format!("asking the agent for {what}"))
}

/// Columns padded to their widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}


/// Output format of CLI commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned tables for people.
    Table,
    /// JSON for machines.
    Json,
}

/// `weft bpf-log on|off`: ask the agent to switch the eBPF programs' log lines.
pub fn bpf_log(socket: &std::path::Path, on: bool) -> anyhow::Result<()> {
    let client = crate::api::Client::new(socket, std::time::Duration::from_secs(5));
    match client.call(crate::api::Request::SetBpfLog { on })? {
        crate::api::Response::BpfLog { on } => {
            println!("eBPF log lines {} (they appear in the agent's log)", if on { "on" } else { "off" });
            Ok(())
        }
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    }
}
