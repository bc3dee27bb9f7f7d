//! `cargo xtask bench`: same-node pod-to-pod request/response rate and stream throughput through
//! weft, against a Linux bridge (the reference `bridge` plugin's layout) and a bare veth pair
//! (the physical limit), measured interleaved in the same run and reported as ratios.
//! `cargo xtask bench cni-add`: CNI ADD/DEL latency of weft against the reference plugins.
//! `cargo xtask bench cross-node`: pod to pod across two lab nodes against node to node.
//! `cargo xtask bench lb-scale`: per-packet cost of the Service path at 1 to 50k Services.
//! `cargo xtask bench policy`: NetworkPolicy per-packet cost and sync at 0 to 10k policies.
//! `cargo xtask bench policy-change`: NetworkPolicy in the lab at up to 10k policies and pods,
//! weft against kube-router: connections, request/response, change -> enforced, memory.
//! `cargo xtask bench services`: Services in the lab at 1 and 10k, weft against kube-proxy.

mod cni_add;
mod crr;
mod cross_node;
mod lab;
mod lb_scale;
mod policy;
mod policy_change;
mod policy_lab;
mod policy_lab_report;
mod policy_objects;
mod prom;
mod rounds;
mod rr;
mod svc;
mod svc_objects;
mod svc_proxy;
mod svc_report;
mod topo;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;

use anyhow::{bail, Context, Result};


#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Another section than same-node pod to pod (the default).
    #[command(subcommand)]
    section: Option<Section>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Rounds; each round measures every path once, so drift hits all paths alike.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Paths to measure (veth is the baseline every ratio is taken against).
    #[arg(long, value_delimiter = ',', default_value = "veth,bridge,weft")]
    paths: Vec<String>,
    /// Let the scheduler place client and server (by default both run on the last CPU, so a
    /// transaction costs the path's CPU work rather than a cross-CPU wakeup from an idle,
    /// halted vCPU, which dominates and varies on virtual machines).
    #[arg(long)]
    no_pin: bool,
    /// Output format: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
    /// Internal: run the request/response server on this port (used inside a namespace).
    #[arg(long, hide = true)]
    rr_server: Option<u16>,
    /// Internal: run the request/response client against this address.
    #[arg(long, hide = true)]
    rr_client: Option<SocketAddr>,
    /// Internal: run the new-connection server on this port (used inside a pod).
    #[arg(long, hide = true)]
    crr_server: Option<u16>,
    /// Internal: run the new-connection client against this address.
    #[arg(long, hide = true)]
    crr_client: Option<SocketAddr>,
    /// Internal: probe TCP reachability of this address, printing each change (in a pod).
    #[arg(long, hide = true)]
    policy_probe: Option<SocketAddr>,
}

#[derive(clap::Subcommand)]
enum Section {
    /// CNI ADD/DEL latency (p50/p99) of weft and of the reference bridge + host-local plugins,
    /// both through libcni's cnitool, interleaved.
    CniAdd(cni_add::Args),
    /// Pod to pod across two nodes of a lab (weft native, bridge + routes, weft VXLAN),
    /// against node-to-node traffic in the same lab.
    CrossNode(cross_node::Args),
    /// Per-packet cost of the Service path (BPF_PROG_TEST_RUN) with 1, 1k, 10k and 50k
    /// Services, as ratios to 1 Service measured in the same rounds.
    LbScale(lb_scale::Args),
    /// NetworkPolicy at scale (BPF_PROG_TEST_RUN): new-flow, established and unselected
    /// per-packet cost with 0 to 10k policies in a 10k-pod cluster, full sync and memory.
    Policy(policy::Args),
    /// NetworkPolicy in the lab with up to 10k other policies and pods, weft against
    /// kube-router: connections and request/response to a pod selected by 1 and 100 policies,
    /// change -> enforced probed from a pod, memory, agent restart.
    PolicyChange(policy_lab::Args),
    /// Services in the lab at 1 and 10k Services: new-connection latency and request/response
    /// rate through a ClusterIP against the pod IP, programming latency, a joining node's
    /// first sync and memory; weft (no kube-proxy) against kube-proxy iptables and nftables.
    Services(svc::Args),
}

const RR_PORT: u16 = 7777;
const STREAM_PORT: u16 = 5201;

struct Sample {
    path: &'static str,
    rr: Vec<f64>,
    gbps: Vec<f64>,
}

