//! One operations run under load: the workload deployed, the five drivers started (HTTP to a
//! ClusterIP and a NodePort, a stream through each, DNS), steady spells and DaemonSet rollouts
//! as events, and at the end the per-event report with each node's counters.

use std::time::Duration;

use super::endpoints::{no_ready_endpoint, ReadyWatch};
use super::report::{attribute, now_ms, render, Attributed, Event};
use super::traffic::{Driver, Run};
use super::workload::{self, CLIENT, STREAM_PORT, WEB_PORT};
use crate::lab::{eventually, Lab};
use crate::services::fixture::{cluster_ip, node_port, From};
use crate::weft::{weft_json, OUTSIDE};

/// New connections per second of each HTTP driver.
pub const RATE: u32 = 500;
/// Lookups per second.
pub const DNS_RATE: u32 = 20;
/// The HTTP drivers' names.
pub const HTTP_DRIVERS: [&str; 2] = ["clusterip http", "nodeport http"];
/// The stream drivers' names.
pub const STREAM_DRIVERS: [&str; 2] = ["clusterip stream", "nodeport stream"];

/// Where the load goes.
pub struct Targets {
    /// The node of the client pod and the NodePort the outside host reaches.
    pub entry: String,
    pub entry_ip: String,
    pub web_ip: String,
    pub web_node_port: u16,
    pub stream_ip: String,
    pub stream_node_port: u16,
}

/// Deploys `web` (5 pods, none on the entry node `nodes[0]`), the stream server on `nodes[2]`
/// and the client pod on the entry node, and waits for them.
pub fn deploy(lab: &Lab, nodes: &[(String, String)], load_bin: &str) -> Targets {
    let (entry, entry_ip) = nodes[0].clone();
    let manifest = format!(
        "{}{}{}",
        workload::web(5, &entry),
        workload::stream(&nodes[2].0, load_bin),
        workload::client(&entry)
    );
    lab.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    lab.ok(
        &["kubectl", "rollout", "status", "deployment/web", "--timeout=300s"],
        Duration::from_secs(320),
    );
    lab.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/stream",
        &format!("pod/{CLIENT}"),
        "--timeout=120s",
    ]);
    Targets {
        entry,
        entry_ip,
        web_ip: cluster_ip(lab, "web"),
        web_node_port: node_port(lab, "web"),
        stream_ip: cluster_ip(lab, "stream"),
        stream_node_port: node_port(lab, "stream"),
    }
}

/// The drivers running, and what the report compares with.
pub struct Load {
    pub drivers: Vec<Driver>,
    load_bin: String,
    /// The stream drivers' targets: the ClusterIP's and the NodePort's `IP:port`.
    streams: [String; 2],
    endpoints: ReadyWatch,
    pub started_ms: u64,
    nodes: Vec<String>,
    /// Drivers stopped before the end, with what they saw.
    stopped: Vec<Run>,
    drops_before: Vec<Vec<(String, u64)>>,
    counters_before: Vec<Vec<(String, u64)>>,
    tcp_before: Vec<(String, u64)>,
}

/// What a finished run saw.
pub struct Finished {
    pub runs: Vec<Run>,
    pub attributed: Vec<Attributed>,
    pub elapsed_s: f64,
}

impl Load {
    /// Starts the five drivers against `t`.
    pub fn start(lab: &Lab, nodes: &[(String, String)], t: &Targets, load_bin: &str) -> Load {
        let web = format!("{}:{WEB_PORT}", t.web_ip);
        let web_np = format!("{}:{}", t.entry_ip, t.web_node_port);
        let stream_c = format!("{}:{STREAM_PORT}", t.stream_ip);
        let stream_n = format!("{}:{}", t.entry_ip, t.stream_node_port);
        let (rate, dns_rate) = (RATE.to_string(), DNS_RATE.to_string());
        let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
        let drops_before = names.iter().map(|n| status_counts(lab, n, "drops")).collect();
        let counters_before = names.iter().map(|n| status_counts(lab, n, "service_counters")).collect();
        let tcp_before = outside_tcp_counters(lab);
        let endpoints = ReadyWatch::start(lab);
        let started_ms = now_ms();
        let mut drivers = vec![
            Driver::start(lab, HTTP_DRIVERS[0], From::Pod(CLIENT), load_bin, &["http", &web, "/hostname", &rate]),
            Driver::start(lab, HTTP_DRIVERS[1], From::Host("outside"), load_bin, &["http", &web_np, "/hostname", &rate]),
        ];
        let streams = [stream_c, stream_n];
        drivers.extend(stream_drivers(lab, load_bin, &streams));
        drivers.push(Driver::start(
            lab,
            "dns",
            From::Pod(CLIENT),
            load_bin,
            &["dns", "kubernetes.default.svc.cluster.local.", &dns_rate],
        ));
        Load {
            drivers,
            load_bin: load_bin.to_string(),
            streams,
            endpoints,
            started_ms,
            nodes: names,
            stopped: vec![],
            drops_before,
            counters_before,
            tcp_before,
        }
    }

