//! `cargo xtask lab …`: builds the `weft-lab` binary and runs it with the same arguments
//! (`up [--nodes N] [--cni bridge|weft] [--proxy iptables|nftables|none]`, `status`, `env`,
//! `kubectl …`, `exec NS/POD -- CMD`, `logs NS/POD`, `down`, `build`). The build steps are
//! shown only when something is built, or with `-v`.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{buildlog, ebpf, util};

#[derive(clap::Args)]
pub struct Args {
    /// Show the build steps even when everything is up to date (`cargo xtask lab -v up`).
    #[arg(short, long)]
    pub verbose: bool,
    /// Arguments for `weft-lab` (see `cargo xtask lab help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let mut cargo = util::cargo(&["build", "-p", "weft-lab"]);
    let header = [format!("+ {}", util::show(&cargo))];
    buildlog::run(&mut cargo, &header, args.verbose)?;
    if args.args.first().is_some_and(|a| a == "up") {
        // `up --cni weft` (the default) runs the agent from its image (static weft with the
        // eBPF object embedded), loaded from target/image/ onto every node.
        ebpf::build(args.verbose)?;
        crate::image::build(false, false)?;
    }
    let bin = util::target_dir().join("debug/weft-lab");
    let status = Command::new(&bin)
        .args(&args.args)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    // Pass weft-lab's exit code through (`lab exec` returns the command's).
    std::process::exit(status.code().unwrap_or(1));
}
