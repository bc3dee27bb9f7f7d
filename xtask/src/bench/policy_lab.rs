//! `cargo xtask bench policy-change`: what NetworkPolicy costs in the lab, weft against
//! kube-router (the lab's reference engine), each in its own 2-node lab in one run. The
//! cluster holds 10,000 other pods (bound to nodes no kubelet runs, with addresses) and
//! 0, 100, 1,000 and 10,000 other policies, added in turn. At each size: new connections
//! (rate, p50/p99) and the request/response rate from a client pod on node-1 to a server pod on
//! node-2 selected by 1 and by 100 policies, one of which admits the client. At 1,000 policies,
//! policy change -> enforced seen from the client pod (`policy_change`). At the largest size,
//! each engine's memory on both nodes and, for weft, an agent restart until its policy state is
//! programmed again.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::lab::{self, Lab};
use super::policy_objects::{self as objects, ALLOW_CLIENT, ALSO_SELECTS_LABEL, CRR_PORT, RR_PORT};
use super::{policy_change, prom, svc_proxy, topo};

/// The bound on policy change -> enforced, p99.
const MAX_P99_MS: f64 = 100.0;
/// Objects per `kubectl create`.
const CHUNK: usize = 500;

#[derive(clap::Args)]
pub struct Args {
    /// Engines to measure: weft (no kube-proxy), kube-router (bridge + kube-proxy iptables).
    #[arg(long, value_delimiter = ',', default_value = "weft,kube-router")]
    engines: Vec<String>,
    /// Other NetworkPolicies in the cluster, in increasing order (added cumulatively).
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000,10000")]
    policies: Vec<usize>,
    /// Policies selecting the server at each size (one of them admits the client).
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    selecting: Vec<usize>,
    /// Other pods in the cluster (on nodes no kubelet runs).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// The size (other policies) at which policy changes are timed; it must be in --policies.
    #[arg(long, default_value_t = 1000)]
    change_at: usize,
    /// Seconds of new connections, and of request/response, per measurement.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Measurements per cell (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Let the scheduler place client and server (default: both on the last CPU, so a
    /// transaction costs the path's CPU work rather than a cross-CPU wakeup).
    #[arg(long)]
    no_pin: bool,
    /// Deny/allow cycles timed per engine.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Output format: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
    /// Print the tables of an earlier run's `-o json` output instead of measuring.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
}

fn up_args(engine: &str) -> Result<&'static [&'static str]> {
    Ok(match engine {
        "weft" => &["--nodes", "2", "--cni", "weft", "--proxy", "none"],
        "kube-router" => &["--nodes", "2", "--cni", "bridge", "--proxy", "iptables", "--netpol", "kube-router"],
        other => bail!("unknown engine {other:?} (weft, kube-router)"),
    })
}

