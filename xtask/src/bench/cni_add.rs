//! `cargo xtask bench cni-add`: how long a pod's network takes to set up and tear down. CNI ADD
//! and DEL of the weft plugin (against a running `weft agent`) and of the reference `bridge` +
//! `host-local` plugins, each exec'd as a container runtime execs it (libcni's way: the CNI
//! environment, the network's config on stdin, `prevResult` from the ADD on DEL, from the
//! node's network namespace), interleaved call by call, reported as p50/p99 and the
//! weft/bridge ratio. Only the plugins' own work and exec are timed: a harness such as
//! `cnitool` adds its own start-up to both sides and pulls the ratio toward 1.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::prom;
use crate::util;
use crate::weftnode::{self, Namespaces, WeftNode};

#[derive(clap::Args)]
pub struct Args {
    /// Measured ADDs (and DELs) per plugin.
    #[arg(long, default_value_t = 200)]
    adds: usize,
    /// Unmeasured ADD/DEL pairs per plugin first (the bridge plugin creates its bridge on the
    /// first ADD; caches warm up).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Measure a debug build of weft (default: a release build, what ships).
    #[arg(long)]
    debug: bool,
    /// Output format: table or json.
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
}

/// One plugin set up on its own node: its network config and the pod it attaches.
struct Plugin {
    name: &'static str,
    /// The network config a runtime writes to the plugin's stdin (name and cniVersion in).
    config: serde_json::Value,
    node_ns: File,
    pod: String,
    add: Vec<Duration>,
    del: Vec<Duration>,
}

