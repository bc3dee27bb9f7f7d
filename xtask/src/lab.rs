//! `cargo xtask lab` (placeholder until its owner fills it in).

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    bail!("cargo xtask lab is not implemented yet")
}