/// `kubectl create` the documents of `docs` in chunks, with progress.
fn create_all(lab: &Lab, what: &str, docs: &[String], subresource_status: bool) -> Result<()> {
    let args: &[&str] = if subresource_status {
        &["replace", "--subresource=status", "-f", "-"]
    } else {
        &["create", "-f", "-"]
    };
    let t = Instant::now();
    for (i, chunk) in docs.chunks(CHUNK).enumerate() {
        lab.kubectl_stdin(args, chunk.concat().as_bytes())?;
        eprint!("\r    {what}: {}/{}", (i * CHUNK + chunk.len()), docs.len());
    }
    if !docs.is_empty() {
        eprintln!(" ({:.0} s)", t.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Share of all CPUs busy over `window`, from /proc/stat.
fn busy_share(window: Duration) -> Result<f64> {
    let read = || -> Result<(u64, u64)> {
        let s = std::fs::read_to_string("/proc/stat")?;
        let v: Vec<u64> = s
            .lines()
            .next()
            .context("/proc/stat")?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        Ok((v.iter().sum(), idle))
    };
    let (t0, i0) = read()?;
    std::thread::sleep(window);
    let (t1, i1) = read()?;
    let total = (t1 - t0).max(1) as f64;
    Ok(1.0 - (i1 - i0) as f64 / total)
}

/// Wait until the machine is quiet (under a quarter of the CPUs busy over 3 s; at most
/// `max`): the API server and the engine have taken in what was just created.
fn settle(max: Duration) -> Result<()> {
    let t = Instant::now();
    loop {
        let busy = busy_share(Duration::from_secs(3))?;
        if busy < 0.25 || t.elapsed() > max {
            eprintln!("    settled: {:.0}% busy after {:.0} s", busy * 100.0, t.elapsed().as_secs_f64());
            return Ok(());
        }
    }
}

/// One cell: `rounds` times new connections, then request/response, client pod -> server pod;
/// the medians, and every sample.
fn measure_pair(me: &Path, pair: &topo::Topology, args: &Args) -> Result<Value> {
    let cpu = super::pinned_cpu(args.no_pin);
    let (mut conn, mut p50, mut p99, mut errors, mut rr) = (vec![], vec![], vec![], 0.0, vec![]);
    for _ in 0..args.rounds {
        let out = super::client_server(me, pair, ("--crr-server", "--crr-client", CRR_PORT), args.seconds, cpu)?;
        let crr: Value = serde_json::from_slice(&out).context("parsing the CRR client's result")?;
        let g = |k: &str| crr[k].as_f64().unwrap_or(f64::NAN);
        conn.push(g("per_s"));
        p50.push(g("p50_us"));
        p99.push(g("p99_us"));
        errors += g("errors");
        let out = super::client_server(me, pair, ("--rr-server", "--rr-client", RR_PORT), args.seconds, cpu)?;
        rr.push(String::from_utf8_lossy(&out).trim().parse::<f64>().context("parsing the RR client's rate")?);
    }
    let m = super::median;
    Ok(json!({"conn_per_s": m(&conn), "p50_us": m(&p50), "p99_us": m(&p99), "errors": errors, "rr_per_s": m(&rr),
              "conn_samples": conn, "rr_samples": rr}))
}

/// The engine's memory on each node (KiB).
fn rss(engine: &str) -> Result<Value> {
    let mut v = serde_json::Map::new();
    for node in ["node-1", "node-2"] {
        let pid = match engine {
            "weft" => svc_proxy::weft_agent_pid(node)?,
            _ => svc_proxy::lab_process_pid(&format!("kube-router-{node}"))?,
        };
        v.insert(node.into(), svc_proxy::rss_kib(pid)?.into());
    }
    Ok(Value::Object(v))
}

/// Kill weft's agent on node-2 (`kill -9`; the DaemonSet's pod restarts it) and time its
/// successor from process start to its first policy pass, and that pass itself.
fn agent_restart(lab: &Lab) -> Result<Value> {
    let old = svc_proxy::weft_agent_pid("node-2")?;
    // SAFETY: plain syscall.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(300);
    let pid = loop {
        match svc_proxy::weft_agent_pid("node-2") {
            Ok(p) if p != old => break p,
            _ if Instant::now() > deadline => bail!("node-2's agent did not come back in 5 minutes"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let start = svc_proxy::process_start(pid)?;
    let policy = ["reconciler=\"policy\""];
    loop {
        let m = lab
            .ok(&["node-exec", "node-2", "--", "curl", "-s", "--max-time", "5", "http://127.0.0.1:9965/metrics"])
            .unwrap_or_default();
        if let Some(h) = prom::histogram(&m, "weft_reconcile_duration_seconds", &policy).filter(|h| h.count >= 1.0) {
            let at = svc_proxy::now();
            let v = json!({"start_to_programmed_s": at - start, "first_pass_s": h.sum / h.count, "passes_seen": h.count});
            eprintln!(
                "    agent restart on node-2: start -> policy state programmed {:.2} s (the pass itself {:.3} s)",
                at - start,
                h.sum / h.count
            );
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("node-2's new agent made no policy pass in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn measure(bin: &Path, engine: &str, args: &Args) -> Result<Value> {
    eprintln!("==> {engine}: lab up");
    let lab = Lab::up(bin, up_args(engine)?)?;
    lab.apply(&objects::base())?;
    for pod in ["bench-srv/server", "bench-cli/client"] {
        let (ns, name) = pod.split_once('/').expect("ns/name");
        lab.ok(&["kubectl", "wait", "-n", ns, "--for=condition=Ready", &format!("pod/{name}"), "--timeout=120s"])?;
    }
    let ip = lab.ok(&["kubectl", "get", "pod", "-n", "bench-srv", "server", "-o", "jsonpath={.status.podIP}"])?;
    let server_ip: std::net::Ipv4Addr = ip.trim().parse().context("the server's address")?;
    if args.pods > 0 {
        lab.kubectl_stdin(&["create", "-f", "-"], objects::ghost_nodes().as_bytes())?;
        let pods: Vec<String> = (0..args.pods).map(objects::ghost_pod).collect();
        create_all(&lab, "other pods", &pods, false)?;
        let status: Vec<String> = (0..args.pods).map(objects::ghost_status).collect();
        create_all(&lab, "their addresses", &status, true)?;
    }
    lab.apply(ALLOW_CLIENT)?;
    let me = std::env::current_exe()?;
    let client = lab.enter(&["exec", "bench-cli/client"]);
    let server = lab.enter(&["exec", "bench-srv/server"]);
    let pair = topo::pair("policy", client, server, server_ip);
    let mut cells = Vec::new();
    let mut changes = None;
    let mut have = 0;
    for &n in &args.policies {
        create_all(&lab, "other policies", &objects::other_policies(have..n.max(have)), false)?;
        have = n.max(have);
        settle(Duration::from_secs(600))?;
        for &sel in &args.selecting {
            if sel > 1 {
                lab.kubectl_stdin(&["create", "-f", "-"], objects::also_selecting(sel).as_bytes())?;
                settle(Duration::from_secs(120))?;
            }
            let mut cell = measure_pair(&me, &pair, args)?;
            cell["policies"] = n.into();
            cell["selecting"] = sel.into();
            let f = |k: &str| cell[k].as_f64().unwrap_or(f64::NAN);
            eprintln!(
                "  {n:>6} other policies, server selected by {sel:>3}: {:.0} new connections/s (p50 {:.0} µs, p99 {:.0} µs, {} errors), {:.0} transactions/s",
                f("conn_per_s"), f("p50_us"), f("p99_us"), f("errors"), f("rr_per_s")
            );
            cells.push(cell);
            if sel > 1 {
                lab.ok(&["kubectl", "delete", "-n", "bench-srv", "networkpolicy", "-l", ALSO_SELECTS_LABEL])?;
            }
        }
        if n == args.change_at {
            eprintln!("  policy changes with {n} other policies and {} other pods", args.pods);
            // The prober reaches nginx (port 80), which allow-client does not admit.
            lab.ok(&["kubectl", "delete", "-n", "bench-srv", "networkpolicy", "allow-client"])?;
            settle(Duration::from_secs(60))?;
            let c = policy_change::measure(&lab, &me, SocketAddr::from((server_ip, 80)), args.changes)?;
            changes = Some(json!({"policies": n, "pods": args.pods, "deny_ms": c.deny_ms, "allow_ms": c.allow_ms}));
            lab.apply(ALLOW_CLIENT)?;
        }
    }
    let memory = rss(engine)?;
    eprintln!("    memory with {have} other policies and {} other pods: {memory} KiB", args.pods);
    let restart = if engine == "weft" { Some(agent_restart(&lab)?) } else { None };
    drop(lab);
    Ok(json!({"engine": engine, "cells": cells, "changes": changes, "rss_kib": memory,
              "restart": restart, "policies": have, "pods": args.pods}))
}

pub fn run(args: Args) -> Result<()> {
    if let Some(file) = &args.report {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let all: Vec<Value> = serde_json::from_str(&text).context("parsing an earlier run's JSON")?;
        super::policy_lab_report::print(&all, args.seconds, args.rounds, args.no_pin, MAX_P99_MS);
        return Ok(());
    }
    crate::util::require_root("the policy benchmark")?;
    if !args.policies.contains(&args.change_at) {
        bail!("--change-at {} is not one of --policies", args.change_at);
    }
    let xtask = std::env::current_exe()?;
    let bin = lab::prepare(&xtask)?;
    let mut all = Vec::new();
    for engine in &args.engines {
        all.push(measure(&bin, engine, &args)?);
    }
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    super::policy_lab_report::print(&all, args.seconds, args.rounds, args.no_pin, MAX_P99_MS);
    Ok(())
}
