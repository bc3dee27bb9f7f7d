//! `cargo xtask test`: the project's whole test run, in the order a fresh machine needs it:
//! setup, eBPF build, unit tests, eBPF packet tests, netns tests, then the lab suite.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Skip the lab suite (the cluster walkthrough); the upstream build still runs.
    #[arg(long)]
    skip_lab: bool,
}

pub fn run(args: Args) -> Result<()> {
    if !util::is_root() {
        bail!(
            "the packet, netns and lab tests need root (BPF, network namespaces); \
             run `cargo xtask test` as root"
        );
    }
    let xtask = std::env::current_exe()?;
    let mut stages: Vec<(&str, Command)> = vec![
        ("setup", cmd(&xtask, &["setup"])),
        ("build-ebpf", cmd(&xtask, &["build-ebpf"])),
        // The upstream parts (Kubernetes, etcd, CoreDNS, CNI reference plugins, cnitool) come
        // before the agent's tests: the libcni netns test drives weft through the real cnitool.
        // Cached: seconds when warm; its own progress shows when cold.
        ("upstream parts (lab build)", cargo(&["run", "--quiet", "-p", "weft-lab", "--", "build"])),
        // Unit tests of every crate, then the agent's component tests: BPF_PROG_TEST_RUN packet
        // tests (tests/packet_*.rs) and netns tests (tests/netns_*.rs) against the real binary.
        ("unit + packet + netns tests", cargo(&["test", "--workspace", "--exclude", "weft-tests"])),
    ];
    if !args.skip_lab {
        stages.push(("lab tests", cargo(&["test", "-p", "weft-tests", "--", "--test-threads=1"])));
    }

    let mut done: Vec<(&str, Duration)> = Vec::new();
    for (name, mut c) in stages {
        eprintln!("\n=== {name} ===");
        let t = Instant::now();
        let res = util::run(&mut c);
        done.push((name, t.elapsed()));
        if let Err(e) = res {
            summary(&done);
            return Err(e.context(format!("stage `{name}` failed")));
        }
    }
    summary(&done);
    Ok(())
}

fn summary(done: &[(&str, Duration)]) {
    eprintln!("\n{:<32} {:>9}", "STAGE", "SECONDS");
    for (name, d) in done {
        eprintln!("{name:<32} {:>9.1}", d.as_secs_f64());
    }
}

fn cmd(exe: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.args(args).current_dir(util::root());
    c
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args).current_dir(util::root());
    c
}
