//! The proxies of a Service benchmark lab (weft's agent or kube-proxy): their metrics, pid
//! and memory, and a node joining the cluster (proxy start to its first full sync).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::lab::{Lab, STATE};
use super::prom;
use super::svc::{LabKind, V4};

/// Metrics of the proxy on a node: weft's agent or kube-proxy.
pub fn proxy_metrics(lab: &Lab, kind: &LabKind, node: &str) -> Result<String> {
    let url = if kind.name == "weft" { "http://127.0.0.1:9965/metrics" } else { "http://127.0.0.1:10249/metrics" };
    lab.ok(&["node-exec", node, "--", "curl", "-s", "--max-time", "10", url])
}

/// Whether kube-proxy's metrics show a completed sync with nothing queued after it. Its
/// histograms have no series before the first sync (and `/healthz` may answer 200 before it).
pub fn kube_proxy_synced(m: &str) -> bool {
    // The pending gauges have no labels; the timestamps one series per IP family.
    let v = |name: &str| prom::value(m, name, &[]).unwrap_or(f64::NAN);
    let v4 = |name: &str| prom::value(m, name, &[V4]).unwrap_or(f64::NAN);
    prom::histogram(m, "kubeproxy_sync_proxy_rules_duration_seconds", &[V4]).is_some_and(|h| h.count >= 1.0)
        && v("kubeproxy_sync_proxy_rules_service_changes_pending") == 0.0
        && v("kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 0.0
        && v4("kubeproxy_sync_proxy_rules_last_timestamp_seconds") >= v4("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds")
}

/// Resident memory (KiB) of the proxy process on `node`.
pub fn proxy_rss_kib(kind: &LabKind, node: &str) -> Result<u64> {
    rss_kib(proxy_pid(kind, node)?)
}

/// Resident memory (KiB) of process `pid`.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")
}

/// The proxy's pid on `node`: weft's agent or kube-proxy.
fn proxy_pid(kind: &LabKind, node: &str) -> Result<u32> {
    if kind.name == "weft" {
        weft_agent_pid(node)
    } else {
        lab_process_pid(&format!("kube-proxy-{node}"))
    }
}

/// The pid of a process the lab started itself (its pid file: `kube-proxy-node-1`,
/// `kube-router-node-2`).
pub fn lab_process_pid(name: &str) -> Result<u32> {
    let f = format!("{STATE}/pids/{name}.pid");
    std::fs::read_to_string(&f)?.trim().parse().with_context(|| format!("reading {f}"))
}

/// The pid of weft's agent on `node` (by its command line, in the node's network namespace).
pub fn weft_agent_pid(node: &str) -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata(format!("/run/netns/wl-{node}"))?.ino();
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ");
        if cmd.contains("/weft agent ") && std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == ns) {
            return Ok(pid);
        }
    }
    bail!("no weft agent runs on {node}")
}

