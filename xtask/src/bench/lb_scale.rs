//! `cargo xtask bench lb-scale`: per-packet cost of the Service path in `from_pod` with 1, 1k,
//! 10k and 50k Services programmed (BPF_PROG_TEST_RUN through `agent/examples/lb_cost.rs`),
//! reported as ratios to 1 Service measured in the same rounds. Fails when 50k/1 (or the
//! largest size's ratio) reaches 1.05.

use std::process::Stdio;

use anyhow::{bail, Context, Result};

use super::rounds::{self, median, series};
use crate::util;

/// The bound on (cost at the largest size) / (cost at 1 Service).
const MAX_RATIO: f64 = 1.05;

#[derive(clap::Args)]
pub struct Args {
    /// Service counts to compare; the first is the baseline of every ratio.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000,50000")]
    services: Vec<usize>,
    /// Rounds; each measures every size, interleaved sample by sample.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Single runs per size and round (the round's figure is their median).
    #[arg(long, default_value_t = 4000)]
    samples: usize,
    /// Output format: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
}

pub fn run(args: Args) -> Result<()> {
    util::require_root("the Service scale benchmark")?;
    if args.services.len() < 2 {
        bail!("--services needs at least two counts (the first is the baseline)");
    }
    util::run(&mut util::cargo(&["build", "--release", "-p", "weft", "--example", "lb_cost"]))?;
    let bin = util::target_dir().join("release/examples/lb_cost");
    let sizes: Vec<String> = args.services.iter().map(|n| n.to_string()).collect();
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["--services", &sizes.join(",")])
        .args(["--rounds", &args.rounds.to_string()])
        .args(["--samples", &args.samples.to_string()])
        .stderr(Stdio::inherit());
    eprintln!("+ {}", util::show(&cmd));
    let out = cmd.output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("lb_cost failed: {}", out.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing lb_cost's JSON")?;
    let sizes = v["sizes"].as_array().context("no sizes")?;
    let ratio = |s: &serde_json::Value, key: &str| rounds::ratio(s, &sizes[0], key);
    let rows: Vec<serde_json::Value> = sizes
        .iter()
        .map(|s| {
            serde_json::json!({
                "services": s["services"],
                "program_s": s["program_s"],
                "established_ns": median(series(s, "service_ns")),
                "established_vs_base": ratio(s, "service_ns"),
                "new_flow_ns": median(series(s, "new_flow_ns")),
                "new_flow_vs_base": ratio(s, "new_flow_ns"),
                "pod_to_pod_ns": median(series(s, "pod_ns")),
                "rounds": s,
            })
        })
        .collect();
    let last = rows.last().expect("at least two sizes");
    let worst = last["established_vs_base"].as_f64().unwrap_or(f64::MAX);
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "\nService path in from_pod, BPF_PROG_TEST_RUN single runs: median of {} rounds x {} samples",
            args.rounds, args.samples
        );
        println!(
            "{:>9} {:>15} {:>9} {:>12} {:>9} {:>15} {:>11}",
            "SERVICES", "ESTABLISHED ns", "vs base", "NEW FLOW ns", "vs base", "POD TO POD ns", "PROGRAM s"
        );
        for r in &rows {
            println!(
                "{:>9} {:>15.0} {:>9.3} {:>12.0} {:>9.3} {:>15.0} {:>11.2}",
                r["services"].as_u64().unwrap_or_default(),
                r["established_ns"].as_f64().unwrap_or_default(),
                r["established_vs_base"].as_f64().unwrap_or_default(),
                r["new_flow_ns"].as_f64().unwrap_or_default(),
                r["new_flow_vs_base"].as_f64().unwrap_or_default(),
                r["pod_to_pod_ns"].as_f64().unwrap_or_default(),
                r["program_s"].as_f64().unwrap_or_default(),
            );
        }
        println!(
            "{}/{} established-flow ratio: {worst:.3} (must stay under {MAX_RATIO}) {}",
            last["services"],
            rows[0]["services"],
            if worst < MAX_RATIO { "✓" } else { "✗" }
        );
    }
    if worst >= MAX_RATIO {
        bail!("the Service path costs {worst:.3}x at {} Services (limit {MAX_RATIO})", last["services"]);
    }
    Ok(())
}
