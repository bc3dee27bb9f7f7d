//! `cargo xtask bench cross-node`: pod-to-pod TCP request/response and stream between pods on
//! two different nodes of a lab cluster, against the limit measured in the same lab,
//! interleaved. On the flat labs the limit is two bare hosts plugged into the lab's switch
//! beside the nodes: the same veths and bridge, but none of weft's programs (a node's uplink
//! runs `from_netdev`, its cgroup the socket-level LB) and no netfilter table on the path.
//! Node to node is measured too, and shows what the nodes' own traffic pays.
//! - weft, native routing (eBPF host routing, flat underlay), against the bare hosts;
//! - the reference bridge plugin with static routes (seed 002's setup), against the bare hosts;
//! - weft, VXLAN on a routed topology, against node to node over the router (no bare hosts
//!   there: each node has a subnet of its own).

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
    let mut paths = Vec::new();
    if !run.up.contains(&"routed") {
        // Addresses of the flat underlay (172.30.0.0/24) that no node, control plane or
        // gateway of a lab uses.
        let (c, s) = ("172.30.0.201".parse()?, "172.30.0.202".parse()?);
        paths.push(topo::switch_hosts("wl-switch", "br0", c, s, 24)?);
    }
    paths.push(topo::pair("node", lab.enter(&["node-exec", "node-1"]), lab.enter(&["node-exec", "node-2"]), node_ip));
    paths.push(topo::pair("pod", lab.enter(&["exec", "default/bench-a"]), lab.enter(&["exec", "default/bench-b"]), pod_ip));
    let mut samples: Vec<Samples> = paths
        .iter()
        .map(|p| Samples {
            lab: run.name,
            path: match p.name {
                "bare" => BARE.into(),
                "node" => "node to node".into(),
                _ => run.pod_path.into(),
            },
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
    drop(paths);
    drop(lab);
    Ok(samples)
}

/// The path name of the bare hosts on the switch.
const BARE: &str = "bare hosts";

/// The limit of a lab: its bare hosts, else (routed) node to node.
fn limit<'a>(all: &'a [Samples], lab: &str) -> Option<&'a Samples> {
    let find = |path: &str| all.iter().find(|s| s.lab == lab && s.path == path);
    find(BARE).or_else(|| find("node to node"))
}

fn report(all: &[Samples], args: &Args) -> Result<()> {
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|s| {
            let l = limit(all, s.lab);
            let b = l.map_or((f64::NAN, f64::NAN), |l| (super::median(&l.rr), super::median(&l.gbps)));
            let mut row = super::path_row(&s.rr, &s.gbps, b, "limit");
            row["lab"] = s.lab.into();
            row["path"] = s.path.clone().into();
            row["limit"] = l.map(|l| l.path.clone()).into();
            row
        })
        .collect();
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let placement = super::placement(args.no_pin);
    println!(
        "\nmedian of {} rounds of {}s, cross-node TCP, {placement}; ratios against the limit in the same lab \
         (flat labs: bare hosts on the switch; routed: node to node)",
        args.rounds, args.seconds
    );
    println!("{:<7} {:<16} {:>11} {:>9} {:>13} {:>9}", "LAB", "PATH", "TCP_RR/s", "vs limit", "STREAM Gb/s", "vs limit");
    for r in &rows {
        println!(
            "{:<7} {:<16} {:>11.0} {:>9.3} {:>13.2} {:>9.3}",
            r["lab"].as_str().unwrap_or_default(),
            r["path"].as_str().unwrap_or_default(),
            r["tcp_rr_per_s"].as_f64().unwrap_or_default(),
            r["tcp_rr_vs_limit"].as_f64().unwrap_or_default(),
            r["stream_gbit_s"].as_f64().unwrap_or_default(),
            r["stream_vs_limit"].as_f64().unwrap_or_default(),
        );
    }
    // The spread behind each median: round i's path against round i's limit (measured back to
    // back), so a reader sees whether a median ratio is a margin or noise.
    for s in all {
        let Some(l) = limit(all, s.lab).filter(|l| l.path != s.path) else { continue };
        let rounds = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| format!("{:.3}", x / y)).collect::<Vec<_>>().join(" ");
        println!(
            "{:<7} {:<16} per round vs {}: TCP_RR {}   stream {}",
            s.lab,
            s.path,
            l.path,
            rounds(&s.rr, &l.rr),
            rounds(&s.gbps, &l.gbps)
        );
    }
    let pods = |lab: &str, key: &str| {
        rows.iter().find(|r| r["lab"] == lab && r["path"] != BARE && r["path"] != "node to node").and_then(|r| r[key].as_f64())
    };
    if let (Some(w), Some(b)) = (pods("native", "tcp_rr_vs_limit"), pods("bridge", "tcp_rr_vs_limit")) {
        let (ws, bs) = (pods("native", "stream_vs_limit").unwrap_or(f64::NAN), pods("bridge", "stream_vs_limit").unwrap_or(f64::NAN));
        println!("weft native vs bridge + routes (each against its own lab's limit): TCP_RR {:.3}x, stream {:.3}x", w / b, ws / bs);
    }
    Ok(())
}
