//! `cargo xtask bench services`: what a Service costs, at 1 and at 10k Services, with weft
//! replacing kube-proxy and with kube-proxy (iptables, nftables; reference bridge CNI) in the
//! same 2-node lab shape, each lab brought up in turn:
//! - new-connection latency (connect, a byte each way, close: p50/p99, connections/s) and
//!   request/response rate on one connection, client pod on node-1, server pod on node-2,
//!   through the ClusterIP and to the server's pod IP directly, interleaved;
//! - programming: EndpointSlice changes timed by weft's `weft_service_programming_seconds`
//!   (watch event -> maps) and kube-proxy's `kubeproxy_sync_proxy_rules_duration_seconds` and
//!   `kubeproxy_network_programming_duration_seconds` (change stamp -> rules);
//! - a node joining the cluster: from the proxy's process start to its first sync of all
//!   Services; and the proxy's resident memory on a node.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::lab::{self, sleeper_pod, Lab};
use super::prom::{self, Histogram};
use super::{svc_objects, svc_proxy, svc_report, topo};
use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Labs: weft (no kube-proxy), iptables and nftables (kube-proxy, bridge CNI).
    #[arg(long, value_delimiter = ',', default_value = "weft,iptables,nftables")]
    labs: Vec<String>,
    /// Filler Services for the "at scale" figures.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Endpoints per filler Service.
    #[arg(long, default_value_t = 5)]
    endpoints: usize,
    /// Seconds per latency measurement.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Rounds; each measures every path once, so drift hits the paths alike.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// EndpointSlice changes whose programming is timed.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Let the scheduler place client and server (default: both on the last CPU).
    #[arg(long)]
    no_pin: bool,
    /// Output format: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
}

pub struct LabKind {
    pub name: &'static str,
    up: &'static [&'static str],
}

const LABS: &[LabKind] = &[
    LabKind { name: "weft", up: &["--cni", "weft", "--proxy", "none"] },
    LabKind { name: "iptables", up: &["--cni", "bridge", "--proxy", "iptables"] },
    LabKind { name: "nftables", up: &["--cni", "bridge", "--proxy", "nftables"] },
];

/// kube-proxy labels its series by IP family (it runs an IPv6 proxier too where it can).
pub const V4: &str = "ip_family=\"IPv4\"";

/// Ports of the benchmark Service (same on the ClusterIP and the pod).
const CRR_PORT: u16 = 7780;

const BENCH_SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: bench}\nspec:\n  selector: {app: bench-srv}\n  \
    ports:\n  - {name: rr, port: 7777}\n  - {name: crr, port: 7780}\n";

/// One path at one scale: a sample per round.
#[derive(Default)]
struct Path_ {
    scale: usize,
    path: &'static str,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    conn_per_s: Vec<f64>,
    rr_per_s: Vec<f64>,
}

