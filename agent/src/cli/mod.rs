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