pub fn run(args: Args) -> Result<()> {
    match args.section {
        Some(Section::CniAdd(a)) => return cni_add::run(a),
        Some(Section::CrossNode(a)) => return cross_node::run(a),
        Some(Section::LbScale(a)) => return lb_scale::run(a),
        Some(Section::Policy(a)) => return policy::run(a),
        Some(Section::PolicyChange(a)) => return policy_lab::run(a),
        Some(Section::Services(a)) => return svc::run(a),
        None => {}
    }
    if let Some(port) = args.rr_server {
        return rr::serve(port);
    }
    if let Some(addr) = args.rr_client {
        return rr::client(addr, args.seconds);
    }
    if let Some(port) = args.crr_server {
        return crr::serve(port, std::time::Duration::from_secs(60));
    }
    if let Some(addr) = args.crr_client {
        return crr::client(addr, args.seconds);
    }
    if let Some(addr) = args.policy_probe {
        return policy_change::probe(addr);
    }
    crate::util::require_root("the benchmark")?;
    if args.paths.first().map(String::as_str) != Some("veth") {
        bail!("--paths must start with veth: it is the baseline of every ratio");
    }
    let mut topos = Vec::new();
    for p in &args.paths {
        topos.push(match p.as_str() {
            "veth" => topo::veth()?,
            "bridge" => topo::bridge()?,
            "weft" => topo::weft(&crate::weftnode::build_weft(false)?)?,
            other => bail!("unknown path {other:?} (veth, bridge, weft)"),
        });
    }
    let me = std::env::current_exe()?;
    let mut samples: Vec<Sample> =
        topos.iter().map(|t| Sample { path: t.name, rr: Vec::new(), gbps: Vec::new() }).collect();
    let total = args.rounds * topos.len();
    let cpu = pinned_cpu(args.no_pin);
    let mut step = 0;
    for round in 1..=args.rounds {
        for (t, s) in topos.iter().zip(samples.iter_mut()) {
            step += 1;
            eprint!("[{step}/{total}] round {round}, {:<6} ", t.name);
            let rate = measure_rr(&me, t, args.seconds, cpu)?;
            let gbps = measure_stream(t, args.seconds, cpu)?;
            eprintln!("TCP_RR {rate:>9.0}/s   stream {gbps:>6.2} Gbit/s");
            s.rr.push(rate);
            s.gbps.push(gbps);
        }
    }
    let cost = match topos.iter().find(|t| t.weft_node().is_some()) {
        Some(t) => Some(program_cost(&me, t, args.seconds, cpu)?),
        None => None,
    };
    drop(topos);
    report(&samples, cost.as_ref(), &args)
}

/// What weft's programs cost per run during a request/response run, by the kernel's run-time
/// statistics (`weft bpf-stats`), in an extra run: counting reads the clock twice per program
/// run, which the measured rounds must not pay.
fn program_cost(me: &std::path::Path, t: &topo::Topology, secs: f64, cpu: Option<usize>) -> Result<serde_json::Value> {
    let node = t.weft_node().context("a weft topology")?;
    eprint!("[+] weft with run-time statistics ");
    let window = (secs - 0.5).max(0.5).to_string();
    let stats = node
        .weft(&["bpf-stats", "--seconds", &window, "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting weft bpf-stats")?;
    let rate = measure_rr(me, t, secs, cpu)?;
    let out = stats.wait_with_output()?;
    if !out.status.success() {
        bail!("weft bpf-stats failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing weft bpf-stats")?;
    let from_pod = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["program"] == "from_pod"))
        .cloned()
        .context("no from_pod in weft bpf-stats")?;
    let ns = from_pod["ns_per_run"].as_f64().unwrap_or(f64::NAN);
    eprintln!("TCP_RR {rate:>9.0}/s   from_pod {ns:.0} ns per run");
    Ok(serde_json::json!({"tcp_rr_per_s": rate, "programs": rows, "from_pod_ns_per_run": ns}))
}

/// The median of `v` (the upper one of an even count).
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The JSON row of one measured path: medians of the request/response rate and the stream,
/// their ratios to `base` (the baseline's medians) named `…_vs_<vs>`, and the samples.
pub(crate) fn path_row(rr: &[f64], gbps: &[f64], base: (f64, f64), vs: &str) -> serde_json::Value {
    serde_json::json!({
        "tcp_rr_per_s": median(rr), format!("tcp_rr_vs_{vs}"): median(rr) / base.0,
        "stream_gbit_s": median(gbps), format!("stream_vs_{vs}"): median(gbps) / base.1,
        "tcp_rr_samples": rr, "stream_samples": gbps,
    })
}

/// How client and server were placed, for the report's heading.
pub(crate) fn placement(no_pin: bool) -> &'static str {
    if no_pin { "placed by the scheduler" } else { "client and server on one CPU" }
}