pub fn run(args: Args) -> Result<()> {
    util::require_root("the Service benchmark")?;
    let xtask = std::env::current_exe()?;
    let bin = lab::prepare(&xtask)?;
    let cpu = super::pinned_cpu(args.no_pin);
    let mut results = vec![];
    for name in &args.labs {
        let kind = LABS.iter().find(|l| l.name == name).with_context(|| format!("unknown lab {name:?} (weft, iptables, nftables)"))?;
        results.push(measure_lab(&bin, &xtask, kind, &args, cpu)?);
    }
    report(&results, &args)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn measure_lab(bin: &Path, xtask: &Path, kind: &LabKind, args: &Args, cpu: Option<usize>) -> Result<Value> {
    eprintln!("==> lab {}: weft-lab up --nodes 2 {}", kind.name, kind.up.join(" "));
    let mut up = vec!["--nodes", "2"];
    up.extend_from_slice(kind.up);
    let lab = Lab::up(bin, &up)?;
    lab.apply(&format!(
        "{}{}---\n{BENCH_SVC}",
        sleeper_pod("bench-a", "node-1", "app: bench-cli"),
        sleeper_pod("bench-b", "node-2", "app: bench-srv")
    ))?;
    lab.ok(&["kubectl", "wait", "--for=condition=Ready", "pod/bench-a", "pod/bench-b", "--timeout=120s"])?;
    let pod_ip = lab.pod_ip("bench-b")?;
    let vip: Ipv4Addr = lab.ok(&["kubectl", "get", "service", "bench", "-o", "jsonpath={.spec.clusterIP}"])?.trim().parse()?;
    let client = lab.enter(&["exec", "default/bench-a"]);
    let server = lab.enter(&["exec", "default/bench-b"]);
    let paths = [
        topo::pair("pod IP", client.clone(), server.clone(), pod_ip),
        topo::pair("ClusterIP", client, server, vip),
    ];
    let mut rows: Vec<Path_> = vec![];
    phase(xtask, kind, &paths, 1, args, cpu, &mut rows)?;

    eprintln!("  creating {} Services with {} endpoints each", args.services, args.endpoints);
    let created_s = svc_objects::create(&lab, args.services, args.endpoints)?;
    let settled_s = settle(&lab, kind, args)?;
    phase(xtask, kind, &paths, args.services, args, cpu, &mut rows)?;

    let programming = programming(&lab, kind, args)?;
    let rss = svc_proxy::proxy_rss_kib(kind, "node-1")?;
    let join = svc_proxy::node_joins(&lab, kind, args.services)?;
    drop(lab);

    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"scale": r.scale, "path": r.path,
                   "p50_us": median(&r.p50_us), "p99_us": median(&r.p99_us),
                   "conn_per_s": median(&r.conn_per_s), "rr_per_s": median(&r.rr_per_s),
                   "samples": {"p50_us": r.p50_us, "p99_us": r.p99_us, "conn_per_s": r.conn_per_s, "rr_per_s": r.rr_per_s}})
        })
        .collect();
    Ok(json!({"lab": kind.name, "latency": rows, "programming": programming, "rss_kib_node1": rss,
              "join": join, "create_s": created_s, "settle_s": settled_s}))
}

fn phase(
    xtask: &Path,
    kind: &LabKind,
    paths: &[topo::Topology],
    scale: usize,
    args: &Args,
    cpu: Option<usize>,
    rows: &mut Vec<Path_>,
) -> Result<()> {
    let first = rows.len();
    rows.extend(paths.iter().map(|p| Path_ { scale, path: p.name, ..Default::default() }));
    for round in 1..=args.rounds {
        for (t, row) in paths.iter().zip(rows[first..].iter_mut()) {
            eprint!("  [{}] {scale} Services, round {round}/{}, {:<10}", kind.name, args.rounds, t.name);
            let c = measure_crr(xtask, t, args.seconds, cpu)?;
            let rr = super::measure_rr(xtask, t, args.seconds, cpu)?;
            let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
            eprintln!(
                "connect p50 {:>6.0} µs  p99 {:>6.0} µs  {:>6.0} conn/s   RR {rr:>7.0}/s",
                f("p50_us"),
                f("p99_us"),
                f("per_s")
            );
            if c["errors"].as_u64().unwrap_or(0) > 0 {
                eprintln!("    ({} failed connections)", c["errors"]);
            }
            row.p50_us.push(f("p50_us"));
            row.p99_us.push(f("p99_us"));
            row.conn_per_s.push(f("per_s"));
            row.rr_per_s.push(rr);
        }
    }
    Ok(())
}

/// New connections for `secs` from the topology's client to its server (`CRR_PORT`).
fn measure_crr(me: &Path, t: &topo::Topology, secs: f64, cpu: Option<usize>) -> Result<Value> {
    let out = super::client_server(me, t, ("--crr-server", "--crr-client", CRR_PORT), secs, cpu)?;
    serde_json::from_slice(&out).context("parsing the CRR client's result")
}

