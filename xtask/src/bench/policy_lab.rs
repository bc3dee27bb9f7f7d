//! `cargo xtask bench policy-change`: what NetworkPolicy costs a pod in the lab. First, new
//! connections (rate, p50/p99) from a client pod to a server pod that a policy isolates and
//! admits the client to, with 0, 100 and 1,000 other policies in the cluster. Then how long a
//! policy change takes to be enforced, seen from a pod. A prober in a client pod opens a TCP connection to a server pod on another
//! node every few milliseconds and reports each change of outcome with its CLOCK_MONOTONIC
//! time (the same clock in every namespace); the benchmark creates a default-deny policy over
//! the server's namespace and deletes it again, many times, with N other policies in the
//! cluster, and takes from `kubectl` returning (the object stored) to the first attempt that
//! met the new verdict. weft against kube-router (the lab's reference engine) in one run.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::lab::{self, Lab};
use super::topo;

/// The bound on policy change -> enforced, p99.
const MAX_P99_MS: f64 = 100.0;

#[derive(clap::Args)]
pub struct Args {
    /// Engines to measure: weft (no kube-proxy), kube-router (bridge + kube-proxy iptables).
    #[arg(long, value_delimiter = ',', default_value = "weft,kube-router")]
    engines: Vec<String>,
    /// Other NetworkPolicies in the cluster for the new-connection runs, in increasing order;
    /// the policy change runs with the last.
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000")]
    policies: Vec<usize>,
    /// Seconds of new connections per size.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Deny/allow cycles measured per engine.
    #[arg(long, default_value_t = 20)]
    changes: usize,
}

/// CLOCK_MONOTONIC in nanoseconds.
fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall writing into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The prober (run inside the client pod): a connection attempt every 2 ms (20 ms timeout);
/// prints `ok <ns>` or `fail <ns>` (the attempt's start) whenever the outcome changes.
pub fn probe(addr: SocketAddr) -> Result<()> {
    let mut last: Option<bool> = None;
    let until = Instant::now() + Duration::from_secs(3600);
    while Instant::now() < until {
        let start = now_ns();
        let ok = TcpStream::connect_timeout(&addr, Duration::from_millis(20)).is_ok();
        if last != Some(ok) {
            println!("{} {start}", if ok { "ok" } else { "fail" });
            last = Some(ok);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The new-connection server's port in the server pod.
const CRR_PORT: u16 = 7781;

/// Isolates the server and admits the client to the new-connection port.
const ALLOW_CLIENT: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-client, namespace: bench-srv}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: bench-cli}}, podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: 7781}]\n";

const DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: bench-srv}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";

fn objects(policies: std::ops::Range<usize>) -> (String, String) {
    let mut base = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench-srv}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: bench-cli}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: server, namespace: bench-srv, labels: {app: server}}\n\
         spec:\n  nodeName: node-2\n  containers: [{name: main, image: nginx}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: bench-cli, labels: {app: client}}\n\
         spec:\n  nodeName: node-1\n  containers: [{name: main, image: busybox, args: [sleep, '36000']}]\n---\n",
    );
    for i in 0..10 {
        base.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: bench-bg-{i}}}\n---\n"
        ));
    }
    let mut bg = String::new();
    for j in policies {
        bg.push_str(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: bg-{j}, namespace: bench-bg-{}}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: bg-{}}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: bg-{}}}}}}}]\n    ports: [{{port: {}}}]\n---\n",
            j % 10,
            j % 50,
            (j + 1) % 50,
            80 + j % 20
        ));
    }
    (base, bg)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Wait for the prober's next line saying `want` for an attempt started after `after`.
fn wait_for(rx: &mpsc::Receiver<(bool, u64)>, want: bool, after: u64) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((ok, t)) = rx.recv_timeout(Duration::from_millis(100)) {
            if ok == want && t >= after {
                return Ok(t);
            }
        }
    }
    bail!("the prober did not see the change within 20 s")
}

struct Figures {
    engine: String,
    /// Per size: (other policies, connections/s, p50 µs, p99 µs, errors).
    crr: Vec<(usize, f64, f64, f64, f64)>,
    deny_ms: Vec<f64>,
    allow_ms: Vec<f64>,
}

