//! `cargo xtask test`: the project's whole test run, in the order a fresh machine needs it:
//! setup, eBPF build, unit tests, eBPF packet tests, netns tests, then the lab suite.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Skip the lab suite (the cluster walkthroughs and the upstream conformance runs); the
    /// upstream build still runs.
    #[arg(long)]
    skip_lab: bool,
}

pub fn run(args: Args) -> Result<()> {
    util::require_root("`cargo xtask test` (packet, netns and lab tests)")?;
    let xtask = std::env::current_exe()?;
    let mut stages: Vec<(&str, Command)> = vec![
        ("setup", cmd(&xtask, &["setup"])),
        ("build-ebpf", cmd(&xtask, &["build-ebpf"])),
        // The upstream parts (Kubernetes, etcd, CoreDNS, CNI reference plugins, cnitool,
        // agnhost, and the e2e test binary and ginkgo of the conformance lab tests) come before
        // the agent's tests: the libcni netns test drives weft through the real cnitool.
        // Cached: seconds when warm; its own progress shows when cold.
        ("upstream parts (lab build)", util::cargo(&["run", "--quiet", "-p", "weft-lab", "--", "build", "--all"])),
        // Unit tests of every crate, then the agent's component tests: BPF_PROG_TEST_RUN packet
        // tests (tests/packet_*.rs) and netns tests (tests/netns_*.rs) against the real binary.
        ("unit + packet + netns tests", util::cargo(&["test", "--workspace", "--exclude", "weft-tests"])),
    ];
    if !args.skip_lab {
        // weft's image (static weft, nft): the lab's nodes run the agent from its file system.
        stages.push(("image", cmd(&xtask, &["image"])));
        // The test build with CT4's layout changed, which lab_operations upgrades to and rolls
        // back from.
        stages.push(("image (layout-bump test build)", cmd(&xtask, &["image", "--layout-bump"])));
        stages.push(("lab tests", util::cargo(&["test", "-p", "weft-tests", "--", "--test-threads=1"])));
    }

    let mut done: Vec<(&str, Duration)> = Vec::new();
    let mut totals = Totals::default();
    for (name, mut c) in stages {
        eprintln!("\n=== {name} ===");
        let t = Instant::now();
        let res = run_counting(&mut c, &mut totals);
        done.push((name, t.elapsed()));
        if let Err(e) = res {
            summary(&done, &totals);
            return Err(e.context(format!("stage `{name}` failed")));
        }
    }
    summary(&done, &totals);
    Ok(())
}

/// Tests counted from cargo's `test result:` lines over every stage.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Add one `test result: ok. 12 passed; 0 failed; 1 ignored; …` line, if it is one.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Run a stage, echoing its stdout while counting test results in it.
fn run_counting(c: &mut Command, totals: &mut Totals) -> Result<()> {
    use std::io::{BufRead, BufReader};
    eprintln!("+ {}", util::show(c));
    let mut child = c.stdout(std::process::Stdio::piped()).spawn()?;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{} failed: {status}", util::show(c));
    }
    Ok(())
}

fn summary(done: &[(&str, Duration)], totals: &Totals) {
    eprintln!("\n{:<32} {:>9}", "STAGE", "SECONDS");
    for (name, d) in done {
        eprintln!("{name:<32} {:>9.1}", d.as_secs_f64());
    }
    // The plain closing line CI reads, after everything else on stdout.
    println!("\ntests: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
}

fn cmd(exe: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.args(args).current_dir(util::root());
    c
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn totals_add_cargo_result_lines_and_ignore_others() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.73s");
        t.add_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add_line("running 5 tests");
        t.add_line("test foo ... ok");
        assert_eq!((t.passed, t.failed, t.ignored), (15, 2, 1));
    }
}
