//! `cargo xtask lab …`: builds the `weft-lab` binary and runs it with the same arguments
//! (`up [--nodes N] [--cni bridge|weft] [--proxy iptables|nftables|none]`, `status`,
//! `kubectl …`, `exec NS/POD -- CMD`, `logs NS/POD`, `down`, `build`).

use std::process::Command;

use anyhow::{Context, Result};

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Arguments for `weft-lab` (see `cargo xtask lab help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    // weft too: `up --cni weft` (the default) deploys the agent binary built beside weft-lab,
    // and that binary embeds the eBPF object.
    util::run(Command::new(std::env::current_exe()?).arg("build-ebpf").current_dir(util::root()))?;
    util::run(&mut util::cargo(&["build", "--quiet", "-p", "weft-lab", "-p", "weft"]))?;
    let bin = util::target_dir().join("debug/weft-lab");
    let status = Command::new(&bin)
        .args(&args.args)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    // Pass weft-lab's exit code through (`lab exec` returns the command's).
    std::process::exit(status.code().unwrap_or(1));
}