fn report(samples: &[Sample], cost: Option<&serde_json::Value>, args: &Args) -> Result<()> {
    let base = (median(&samples[0].rr), median(&samples[0].gbps));
    let rows: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            let mut row = path_row(&s.rr, &s.gbps, base, "veth");
            row["path"] = s.path.into();
            row
        })
        .collect();
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"paths": rows, "weft_programs": cost}))?);
        return Ok(());
    }
    let placement = placement(args.no_pin);
    println!(
        "\nmedian of {} rounds of {}s, same-node pod to pod, TCP, {placement}",
        args.rounds, args.seconds
    );
    println!("{:<8} {:>12} {:>9} {:>14} {:>9}", "PATH", "TCP_RR/s", "vs veth", "STREAM Gbit/s", "vs veth");
    for r in &rows {
        println!(
            "{:<8} {:>12.0} {:>9.3} {:>14.2} {:>9.3}",
            r["path"].as_str().unwrap_or_default(),
            r["tcp_rr_per_s"].as_f64().unwrap_or_default(),
            r["tcp_rr_vs_veth"].as_f64().unwrap_or_default(),
            r["stream_gbit_s"].as_f64().unwrap_or_default(),
            r["stream_vs_veth"].as_f64().unwrap_or_default(),
        );
    }
    if let Some(c) = cost {
        println!(
            "weft's from_pod: {:.0} ns per run (kernel run-time statistics over an extra TCP_RR run)",
            c["from_pod_ns_per_run"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let find = |name: &str| rows.iter().find(|r| r["path"] == name);
    let (Some(b), Some(w)) = (find("bridge"), find("weft")) else { return Ok(()) };
    println!(
        "weft vs bridge: TCP_RR {:.3}x, stream {:.3}x",
        w["tcp_rr_per_s"].as_f64().unwrap_or_default() / b["tcp_rr_per_s"].as_f64().unwrap_or(1.0),
        w["stream_gbit_s"].as_f64().unwrap_or_default() / b["stream_gbit_s"].as_f64().unwrap_or(1.0),
    );
    Ok(())
}

/// The CPU that benchmark clients and servers are pinned to (the last one), unless `--no-pin`.
pub(crate) fn pinned_cpu(no_pin: bool) -> Option<usize> {
    (!no_pin).then(|| std::thread::available_parallelism().map_or(0, |n| n.get() - 1))
}

/// Runs this binary's `bench --SERVER port` in the topology's server (waits for its
/// "listening"), then `bench --seconds S --CLIENT ip:port` in its client; the client's stdout.
pub(crate) fn client_server(
    me: &std::path::Path,
    t: &topo::Topology,
    (server_flag, client_flag, port): (&str, &str, u16),
    secs: f64,
    cpu: Option<usize>,
) -> Result<Vec<u8>> {
    let mut server = topo::in_ns(&t.server, me, cpu)
        .args(["bench", server_flag, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting bench {server_flag}"))?;
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().expect("piped")).read_line(&mut line)?;
    if line.trim() != "listening" {
        let _ = server.kill();
        bail!("bench {server_flag} in {} did not start", t.server);
    }
    let out = topo::in_ns(&t.client, me, cpu)
        .args(["bench", "--seconds", &secs.to_string(), client_flag])
        .arg(format!("{}:{port}", t.server_ip))
        .output()?;
    let _ = server.kill();
    let _ = server.wait();
    if !out.status.success() {
        bail!("bench {client_flag} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// Request/response rate between the topology's two pods (one transaction in flight).
pub(crate) fn measure_rr(me: &std::path::Path, t: &topo::Topology, secs: f64, cpu: Option<usize>) -> Result<f64> {
    let out = client_server(me, t, ("--rr-server", "--rr-client", RR_PORT), secs, cpu)?;
    String::from_utf8_lossy(&out).trim().parse().context("parsing the RR client's rate")
}

/// Bulk TCP throughput with iperf3 (one stream) between the two pods.
pub(crate) fn measure_stream(t: &topo::Topology, secs: f64, cpu: Option<usize>) -> Result<f64> {
    let iperf = std::path::Path::new("/usr/bin/iperf3");
    let mut server = topo::in_ns(&t.server, iperf, cpu)
        .args(["-s", "-1", "-p", &STREAM_PORT.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting iperf3 -s")?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = topo::in_ns(&t.client, iperf, cpu)
        .args(["-c", &t.server_ip.to_string(), "-p", &STREAM_PORT.to_string(), "-J", "-t"])
        .arg(format!("{}", secs.ceil() as u64))
        .output()?;
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing iperf3 -J output")?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3 gave no result: {}", v["error"]))?;
    Ok(bps / 1e9)
}