/// The run's files: the plugin directory (`CNI_PATH`) and host-local's lease directory, so
/// nothing touches the machine's /var/lib.
struct Runtime {
    dir: PathBuf,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn run(args: Args) -> Result<()> {
    util::require_root("the CNI benchmark")?;
    if args.adds == 0 {
        bail!("--adds must be at least 1");
    }
    let weft_bin = weftnode::build_weft(!args.debug)?;
    let plugin_dir = lab_cni_bins()?;
    let rt = Runtime::new()?;
    for p in ["bridge", "host-local"] {
        std::os::unix::fs::symlink(plugin_dir.join(p), rt.dir.join("bin").join(p))?;
    }
    std::os::unix::fs::symlink(&weft_bin, rt.dir.join("bin/weft"))?;

    let mut namespaces = Namespaces::default();
    let node = WeftNode::start(&weft_bin, "wb-cni-weft", "10.251.3.0/24")?;
    let weft_conf = network(
        "weft-bench",
        json!({"type": "weft", "agentSocket": node.socket(), "mtu": 1500, "logLevel": "warn"}),
    );
    namespaces.add("wb-cni-br")?;
    let bridge_conf = network(
        "bridge-bench",
        json!({
            "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
            "hairpinMode": true, "mtu": 1500,
            "ipam": {
                "type": "host-local", "ranges": [[{"subnet": "10.251.4.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": rt.dir.join("leases"),
            },
        }),
    );
    for ns in ["wb-cni-weft-pod", "wb-cni-br-pod"] {
        namespaces.add(ns)?;
    }
    let mut plugins = [
        Plugin::new("weft", weft_conf, "wb-cni-weft", "wb-cni-weft-pod")?,
        Plugin::new("bridge", bridge_conf, "wb-cni-br", "wb-cni-br-pod")?,
    ];

    let total = args.warmup + args.adds;
    let mut steps_before = String::new();
    eprintln!(
        "{total} ADD/DEL pairs per plugin ({} warm-up), weft and bridge interleaved",
        args.warmup
    );
    for i in 0..total {
        if i == args.warmup {
            steps_before = scrape("wb-cni-weft")?;
        }
        // Alternate which plugin goes first, so neither always follows the other's DEL.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let p = &mut plugins[k];
            let id = format!("bench{i:08}");
            let (add, result) = rt.call("ADD", p, &id, None)?;
            let (del, _) = rt.call("DEL", p, &id, Some(result))?;
            if i >= args.warmup {
                p.add.push(add);
                p.del.push(del);
            }
        }
        if (i + 1) % 25 == 0 || i + 1 == total {
            let now: Vec<String> = plugins
                .iter()
                .filter(|p| !p.add.is_empty())
                .map(|p| format!("{} ADD p50 {:.1} ms", p.name, ms(percentile(&p.add, 0.5))))
                .collect();
            eprintln!("[{}/{total}] {}", i + 1, now.join(", "));
        }
    }
    let steps = step_means(&steps_before, &scrape("wb-cni-weft")?);
    drop(node);
    drop(namespaces);
    report(&plugins, &steps, &args)
}

/// The agent's metrics in node namespace `ns`.
fn scrape(ns: &str) -> Result<String> {
    let out = util::in_netns(ns, "curl")
        .args(["-sf", "--max-time", "5", "http://127.0.0.1:9965/metrics"])
        .output()
        .context("running curl for the agent's metrics")?;
    if !out.status.success() {
        bail!("the agent in {ns} served no metrics ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The steps of weft's ADD and DEL as the agent records them (`weft_cni_step_seconds`, the
/// plugin's and its own): (verb, step, mean ms, calls) over the measured calls.
fn step_means(before: &str, after: &str) -> Vec<(String, String, f64, f64)> {
    let mut out = Vec::new();
    for line in after.lines().filter(|l| l.starts_with("weft_cni_step_seconds_count{")) {
        let label = |k: &str| {
            line.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).map(str::to_owned)
        };
        let (Some(verb), Some(step)) = (label("verb"), label("step")) else { continue };
        let labels = [format!("verb=\"{verb}\""), format!("step=\"{step}\"")];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let Some(now) = prom::histogram(after, "weft_cni_step_seconds", &labels) else { continue };
        let d = match prom::histogram(before, "weft_cni_step_seconds", &labels) {
            Some(b) => now.since(&b),
            None => now,
        };
        if d.count > 0.0 {
            out.push((verb, step, d.mean() * 1e3, d.count));
        }
    }
    out
}

impl Plugin {
    fn new(name: &'static str, config: serde_json::Value, node_ns: &str, pod: &str) -> Result<Self> {
        let path = format!("/run/netns/{node_ns}");
        Ok(Self {
            name,
            config,
            node_ns: File::open(&path).with_context(|| format!("opening {path}"))?,
            pod: format!("/run/netns/{pod}"),
            add: Vec::new(),
            del: Vec::new(),
        })
    }
}

/// A network's config as a runtime hands it to its one plugin: the plugin's fields with the
/// network's name and version.
fn network(name: &str, plugin: serde_json::Value) -> serde_json::Value {
    let mut conf = plugin;
    conf["cniVersion"] = json!("1.1.0");
    conf["name"] = json!(name);
    conf
}

impl Runtime {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("weft-bench-cni-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = Self { dir };
        for sub in ["bin", "leases"] {
            std::fs::create_dir_all(rt.dir.join(sub))?;
        }
        Ok(rt)
    }

    /// Exec the plugin for `verb` in the plugin's node netns, as libcni does (DEL gets the
    /// ADD's result as `prevResult`); its wall time from spawn to exit, and its stdout.
    fn call(
        &self,
        verb: &str,
        p: &Plugin,
        container_id: &str,
        prev: Option<serde_json::Value>,
    ) -> Result<(Duration, serde_json::Value)> {
        let plugin = p.config["type"].as_str().context("a config without a type")?;
        let mut conf = p.config.clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev;
        }
        let stdin = serde_json::to_vec(&conf)?;
        let mut cmd = Command::new(self.dir.join("bin").join(plugin));
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", &p.pod)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.dir.join("bin"))
            .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let netns = p.node_ns.as_raw_fd();
        // SAFETY: runs in the forked child before exec; setns is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(netns, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let start = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("running the {plugin} plugin"))?;
        child.stdin.take().context("stdin")?.write_all(&stdin)?;
        let out = child.wait_with_output()?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "{plugin} {verb} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let result = if out.stdout.is_empty() { json!(null) } else { serde_json::from_slice(&out.stdout)? };
        Ok((took, result))
    }
}

/// The reference plugins' directory from the lab's cache, built there if missing. The files
/// are looked for first: a build takes the cache's lock, which a long build of other parts may
/// hold, and a cache stamped by another checkout's `weft-lab` would be rebuilt for nothing.
fn lab_cni_bins() -> Result<PathBuf> {
    util::run(&mut util::cargo(&["build", "--quiet", "-p", "weft-lab"]))?;
    let bins = |v: &serde_json::Value| -> Option<PathBuf> {
        let plugins = PathBuf::from(v["bins"]["cni_bin_dir"].as_str()?);
        [plugins.join("bridge"), plugins.join("host-local")]
            .iter()
            .all(|f| f.is_file())
            .then_some(plugins)
    };
    // `--status` exits 1 when any part is missing, but prints where each belongs.
    let status = weft_lab_build(&["--status"])?;
    if let Some(found) = bins(&status) {
        return Ok(found);
    }
    let built = weft_lab_build(&["--only", "cni-plugins"])?;
    bins(&built).context("the bridge/host-local plugins are missing after weft-lab build")
}

/// `weft-lab build ARGS -o json`: its JSON on stdout, whatever its exit status.
fn weft_lab_build(args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(util::target_dir().join("debug/weft-lab"))
        .arg("build")
        .args(args)
        .args(["-o", "json"])
        .stderr(Stdio::null())
        .output()
        .context("running weft-lab build")?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "weft-lab build {} ({}) printed no JSON",
            args.join(" "),
            out.status
        )
    })
}

/// Nearest-rank percentile (`q` in 0..=1) of unsorted samples.
fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(plugins: &[Plugin], steps: &[(String, String, f64, f64)], args: &Args) -> Result<()> {
    let stats = |v: &[Duration]| {
        json!({
            "p50_ms": ms(percentile(v, 0.5)), "p99_ms": ms(percentile(v, 0.99)),
            "max_ms": ms(percentile(v, 1.0)),
            "samples_ms": v.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        })
    };
    let rows: Vec<serde_json::Value> = plugins
        .iter()
        .map(|p| json!({"plugin": p.name, "add": stats(&p.add), "del": stats(&p.del)}))
        .collect();
    let (w, b) = (&rows[0], &rows[1]);
    let ratio = |verb: &str, q: &str| {
        w[verb][q].as_f64().unwrap_or(0.0) / b[verb][q].as_f64().unwrap_or(1.0)
    };
    let ratios = json!({
        "add_p50": ratio("add", "p50_ms"), "add_p99": ratio("add", "p99_ms"),
        "del_p50": ratio("del", "p50_ms"), "del_p99": ratio("del", "p99_ms"),
    });
    let step_rows: Vec<serde_json::Value> = steps
        .iter()
        .map(|(verb, step, ms, calls)| json!({"verb": verb, "step": step, "mean_ms": ms, "calls": calls}))
        .collect();
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"plugins": rows, "weft_vs_bridge": ratios, "weft_steps": step_rows})
            )?
        );
        return Ok(());
    }
    println!(
        "\n{} ADDs and DELs per plugin, each plugin exec'd as a runtime does, interleaved; wall time per call in ms",
        args.adds
    );
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9}",
        "PLUGIN", "ADD p50", "ADD p99", "DEL p50", "DEL p99"
    );
    for r in &rows {
        println!(
            "{:<8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            r["plugin"].as_str().unwrap_or_default(),
            r["add"]["p50_ms"].as_f64().unwrap_or_default(),
            r["add"]["p99_ms"].as_f64().unwrap_or_default(),
            r["del"]["p50_ms"].as_f64().unwrap_or_default(),
            r["del"]["p99_ms"].as_f64().unwrap_or_default(),
        );
    }
    println!(
        "weft / bridge: ADD p50 {:.3}x, p99 {:.3}x; DEL p50 {:.3}x, p99 {:.3}x",
        ratios["add_p50"].as_f64().unwrap_or_default(),
        ratios["add_p99"].as_f64().unwrap_or_default(),
        ratios["del_p50"].as_f64().unwrap_or_default(),
        ratios["del_p99"].as_f64().unwrap_or_default(),
    );
    println!("\nweft's steps (weft_cni_step_seconds; allocate_call is the plugin's request, socket round trip and the agent's allocate included)");
    println!("{:<5} {:<16} {:>9} {:>7}", "VERB", "STEP", "mean ms", "calls");
    for (verb, step, ms, calls) in steps {
        println!("{verb:<5} {step:<16} {ms:>9.3} {calls:>7}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<Duration> = (1..=200).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(100));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(198));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(200));
        assert_eq!(percentile(&v[..1], 0.99), Duration::from_millis(200));
    }
}
