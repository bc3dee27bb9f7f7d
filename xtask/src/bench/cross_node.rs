//! `cargo xtask bench cross-node`: pod-to-pod TCP request/response and stream between pods on
//! two different nodes of a lab cluster, against node-to-node traffic between the same two
//! node namespaces (the limit: the nodes' own network) measured in the same lab, interleaved:
//! - weft, native routing (eBPF host routing, flat underlay), against node to node;
//! - the reference bridge plugin with static routes (seed 002's setup), against node to node;
//! - weft, VXLAN on a routed topology, against node to node over the router.

use std::path::Path;

use anyhow::{Context, Result};

use super::lab::{self, sleeper_pod, Lab};
use super::topo;
use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Rounds per lab; each round measures node to node and pod to pod once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Labs to run: native (weft), bridge, vxlan (weft on a routed topology).
    #[arg(long, value_delimiter = ',', default_value = "native,bridge,vxlan")]
    labs: Vec<String>,
    /// Let the scheduler place client and server (default: both on the last CPU).
    #[arg(long)]
    no_pin: bool,
    /// Output format: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
}

struct LabRun {
    name: &'static str,
    up: &'static [&'static str],
    pod_path: &'static str,
}

const LABS: &[LabRun] = &[
    LabRun { name: "native", up: &["--cni", "weft", "--proxy", "none"], pod_path: "weft native" },
    LabRun { name: "bridge", up: &["--cni", "bridge", "--proxy", "none"], pod_path: "bridge + routes" },
    LabRun {
        name: "vxlan",
        up: &["--cni", "weft", "--proxy", "none", "--topology", "routed"],
        pod_path: "weft vxlan",
    },
];

/// One measured path: its samples.
struct Samples {
    lab: &'static str,
    path: String,
    rr: Vec<f64>,
    gbps: Vec<f64>,
}

pub fn run(args: Args) -> Result<()> {
    util::require_root("the cross-node benchmark")?;
    let xtask = std::env::current_exe()?;
    let bin = lab::prepare(&xtask)?;
    let cpu = super::pinned_cpu(args.no_pin);
    let mut all = Vec::new();
    for name in &args.labs {
        let run = LABS.iter().find(|l| l.name == name).with_context(|| format!("unknown lab {name:?} (native, bridge, vxlan)"))?;
        all.extend(measure_lab(&bin, &xtask, run, &args, cpu)?);
    }
    report(&all, &args)
}

fn measure_lab(bin: &Path, xtask: &Path, run: &LabRun, args: &Args, cpu: Option<usize>) -> Result<Vec<Samples>> {
    eprintln!("==> lab {}: weft-lab up --nodes 2 {}", run.name, run.up.join(" "));
    let mut up = vec!["--nodes", "2"];
    up.extend_from_slice(run.up);
    let lab = Lab::up(bin, &up)?;
    lab.apply(&format!("{}{}", sleeper_pod("bench-a", "node-1", ""), sleeper_pod("bench-b", "node-2", "")))?;
    lab.ok(&["kubectl", "wait", "--for=condition=Ready", "pod/bench-a", "pod/bench-b", "--timeout=120s"])?;
    let pod_ip = lab.pod_ip("bench-b")?;
    let node_ip = lab.node_ip("node-2")?;
    let paths = [
        topo::pair("node", lab.enter(&["node-exec", "node-1"]), lab.enter(&["node-exec", "node-2"]), node_ip),
        topo::pair("pod", lab.enter(&["exec", "default/bench-a"]), lab.enter(&["exec", "default/bench-b"]), pod_ip),
    ];
    let mut samples: Vec<Samples> = paths
        .iter()
        .map(|p| Samples {
            lab: run.name,
            path: if p.name == "node" { "node to node".into() } else { run.pod_path.into() },
            rr: vec![],
            gbps: vec![],
        })
        .collect();
    for round in 1..=args.rounds {
        for (t, s) in paths.iter().zip(samples.iter_mut()) {
            eprint!("  [{}] round {round}/{}, {:<16}", run.name, args.rounds, s.path);
            let rate = super::measure_rr(xtask, t, args.seconds, cpu)?;
            let gbps = super::measure_stream(t, args.seconds, cpu)?;
            eprintln!("TCP_RR {rate:>9.0}/s   stream {gbps:>6.2} Gbit/s");
            s.rr.push(rate);
            s.gbps.push(gbps);
        }
    }
    drop(lab);
    Ok(samples)
}

fn report(all: &[Samples], args: &Args) -> Result<()> {
    let base = |lab: &str, f: fn(&Samples) -> &Vec<f64>| {
        all.iter().find(|s| s.lab == lab && s.path == "node to node").map(|s| super::median(f(s)))
    };
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|s| {
            let b = (base(s.lab, |s| &s.rr).unwrap_or(f64::NAN), base(s.lab, |s| &s.gbps).unwrap_or(f64::NAN));
            let mut row = super::path_row(&s.rr, &s.gbps, b, "node");
            row["lab"] = s.lab.into();
            row["path"] = s.path.clone().into();
            row
        })
        .collect();
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let placement = super::placement(args.no_pin);
    println!("\nmedian of {} rounds of {}s, cross-node TCP, {placement}; ratios against node to node in the same lab", args.rounds, args.seconds);
    println!("{:<7} {:<16} {:>11} {:>8} {:>13} {:>8}", "LAB", "PATH", "TCP_RR/s", "vs node", "STREAM Gb/s", "vs node");
    for r in &rows {
        println!(
            "{:<7} {:<16} {:>11.0} {:>8.3} {:>13.2} {:>8.3}",
            r["lab"].as_str().unwrap_or_default(),
            r["path"].as_str().unwrap_or_default(),
            r["tcp_rr_per_s"].as_f64().unwrap_or_default(),
            r["tcp_rr_vs_node"].as_f64().unwrap_or_default(),
            r["stream_gbit_s"].as_f64().unwrap_or_default(),
            r["stream_vs_node"].as_f64().unwrap_or_default(),
        );
    }
    // The spread behind each median: round i's pod path against round i's node to node
    // (measured back to back), so a reader sees whether a median ratio is a margin or noise.
    for s in all.iter().filter(|s| s.path != "node to node") {
        if let Some(node) = all.iter().find(|n| n.lab == s.lab && n.path == "node to node") {
            let rounds = |pod: &[f64], node: &[f64]| {
                pod.iter().zip(node).map(|(p, n)| format!("{:.3}", p / n)).collect::<Vec<_>>().join(" ")
            };
            println!(
                "{:<7} per round vs node: TCP_RR {}   stream {}",
                s.lab,
                rounds(&s.rr, &node.rr),
                rounds(&s.gbps, &node.gbps)
            );
        }
    }
    let ratio = |lab: &str, key: &str| {
        rows.iter().find(|r| r["lab"] == lab && r["path"] != "node to node").and_then(|r| r[key].as_f64())
    };
    if let (Some(w), Some(b)) = (ratio("native", "tcp_rr_vs_node"), ratio("bridge", "tcp_rr_vs_node")) {
        let (ws, bs) = (ratio("native", "stream_vs_node").unwrap_or(f64::NAN), ratio("bridge", "stream_vs_node").unwrap_or(f64::NAN));
        println!("weft native vs bridge + routes (each against its own node-to-node): TCP_RR {:.3}x, stream {:.3}x", w / b, ws / bs);
    }
    Ok(())
}