/// Wall-clock start of a process (from its start time in clock ticks after boot).
pub fn process_start(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let ticks: f64 = rest.split_whitespace().nth(19).context("starttime")?.parse()?;
    let btime: f64 = std::fs::read_to_string("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .context("btime")?
        .trim()
        .parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(btime + ticks / hz)
}

pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// A third node joins the 10k-Service cluster: how long its proxy takes from process start
/// to its first complete sync, what that sync itself took, and its memory after.
pub fn node_joins(lab: &Lab, kind: &LabKind, filler: usize) -> Result<Value> {
    eprintln!("  node-3 joins");
    lab.ok(&["node", "add"])?;
    let node = "node-3";
    let pid = proxy_pid(kind, node)?;
    let start = process_start(pid)?;
    let (synced_at, sync_s, services) = if kind.name == "weft" {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if Instant::now() > deadline {
                bail!("node-3's agent did not sync its {filler} Services in 10 minutes");
            }
            // The pod or its log may not be there yet.
            if let Some(s) = weft_log(lab, node).ok().and_then(|log| first_full_sync(&log, filler)) {
                break s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        // `node add` returns once kube-proxy's /healthz answers, which can be before its first
        // sync: wait for the sync in its metrics.
        let deadline = Instant::now() + Duration::from_secs(600);
        let m = loop {
            let m = proxy_metrics(lab, kind, node).unwrap_or_default();
            if kube_proxy_synced(&m) {
                break m;
            }
            if Instant::now() > deadline {
                bail!("node-3's kube-proxy did not sync in 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let h = prom::histogram(&m, "kubeproxy_sync_proxy_rules_duration_seconds", &[V4]).context("sync histogram")?;
        let last = prom::value(&m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", &[V4]).context("last sync time")?;
        if h.count > 1.0 {
            eprintln!("    (kube-proxy synced {} times before the scrape; the figures are its last sync's)", h.count);
        }
        (last, h.sum / h.count.max(1.0), filler)
    };
    let rss = proxy_rss_kib(kind, node)?;
    let v = json!({"start_to_synced_s": synced_at - start, "first_sync_s": sync_s, "services_seen": services, "rss_kib": rss,
                   "measured_at": now()});
    eprintln!("    node-3's proxy: start -> all Services programmed {:.2} s (sync itself {:.2} s), RSS {} MiB", synced_at - start, sync_s, rss / 1024);
    Ok(v)
}

/// The log of weft's agent on `node`.
fn weft_log(lab: &Lab, node: &str) -> Result<String> {
    let field = format!("spec.nodeName={node}");
    let pod = lab.ok(&["kubectl", "get", "pods", "-n", "weft-system", "--field-selector", &field, "-o", "jsonpath={.items[0].metadata.name}"])?;
    lab.ok(&["logs", &format!("weft-system/{}", pod.trim())])
}

/// A `key=value` field of a tracing log line.
fn field<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?.parse().ok()
}

/// The agent's first full Service pass that held at least `filler` Services (an earlier one
/// may run before the watch caches are full): when it ended (Unix seconds), how long the pass
/// took (`seconds=`, translate and write every map), and how many Services it had.
fn first_full_sync(log: &str, filler: usize) -> Option<(f64, f64, usize)> {
    log.lines().filter(|l| l.contains("Services synced")).find_map(|l| {
        let n: usize = field(l, "services")?;
        (n >= filler).then_some((log_time(l)?, field(l, "seconds")?, n))
    })
}

/// The time of a tracing log line (`2026-11-29T14:22:31.729000Z  INFO …`) as Unix seconds.
fn log_time(line: &str) -> Option<f64> {
    let ts: jiff::Timestamp = line.split_whitespace().next()?.parse().ok()?;
    Some(ts.as_duration().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_timestamps_become_unix_seconds() {
        let t = log_time("2026-11-29T14:22:31.729000Z  INFO weft::agent::services: Services synced services=10002").unwrap();
        assert!((t - 1_795_962_151.729).abs() < 1e-3, "{t}");
        assert!(log_time("not a log line").is_none());
    }

    #[test]
    fn the_first_sync_is_the_first_pass_with_every_filler_service() {
        let log = "2026-11-29T14:22:30.000000Z  INFO weft::agent::run: watching the API server node=node-3\n\
                   2026-11-29T14:22:30.500000Z  INFO weft::agent::services: Services synced services=3 seconds=0.01 stats=..\n\
                   2026-11-29T14:22:31.729000Z  INFO weft::agent::services: Services synced services=10003 seconds=0.41 stats=..\n\
                   2026-11-29T14:22:40.000000Z  INFO weft::agent::services: Services synced services=10003 seconds=0.30 stats=..\n";
        let (at, secs, n) = first_full_sync(log, 10_000).unwrap();
        assert!((at - 1_795_962_151.729).abs() < 1e-3 && secs == 0.41 && n == 10_003);
        assert!(first_full_sync(log, 20_000).is_none());
    }
}
