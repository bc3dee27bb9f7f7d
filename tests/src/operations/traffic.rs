//! Running `weft-load` drivers in lab pods and hosts for the length of a test, and reading
//! back what each saw.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::Lab;
use crate::load::record::BUCKET_MS;
use crate::services::fixture::From;

/// A running driver.
pub struct Driver {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// One failed request, lookup or stream connection.
#[derive(Debug, Clone)]
pub struct Failure {
    pub start_ms: u64,
    pub took_ms: u64,
    pub what: String,
}

/// What a driver saw, once stopped.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: String,
    pub failures: Vec<Failure>,
    /// Stream stalls of 200 ms or more: (from ms, length ms).
    pub gaps: Vec<(u64, u64)>,
    pub summary: Value,
}

impl Driver {
    /// Starts `load_bin ARGS…` in `from` (a pod through `weft-lab exec`, which joins the
    /// node's cgroup as kubectl exec does, or a lab host).
    pub fn start(lab: &Lab, name: &str, from: From<'_>, load_bin: &str, args: &[&str]) -> Driver {
        let mut full = from.argv();
        full.push(load_bin);
        full.extend_from_slice(args);
        let mut child = lab
            .cmd(&full)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting driver {name}: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(l);
            }
        });
        Driver {
            name: name.to_string(),
            child,
            stdin,
            lines,
            reader: Some(reader),
        }
    }

    /// The stream connections opened so far: (local, peer).
    pub fn connections(&self) -> Vec<(String, String)> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter_map(|l| {
                let mut w = l.strip_prefix("conn ")?.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.to_string()))
            })
            .collect()
    }

    /// Closes the driver's stdin (its signal to stop), waits for its summary.
    pub fn stop(mut self) -> Run {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "driver {} did not stop within 30 s of its stdin closing",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(r) = self.reader.take() {
            r.join().expect("driver reader");
        }
        let lines = std::mem::take(&mut *self.lines.lock().expect("lines"));
        parse(&self.name, &lines)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A test that panicked: stop the driver rather than leave it running in a pod.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Reads a driver's output lines.
pub fn parse(name: &str, lines: &[String]) -> Run {
    let mut run = Run {
        name: name.to_string(),
        failures: vec![],
        gaps: vec![],
        summary: Value::Null,
    };
    for l in lines {
        if let Some(rest) = l.strip_prefix("fail ") {
            let mut w = rest.splitn(3, ' ');
            let (Some(s), Some(t), Some(what)) = (w.next(), w.next(), w.next()) else {
                continue;
            };
            if let (Ok(start_ms), Ok(took_ms)) = (s.parse(), t.parse()) {
                run.failures.push(Failure {
                    start_ms,
                    took_ms,
                    what: what.to_string(),
                });
            }
        } else if let Some(rest) = l.strip_prefix("gap ") {
            let mut w = rest
                .split_whitespace()
                .filter_map(|x| x.parse::<u64>().ok());
            if let (Some(from), Some(len)) = (w.next(), w.next()) {
                run.gaps.push((from, len));
            }
        } else if let Some(json) = l.strip_prefix("summary ") {
            run.summary = serde_json::from_str(json).unwrap_or(Value::Null);
        }
    }
    assert!(
        !run.summary.is_null(),
        "driver {name} ended without a summary; its output:\n{}",
        lines.join("\n")
    );
    run
}

impl Run {
    /// Successful requests that started in [from_ms, to_ms), to the driver's 100 ms buckets.
    pub fn ok_between(&self, from_ms: u64, to_ms: u64) -> u64 {
        let Some(per) = self.summary["per_100ms"].as_object() else {
            return 0;
        };
        per.iter()
            .filter_map(|(b, v)| Some((b.parse::<u64>().ok()?, v[0].as_u64()?)))
            .filter(|(b, _)| {
                b * BUCKET_MS >= from_ms / BUCKET_MS * BUCKET_MS && b * BUCKET_MS < to_ms
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// The longest stall overlapping [from_ms, to_ms), if one of 200 ms or more.
    pub fn longest_gap_between(&self, from_ms: u64, to_ms: u64) -> Option<u64> {
        self.gaps
            .iter()
            .filter(|(f, len)| f + len > from_ms && *f < to_ms)
            .map(|(_, len)| *len)
            .max()
    }

    /// When the backend named `host` last got a new connection (ms), if it ever did.
    pub fn last_served_by(&self, host: &str) -> Option<u64> {
        self.summary["backends"][host]["last_ms"].as_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_output_is_read_back() {
        let lines: Vec<String> = [
            "conn 10.0.0.2:40000 10.0.1.5:9000",
            "fail 1000 3 http 10.32.0.5:80: connect: Connection refused (os error 111)",
            "gap 2500 400",
            r#"summary {"ok": 7, "per_100ms": {"10": [3, 1], "20": [4, 0]}, "backends": {"web-a": {"first_ms": 1000, "last_ms": 2100, "count": 7}}}"#,
        ]
        .map(String::from)
        .to_vec();
        let run = parse("x", &lines);
        assert_eq!(run.failures.len(), 1);
        assert_eq!(run.failures[0].start_ms, 1000);
        assert!(run.failures[0].what.ends_with("(os error 111)"));
        assert_eq!(run.ok_between(1000, 2000), 3);
        assert_eq!(run.ok_between(1500, 3000), 4);
        assert_eq!(run.ok_between(900, 3000), 7);
        assert_eq!(run.longest_gap_between(2000, 2600), Some(400));
        assert_eq!(run.longest_gap_between(3000, 4000), None);
        assert_eq!(run.last_served_by("web-a"), Some(2100));
        assert_eq!(run.last_served_by("web-b"), None);
    }
}