    /// The outside host's local port of its stream connection, once connected.
    pub fn outside_stream_port(&self) -> u16 {
        let driver = self.drivers.iter().find(|d| d.name == STREAM_DRIVERS[1]).expect("the outside host's stream runs");
        eventually("the outside host's stream to connect", Duration::from_secs(10), || {
            driver
                .connections()
                .first()
                .and_then(|(local, _)| local.rsplit(':').next()?.parse::<u16>().ok())
        })
    }

    /// Stops the two stream drivers now (their connections end); the report keeps what they saw.
    pub fn stop_streams(&mut self) {
        let (streams, rest): (Vec<Driver>, Vec<Driver>) = std::mem::take(&mut self.drivers)
            .into_iter()
            .partition(|d| STREAM_DRIVERS.contains(&d.name.as_str()));
        self.drivers = rest;
        self.stopped.extend(streams.into_iter().map(Driver::stop));
    }

    /// Starts the two stream drivers again, on new connections.
    pub fn start_streams(&mut self, lab: &Lab) {
        self.drivers.extend(stream_drivers(lab, &self.load_bin, &self.streams));
    }

    /// Stops every driver and attributes each failure to an event. Failures while a Service
    /// had no ready endpoint at all are the cluster's (after an API server outage the node
    /// lifecycle controller marks every pod not ready for a while, and every proxy refuses).
    /// Prints the report and each node's drops and Service path counters during the run.
    pub fn finish(self, lab: &Lab, events: &[Event]) -> Finished {
        let mut runs = self.stopped;
        runs.extend(self.drivers.into_iter().map(Driver::stop));
        let elapsed_s = (now_ms() - self.started_ms) as f64 / 1000.0;
        let samples = self.endpoints.stop();
        let mut anytime = no_ready_endpoint(&samples, "default/web", 1000, &HTTP_DRIVERS);
        anytime.extend(no_ready_endpoint(&samples, "default/stream", 1000, &STREAM_DRIVERS));
        anytime.extend(no_ready_endpoint(&samples, "kube-system/kube-dns", 1000, &["dns"]));
        for x in &anytime {
            eprintln!("{} ms from {}: {}", x.to_ms.saturating_sub(x.from_ms), x.from_ms, x.why);
        }
        let attributed = attribute(events, &runs, &anytime);
        eprintln!("\noperations under load ({elapsed_s:.0} s):\n{}", render(events, &runs, &attributed));
        for ((node, drops), counters) in self.nodes.iter().zip(&self.drops_before).zip(&self.counters_before) {
            eprintln!(
                "{node}'s datapath drops during the run: {:?}; Service path counters: {:?}",
                grown(drops, &status_counts(lab, node, "drops")),
                grown(counters, &status_counts(lab, node, "service_counters"))
            );
        }
        eprintln!(
            "the outside host's TCP counters during the run: {:?}",
            grown(&self.tcp_before, &outside_tcp_counters(lab))
        );
        Finished { runs, attributed, elapsed_s }
    }
}

/// A stream through the ClusterIP from the client pod, and through the NodePort from the
/// outside host.
fn stream_drivers(lab: &Lab, load_bin: &str, targets: &[String; 2]) -> [Driver; 2] {
    [
        Driver::start(lab, STREAM_DRIVERS[0], From::Pod(CLIENT), load_bin, &["stream", &targets[0]]),
        Driver::start(lab, STREAM_DRIVERS[1], From::Host("outside"), load_bin, &["stream", &targets[1]]),
    ]
}