/// Waits until the proxies of both nodes have programmed every filler Service, then for the
/// machine to calm down (1-minute load under 3, at most 3 minutes). Returns the seconds waited
/// for the proxies.
fn settle(lab: &Lab, kind: &LabKind, args: &Args) -> Result<f64> {
    let t = Instant::now();
    for node in ["node-1", "node-2"] {
        loop {
            let m = svc_proxy::proxy_metrics(lab, kind, node)?;
            let done = if kind.name == "weft" {
                let n = |map: &str| prom::value(&m, "weft_map_entries", &[&format!("map=\"{map}\"")]).unwrap_or(0.0);
                n("LB4_SERVICES") >= args.services as f64 && n("LB4_BACKENDS") >= (args.services * args.endpoints) as f64
            } else {
                svc_proxy::kube_proxy_synced(&m)
            };
            if done {
                break;
            }
            if t.elapsed() > Duration::from_secs(1800) {
                bail!("{node}'s proxy did not program {} Services in 30 minutes", args.services);
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        eprintln!("    {node}'s proxy has every Service ({:.0} s after the last create)", t.elapsed().as_secs_f64());
    }
    let programmed = t.elapsed().as_secs_f64();
    let calm = Instant::now();
    while load1()? > 3.0 && calm.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_secs(5));
    }
    eprintln!("    load average {:.1} after {:.0} s of settling", load1()?, calm.elapsed().as_secs_f64());
    Ok(programmed)
}

fn load1() -> Result<f64> {
    let s = std::fs::read_to_string("/proc/loadavg")?;
    s.split_whitespace().next().and_then(|v| v.parse().ok()).context("parsing /proc/loadavg")
}

/// Quantiles of the observations between two scrapes, in milliseconds.
fn summary(h: &Histogram) -> Value {
    json!({"count": h.count, "p50_ms": h.quantile(0.5) * 1e3, "p99_ms": h.quantile(0.99) * 1e3, "mean_ms": h.mean() * 1e3})
}

/// Times `args.changes` EndpointSlice changes as each proxy reports them on node-1.
fn programming(lab: &Lab, kind: &LabKind, args: &Args) -> Result<Value> {
    // [change -> programmed, one programming pass].
    let hists: &[&str] = if kind.name == "weft" {
        &["weft_service_programming_seconds", "weft_reconcile_duration_seconds"]
    } else {
        &["kubeproxy_network_programming_duration_seconds", "kubeproxy_sync_proxy_rules_duration_seconds"]
    };
    let labels = |h: &str| -> Vec<&'static str> {
        if h == "weft_reconcile_duration_seconds" {
            vec!["reconciler=\"services\""]
        } else if h.starts_with("kubeproxy_") {
            vec![V4]
        } else {
            vec![]
        }
    };
    let scrape = || -> Result<Vec<Histogram>> {
        let m = svc_proxy::proxy_metrics(lab, kind, "node-1")?;
        hists
            .iter()
            .map(|h| prom::histogram(&m, h, &labels(h)).with_context(|| format!("no histogram {h} on node-1")))
            .collect()
    };
    let before = scrape()?;
    eprintln!("  timing {} EndpointSlice changes", args.changes);
    let step = (args.services / args.changes.max(1)).max(1);
    for c in 0..args.changes {
        svc_objects::change(lab, (c * step) % args.services, args.endpoints, 1 + c)?;
        std::thread::sleep(Duration::from_millis(300));
    }
    // kube-proxy batches changes for up to --min-sync-period (1 s) before a sync.
    std::thread::sleep(Duration::from_secs(5));
    let after = scrape()?;
    let mut out = serde_json::Map::new();
    for (((key, h), a), b) in ["change", "pass"].iter().zip(hists).zip(&after).zip(&before) {
        let mut v = summary(&a.since(b));
        v["metric"] = json!(h);
        out.insert((*key).to_string(), v);
    }
    Ok(Value::Object(out))
}

fn report(results: &[Value], args: &Args) -> Result<()> {
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(results)?);
        return Ok(());
    }
    let placement = if args.no_pin { "placed by the scheduler" } else { "client and server on one CPU" };
    let head = format!(
        "median of {} rounds of {}s; client pod on node-1, server pod on node-2, {placement}; ratios against the pod IP at the same scale",
        args.rounds, args.seconds
    );
    svc_report::table(&mut std::io::stdout().lock(), results, &head, args.changes)?;
    Ok(())
}
