//! `cargo xtask setup` (placeholder until its owner fills it in).

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("cargo xtask setup is not implemented yet")
}