impl Finished {
    /// The HTTP drivers kept the pace (90% of `RATE` over the run).
    pub fn assert_pace(&self) {
        for run in self.runs.iter().filter(|r| HTTP_DRIVERS.contains(&r.name.as_str())) {
            let tried = (run.summary["ok"].as_u64().unwrap_or(0) + run.summary["failed"].as_u64().unwrap_or(0)) as f64;
            assert!(
                tried >= 0.9 * RATE as f64 * self.elapsed_s,
                "{}: {tried} connections in {:.0} s is under 90% of {RATE}/s (driver behind {} times)",
                run.name,
                self.elapsed_s,
                run.summary["behind"]
            );
        }
    }

    /// No stream stalled for a second or more.
    pub fn assert_streams_flowed(&self) {
        for run in self.runs.iter().filter(|r| STREAM_DRIVERS.contains(&r.name.as_str())) {
            let gap = run.summary["stream"]["longest_gap_ms"].as_u64().unwrap_or(u64::MAX);
            assert!(gap < 1000, "{}: the stream stalled for {gap} ms", run.name);
        }
    }

    /// The failures nobody excused.
    pub fn unexcused(&self) -> Vec<&Attributed> {
        self.attributed.iter().filter(|a| a.excused.is_none()).collect()
    }
}

/// The outside host's stream has its conntrack entry on the entry node (its translation is
/// weft's): checked after every operation that must keep it.
pub fn assert_stream_entry_kept(lab: &Lab, t: &Targets, port: u16, after: &str) {
    let entries = weft_json(lab, &t.entry, &["ct", "list"]);
    let found = entries.as_array().expect("ct entries").iter().any(|e| {
        e["kind"] == "service" && e["src"] == OUTSIDE && e["sport"] == port && e["dport"] == t.stream_node_port
    });
    assert!(
        found,
        "after {after}: the stream's conntrack entry ({OUTSIDE}:{port}) is gone from {}:\n{entries:#}",
        t.entry
    );
}

/// Nothing happens for `d`: the baseline every event is compared with.
pub fn steady(name: &str, d: Duration) -> Event {
    let mut e = Event::new(name, now_ms());
    std::thread::sleep(d);
    e.to_ms = now_ms();
    e
}

/// Waits for the DaemonSet's rollout to finish on every node.
pub fn rollout_status(lab: &Lab) {
    let args = ["kubectl", "-n", "weft-system", "rollout", "status", "ds/weft", "--timeout=600s"];
    lab.ok(&args, Duration::from_secs(620));
}

/// One of `weft status`'s named counts on `node` (`drops` by reason, `service_counters` such as
/// `reply_restored`).
pub fn status_counts(lab: &Lab, node: &str, field: &str) -> Vec<(String, u64)> {
    let st = weft_json(lab, node, &["status"]);
    serde_json::from_value(st[field].clone()).expect("[name, count] pairs")
}

/// The outside host's TCP counters that show lost handshakes (`nstat`).
pub fn outside_tcp_counters(lab: &Lab) -> Vec<(String, u64)> {
    let names = ["TcpExtTCPSynRetrans", "TcpRetransSegs", "TcpOutRsts", "TcpEstabResets", "TcpAttemptFails"];
    let mut cmd = vec!["node-exec", "outside", "--", "nstat", "-az"];
    cmd.extend(names);
    lab.ok(&cmd, Duration::from_secs(30))
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// The counters that grew from `before` to `after`, with how much.
pub fn grown(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(n, a)| {
            let b = before.iter().find(|(m, _)| m == n).map_or(0, |(_, b)| *b);
            (a > &b).then(|| (n.clone(), a - b))
        })
        .collect()
}

/// Polls `http://IP/hostname` from the client pod until it answers (`None` if not within
/// `timeout`).
pub fn answers(lab: &Lab, ip: &str, timeout: Duration) -> Option<()> {
    let probe = format!("until curl -sf -m 0.2 -o /dev/null http://{ip}:{WEB_PORT}/hostname; do sleep 0.02; done");
    let (ok, _) = lab.exec(
        CLIENT,
        &["timeout", &timeout.as_secs().to_string(), "sh", "-c", &probe],
        timeout + Duration::from_secs(10),
    );
    ok.then_some(())
}
