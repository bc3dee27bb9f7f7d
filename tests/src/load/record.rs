//! What a load driver saw: successes counted per second and per backend, each failure and
//! each stream stall printed as it happens, a summary at the end.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Wall-clock milliseconds (the same clock in every namespace, so the test can compare them
/// with the times of its own events).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Width of the buckets successes are counted in.
pub const BUCKET_MS: u64 = 100;

/// Stream stalls at least this long are printed (`gap` lines).
pub const GAP_REPORTED: Duration = Duration::from_millis(200);

#[derive(Default)]
struct State {
    /// Successes and failures per 100 ms of start time.
    per_100ms: BTreeMap<u64, [u64; 2]>,
    backends: HashMap<String, [u64; 3]>,
    latency_us: Vec<u32>,
    behind: u64,
    longest_gap: (u64, u64),
    bytes: u64,
}

/// Shared by every task of one driver.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// A request or lookup started at `start_ms` succeeded after `took`, answered by
    /// `backend` (if the answer names one).
    pub fn ok(&self, start_ms: u64, took: Duration, backend: Option<&str>) {
        let mut s = self.state.lock().expect("recorder lock");
        s.per_100ms.entry(start_ms / BUCKET_MS).or_default()[0] += 1;
        s.latency_us
            .push(took.as_micros().min(u32::MAX as u128) as u32);
        if let Some(b) = backend {
            let e = s
                .backends
                .entry(b.to_string())
                .or_insert([start_ms, start_ms, 0]);
            e[0] = e[0].min(start_ms);
            e[1] = e[1].max(start_ms);
            e[2] += 1;
        }
    }

    /// A request, lookup or stream connection started at `start_ms` failed after `took`.
    pub fn fail(&self, start_ms: u64, took: Duration, what: &str) {
        self.state
            .lock()
            .expect("recorder lock")
            .per_100ms
            .entry(start_ms / BUCKET_MS)
            .or_default()[1] += 1;
        line(&format!(
            "fail {start_ms} {} {}",
            took.as_millis(),
            what.replace('\n', " ")
        ));
    }

    /// The driver could not start a request on time (its own limit, not the network's).
    pub fn behind(&self) {
        self.state.lock().expect("recorder lock").behind += 1;
    }

    /// The stream delivered `n` bytes, the previous delivery having been at `last_ms`.
    pub fn stream_bytes(&self, n: usize, last_ms: u64, now: u64) {
        let gap = now.saturating_sub(last_ms);
        let mut s = self.state.lock().expect("recorder lock");
        s.bytes += n as u64;
        if gap > s.longest_gap.1 {
            s.longest_gap = (last_ms, gap);
        }
        drop(s);
        if gap >= GAP_REPORTED.as_millis() as u64 {
            line(&format!("gap {last_ms} {gap}"));
        }
    }

    /// A stream connection opened: `conn <local> <peer>` (the test finds its conntrack entry).
    pub fn connected(&self, local: std::net::SocketAddr, peer: std::net::SocketAddr) {
        line(&format!("conn {local} {peer}"));
    }

    /// `summary <json>` on stdout.
    pub fn print_summary(&self) {
        let mut s = self.state.lock().expect("recorder lock");
        s.latency_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if s.latency_us.is_empty() {
                return 0.0;
            }
            let i = ((s.latency_us.len() - 1) as f64 * p).round() as usize;
            s.latency_us[i] as f64 / 1000.0
        };
        let (ok, failed) = s
            .per_100ms
            .values()
            .fold((0, 0), |(o, f), v| (o + v[0], f + v[1]));
        let backends: serde_json::Map<String, serde_json::Value> = s
            .backends
            .iter()
            .map(|(b, [first, last, n])| {
                (
                    b.clone(),
                    json!({"first_ms": first, "last_ms": last, "count": n}),
                )
            })
            .collect();
        let summary = json!({
            "ok": ok,
            "failed": failed,
            "behind": s.behind,
            "per_100ms": s.per_100ms.iter().map(|(b, v)| (b.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "backends": backends,
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
            "stream": {"bytes": s.bytes, "longest_gap_ms": s.longest_gap.1, "longest_gap_from_ms": s.longest_gap.0},
        });
        line(&format!("summary {summary}"));
    }
}

fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