fn measure(bin: &std::path::Path, engine: &str, args: &Args) -> Result<Figures> {
    let up: &[&str] = match engine {
        "weft" => &["--nodes", "2", "--cni", "weft", "--proxy", "none"],
        "kube-router" => &[
            "--nodes",
            "2",
            "--cni",
            "bridge",
            "--proxy",
            "iptables",
            "--netpol",
            "kube-router",
        ],
        other => bail!("unknown engine {other:?} (weft, kube-router)"),
    };
    eprintln!("==> {engine}: lab up");
    let lab = Lab::up(bin, up)?;
    let (base, _) = objects(0..0);
    lab.apply(&base)?;
    lab.ok(&[
        "kubectl",
        "wait",
        "-n",
        "bench-srv",
        "--for=condition=Ready",
        "pod/server",
        "--timeout=120s",
    ])?;
    lab.ok(&[
        "kubectl",
        "wait",
        "-n",
        "bench-cli",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=120s",
    ])?;
    let ip = lab.ok(&[
        "kubectl",
        "get",
        "pod",
        "-n",
        "bench-srv",
        "server",
        "-o",
        "jsonpath={.status.podIP}",
    ])?;
    let server_ip: std::net::Ipv4Addr = ip.trim().parse().context("the server's address")?;
    let addr = SocketAddr::from((server_ip, 80));
    let me = std::env::current_exe()?;
    let mut crr = Vec::new();
    lab.apply(ALLOW_CLIENT)?;
    let client = lab.enter(&["exec", "bench-cli/client"]);
    let server = lab.enter(&["exec", "bench-srv/server"]);
    let pair = topo::pair("policy", client, server, server_ip);
    let mut have = 0;
    for &n in &args.policies {
        let (_, bg) = objects(have..n.max(have));
        for chunk in bg.split_inclusive("---\n").collect::<Vec<_>>().chunks(500) {
            lab.apply(&chunk.concat())?;
        }
        have = n.max(have);
        // Let the API server and the engine take the new policies in.
        std::thread::sleep(Duration::from_secs(5 + n as u64 / 200));
        let flags = ("--crr-server", "--crr-client", CRR_PORT);
        let out = super::client_server(&me, &pair, flags, args.seconds, None)?;
        let v: serde_json::Value =
            serde_json::from_slice(&out).context("parsing the CRR client's result")?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "  {n:>6} other policies: {:.0} new connections/s, p50 {:.0} µs, p99 {:.0} µs, {} errors",
            f("per_s"), f("p50_us"), f("p99_us"), f("errors")
        );
        crr.push((n, f("per_s"), f("p50_us"), f("p99_us"), f("errors")));
    }
    lab.ok(&[
        "kubectl",
        "delete",
        "-n",
        "bench-srv",
        "networkpolicy",
        "allow-client",
    ])?;
    let mut prober = topo::in_ns(&lab.enter(&["exec", "bench-cli/client"]), &me, None);
    let mut child = prober
        .args(["bench", "--policy-probe", &addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the prober")?;
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut w = line.split_whitespace();
            if let (Some(state), Some(t)) = (w.next(), w.next().and_then(|t| t.parse::<u64>().ok()))
            {
                let _ = tx.send((state == "ok", t));
            }
        }
    });
    let result = (|| -> Result<Figures> {
        wait_for(&rx, true, 0).context("the client never reached the server")?;
        // Let the control plane and the engine settle after the bulk of policies.
        std::thread::sleep(Duration::from_secs(5));
        let mut f = Figures {
            engine: engine.to_string(),
            crr: crr.clone(),
            deny_ms: vec![],
            allow_ms: vec![],
        };
        for k in 1..=args.changes {
            lab.apply(DENY)?;
            let t0 = now_ns();
            let t = wait_for(&rx, false, t0)?;
            f.deny_ms.push((t.saturating_sub(t0)) as f64 / 1e6);
            lab.ok(&[
                "kubectl",
                "delete",
                "-n",
                "bench-srv",
                "networkpolicy",
                "deny",
            ])?;
            let t1 = now_ns();
            let t = wait_for(&rx, true, t1)?;
            f.allow_ms.push((t.saturating_sub(t1)) as f64 / 1e6);
            eprintln!(
                "  [{k}/{}] deny enforced after {:.1} ms, lifted after {:.1} ms",
                args.changes,
                f.deny_ms[k - 1],
                f.allow_ms[k - 1]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(f)
    })();
    let _ = child.kill();
    let _ = child.wait();
    drop(lab);
    result
}

pub fn run(args: Args) -> Result<()> {
    crate::util::require_root("the policy change benchmark")?;
    let xtask = std::env::current_exe()?;
    let bin = lab::prepare(&xtask)?;
    let mut all = Vec::new();
    for engine in &args.engines {
        all.push(measure(&bin, engine, &args)?);
    }
    println!(
        "\nNew connections from a pod to a pod one policy isolates and admits it to ({} s each)",
        args.seconds
    );
    println!(
        "{:<12} {:>9} {:>12} {:>10} {:>10} {:>8}",
        "ENGINE", "POLICIES", "CONN/s", "p50 us", "p99 us", "ERRORS"
    );
    for f in &all {
        for (n, rate, p50, p99, errors) in &f.crr {
            println!(
                "{:<12} {n:>9} {rate:>12.0} {p50:>10.0} {p99:>10.0} {errors:>8}",
                f.engine
            );
        }
    }
    let last = args.policies.last().copied().unwrap_or(0);
    println!(
        "\nNetworkPolicy change -> enforced, seen from a pod ({last} other policies, {} changes; ms from kubectl returning)",
        args.changes
    );
    println!(
        "{:<12} {:>10} {:>10} {:>12} {:>12}",
        "ENGINE", "DENY p50", "DENY p99", "ALLOW p50", "ALLOW p99"
    );
    let mut weft_p99 = None;
    for f in &mut all {
        let (d50, d99) = (
            percentile(&mut f.deny_ms, 0.5),
            percentile(&mut f.deny_ms, 0.99),
        );
        let (a50, a99) = (
            percentile(&mut f.allow_ms, 0.5),
            percentile(&mut f.allow_ms, 0.99),
        );
        println!(
            "{:<12} {d50:>10.1} {d99:>10.1} {a50:>12.1} {a99:>12.1}",
            f.engine
        );
        if f.engine == "weft" {
            weft_p99 = Some(d99.max(a99));
        }
    }
    if let Some(p99) = weft_p99 {
        println!(
            "weft p99 (worst of deny and allow): {p99:.1} ms (goal < {MAX_P99_MS} ms) {}",
            if p99 < MAX_P99_MS { "✓" } else { "✗" }
        );
    }
    Ok(())
}
