//! `cargo xtask bench policy`: NetworkPolicy at scale (`agent/examples/policy_cost.rs`): the
//! per-packet cost of `from_pod` (BPF_PROG_TEST_RUN) on a new flow into a pod selected by 1
//! (or `--selecting`) policies, on an established flow and on unselected pod-to-pod traffic,
//! with 0 to 10,000 other NetworkPolicies in a 10,000-pod cluster, as ratios to the first size
//! measured in the same rounds; plus the full sync time and the memory of that cluster. Fails
//! when the largest size's new-flow ratio reaches 1.05, the full sync 2 s, or the memory
//! 200 MiB.

use std::process::Stdio;

use anyhow::{bail, Context, Result};

use super::rounds::{self, median, series};
use crate::util;

/// The bounds: per-packet cost at the largest size within 1.05x of none; full sync of
/// the largest size under 2 s; the agent's pods and policy state under 200 MiB.
const MAX_RATIO: f64 = 1.05;
const MAX_SYNC_S: f64 = 2.0;
const MAX_MEMORY_MIB: f64 = 200.0;

#[derive(clap::Args)]
pub struct Args {
    /// NetworkPolicy counts besides the server's own; the first is the baseline.
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000,10000")]
    policies: Vec<usize>,
    /// Pods in the cluster.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Policies that select the measured server (the last one admits the client).
    #[arg(long, default_value_t = 1)]
    selecting: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Single runs per size, series and round (the round's figure is their median).
    #[arg(long, default_value_t = 3000)]
    samples: usize,
    /// Output format: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
}

pub fn run(args: Args) -> Result<()> {
    util::require_root("the NetworkPolicy scale benchmark")?;
    if args.policies.len() < 2 {
        bail!("--policies needs at least two counts (the first is the baseline)");
    }
    util::run(&mut util::cargo(&[
        "build",
        "--release",
        "-p",
        "weft",
        "--example",
        "policy_cost",
    ]))?;
    let bin = util::target_dir().join("release/examples/policy_cost");
    let sizes: Vec<String> = args.policies.iter().map(|n| n.to_string()).collect();
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["--policies", &sizes.join(",")])
        .args(["--pods", &args.pods.to_string()])
        .args(["--selecting", &args.selecting.to_string()])
        .args(["--rounds", &args.rounds.to_string()])
        .args(["--samples", &args.samples.to_string()])
        .stderr(Stdio::inherit());
    eprintln!("+ {}", util::show(&cmd));
    let out = cmd
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("policy_cost failed: {}", out.status);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing policy_cost's JSON")?;
    let sizes = v["sizes"].as_array().context("no sizes")?;
    let rows: Vec<serde_json::Value> = sizes
        .iter()
        .map(|s| {
            serde_json::json!({
                "policies": s["policies"],
                "sync_s": s["sync_s"],
                "entries": s["entries"],
                "established_ns": median(series(s, "established_ns")),
                "established_vs_base": rounds::ratio(s, &sizes[0], "established_ns"),
                "new_flow_ns": median(series(s, "new_flow_ns")),
                "new_flow_vs_base": rounds::ratio(s, &sizes[0], "new_flow_ns"),
                "pod_to_pod_ns": median(series(s, "pod_ns")),
                "rounds": s,
            })
        })
        .collect();
    let last = rows.last().expect("at least two sizes");
    let worst = last["new_flow_vs_base"]
        .as_f64()
        .unwrap_or(f64::MAX)
        .max(last["established_vs_base"].as_f64().unwrap_or(f64::MAX));
    let sync = last["sync_s"].as_f64().unwrap_or(f64::MAX);
    let memory_mib = (v["pods_kib"].as_f64().unwrap_or(0.0)
        + v["largest_state_kib"].as_f64().unwrap_or(0.0))
        / 1024.0;
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"summary": v, "rows": rows}))?
        );
    } else {
        println!(
            "\nfrom_pod with NetworkPolicy, {} pods, server selected by {}: median of {} rounds x {} samples",
            args.pods, args.selecting, args.rounds, args.samples
        );
        println!(
            "{:>9} {:>15} {:>9} {:>12} {:>9} {:>15} {:>10} {:>9}",
            "POLICIES",
            "ESTABLISHED ns",
            "vs base",
            "NEW FLOW ns",
            "vs base",
            "UNSELECTED ns",
            "SYNC s",
            "ENTRIES"
        );
        for r in &rows {
            println!(
                "{:>9} {:>15.0} {:>9.3} {:>12.0} {:>9.3} {:>15.0} {:>10.3} {:>9}",
                r["policies"].as_u64().unwrap_or_default(),
                r["established_ns"].as_f64().unwrap_or_default(),
                r["established_vs_base"].as_f64().unwrap_or_default(),
                r["new_flow_ns"].as_f64().unwrap_or_default(),
                r["new_flow_vs_base"].as_f64().unwrap_or_default(),
                r["pod_to_pod_ns"].as_f64().unwrap_or_default(),
                r["sync_s"].as_f64().unwrap_or_default(),
                r["entries"].as_u64().unwrap_or_default(),
            );
        }
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        println!("{}/{} per-packet ratio (worst of new and established): {worst:.3} (under {MAX_RATIO}) {}",
            last["policies"], rows[0]["policies"], mark(worst < MAX_RATIO));
        println!(
            "full sync of {} policies: {sync:.3} s (under {MAX_SYNC_S} s) {}",
            last["policies"],
            mark(sync < MAX_SYNC_S)
        );
        println!(
            "trimmed pods + policy state: {memory_mib:.0} MiB (under {MAX_MEMORY_MIB} MiB) {}",
            mark(memory_mib < MAX_MEMORY_MIB)
        );
    }
    if worst >= MAX_RATIO || sync >= MAX_SYNC_S || memory_mib >= MAX_MEMORY_MIB {
        bail!("a NetworkPolicy goal is missed: ratio {worst:.3}, sync {sync:.3} s, memory {memory_mib:.0} MiB");
    }
    Ok(())
}
