//! The inspection CLI: `weft status` (more commands join here).

pub mod status;

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
