//! The suite's workload: echo backends (socat answering their hostname and the peer address
//! they saw, over TCP and UDP), client pods, Services written as users write them, and the
//! client side of a request (nc for TCP, a small Python client for UDP) from pods and hosts.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::{eventually, run_with_timeout, Lab};

/// The toolbox image: socat, OpenBSD nc, dig, python3 (the machine's, in the lab).
pub const NETSHOOT: &str = "nicolaka/netshoot";

/// TCP port of the echo backends' main listener (containerPort `tcp-echo`).
pub const TCP_ECHO: u16 = 8080;
/// UDP port of the echo backends (containerPort `udp-echo`).
pub const UDP_ECHO: u16 = 8081;
/// A second TCP listener answering `alt <hostname>` (containerPort `tcp-alt`).
pub const TCP_ALT: u16 = 8082;

/// The backend: one server per listener, each answering one line `<hostname> <peer ip>
/// <port>` (`alt <hostname>` on the third): socat for TCP, a small Python loop for UDP (socat's
/// forking UDP server can lose a datagram to a child racing its parent for the socket). On
/// SIGTERM the listeners keep serving for `$DRAIN` seconds (what a preStop sleep gives a real
/// pod: time for the proxies to take the terminating endpoint out), then stop. They run in
/// their own session so the kubelet's SIGTERM to the container's process group reaches only
/// the shell.
const ECHO_SCRIPT: &str = r#"H=$(hostname); export H
trap 'sleep ${DRAIN:-0}; kill $P 2>/dev/null; exit 0' TERM
setsid socat TCP-LISTEN:8080,fork,reuseaddr 'SYSTEM:echo $H $SOCAT_PEERADDR $SOCAT_PEERPORT' & P=$!
setsid python3 -c "$UDP_ECHO_PY" & P="$P $!"
setsid socat TCP-LISTEN:8082,fork,reuseaddr 'SYSTEM:echo alt $H' & P="$P $!"
wait
"#;

/// The UDP listener of the echo backend.
const UDP_ECHO_PY: &str = r#"import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 8081))
while True:
    d, a = s.recvfrom(512)
    s.sendto(("%s %s %d\n" % (os.environ["H"], a[0], a[1])).encode(), a)
"#;

/// A UDP client that keeps one socket for `secs` seconds (or until the file `argv[6]`
/// exists), sending a datagram every `interval` seconds and printing `<unix time> ok
/// <answer>`, `<time> timeout` (no answer within a second) or `<time> error <errno text>` per
/// datagram. `connected`: the socket is connected to the Service (as resolvers and most
/// clients do) and, like most long-lived clients, reopened only when the kernel reports an
/// error on it. `unconnected`: one socket (one source port) sending with `sendto` for its whole
/// life, ignoring errors, the client kube-proxy's stale-conntrack problem used to black-hole.
pub const UDP_CLIENT: &str = r#"
import os, socket, sys, time
host, port, secs, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
connected = len(sys.argv) < 6 or sys.argv[5] == "connected"
stop = sys.argv[6] if len(sys.argv) > 6 else None
end = time.time() + secs
s = None
while True:
    try:
        if s is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(1.0 if secs > 0 else 3.0)
            if connected:
                s.connect((host, port))
            else:
                s.bind(("0.0.0.0", 0))
        if connected:
            s.send(b"x")
        else:
            s.sendto(b"x", (host, port))
        print("%.3f ok %s" % (time.time(), s.recv(512).decode().strip()), flush=True)
    except socket.timeout:
        print("%.3f timeout" % time.time(), flush=True)
    except OSError as e:
        print("%.3f error %s" % (time.time(), e.strerror or e), flush=True)
        if connected:
            s.close()
            s = None
    if time.time() >= end or (stop and os.path.exists(stop)):
        break
    time.sleep(interval)
"#;

/// One echo backend pod.
#[derive(Clone, Debug)]
pub struct Backend {
    pub name: String,
    pub node: String,
    pub ip: String,
}

/// The answer of an echo backend: who answered and the client address it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub host: String,
    pub peer_ip: String,
}

impl Reply {
    /// Parses `<hostname> <ip> <port>` (socat's address syntax keeps ':' for itself).
    pub fn parse(line: &str) -> Option<Reply> {
        let mut it = line.split_whitespace();
        let host = it.next()?.to_string();
        let ip: std::net::Ipv4Addr = it.next()?.parse().ok()?;
        let _port: u16 = it.next()?.parse().ok()?;
        Some(Reply { host, peer_ip: ip.to_string() })
    }
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// The echo container: listeners on named ports, ready once the TCP listener accepts.
pub fn echo_container(drain_s: u32) -> String {
    format!(
        "  - name: echo\n    image: {NETSHOOT}\n    command: [\"sh\", \"-c\", {}]\n    env: [{{name: DRAIN, value: \"{drain_s}\"}}, {{name: UDP_ECHO_PY, value: {}}}]\n    \
         ports:\n    - {{name: tcp-echo, containerPort: {TCP_ECHO}}}\n    - {{name: udp-echo, containerPort: {UDP_ECHO}, protocol: UDP}}\n    \
         - {{name: tcp-alt, containerPort: {TCP_ALT}}}\n    readinessProbe:\n      tcpSocket: {{port: {TCP_ECHO}}}\n      periodSeconds: 1\n",
        yaml_str(ECHO_SCRIPT),
        yaml_str(UDP_ECHO_PY)
    )
}

/// An echo backend pinned to `node`, with extra labels (`key: value` pairs).
pub fn echo_pod(name: &str, node: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {}", yaml_str(v))).collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{}}}\nspec:\n  nodeName: {node}\n  \
         terminationGracePeriodSeconds: 5\n  containers:\n{}---\n",
        labels.join(", "),
        echo_container(0)
    )
}

/// A Deployment of echo backends that drain for `drain_s` seconds when they are stopped.
pub fn echo_deployment(name: &str, replicas: u32, drain_s: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  \
         selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      \
         terminationGracePeriodSeconds: {}\n      containers:\n{}---\n",
        drain_s + 20,
        echo_container(drain_s).lines().map(|l| format!("    {l}\n")).collect::<String>()
    )
}

/// A toolbox client pod pinned to `node`.
pub fn client_pod(name: &str, node: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{role: client}}\nspec:\n  nodeName: {node}\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n---\n"
    )
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `.spec.clusterIP` of a Service in `default`.
pub fn cluster_ip(lab: &Lab, svc: &str) -> String {
    lab.kubectl(&["get", "service", svc, "-o", "jsonpath={.spec.clusterIP}"]).trim().to_string()
}

/// The nodePort of a Service's first port.
pub fn node_port(lab: &Lab, svc: &str) -> u16 {
    let p = lab.kubectl(&["get", "service", svc, "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    p.trim().parse().unwrap_or_else(|_| panic!("no nodePort on {svc}: {p:?}"))
}

/// Addresses of the ready endpoints of a Service (all its EndpointSlices).
pub fn ready_endpoints(lab: &Lab, svc: &str) -> BTreeSet<String> {
    let v = json(&lab.kubectl(&[
        "get",
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={svc}"),
        "-o",
        "json",
    ]));
    let mut out = BTreeSet::new();
    for s in v["items"].as_array().into_iter().flatten() {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            if e["conditions"]["ready"] != Value::Bool(false) {
                for a in e["addresses"].as_array().into_iter().flatten() {
                    out.insert(a.as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    out
}

/// Waits until a Service's ready endpoints are exactly `want`.
pub fn wait_endpoints(lab: &Lab, svc: &str, want: &BTreeSet<String>) {
    eventually(&format!("{svc}'s endpoints to be {want:?}"), Duration::from_secs(90), || {
        (ready_endpoints(lab, svc) == *want).then_some(())
    });
}

/// Where a request is sent from: a pod (through `lab exec`) or a lab host (`node-exec`).
#[derive(Clone, Copy, Debug)]
pub enum From<'a> {
    Pod(&'a str),
    Host(&'a str),
}

impl<'a> From<'a> {
    /// The `weft-lab` arguments that run a command there (`exec POD --` or `node-exec HOST --`).
    pub fn argv(self) -> Vec<&'a str> {
        match self {
            From::Pod(p) => vec!["exec", p, "--"],
            From::Host(h) => vec!["node-exec", h, "--"],
        }
    }
}

impl std::fmt::Display for From<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            From::Pod(p) => write!(f, "pod {p}"),
            From::Host(h) => write!(f, "host {h}"),
        }
    }
}

/// The outcome of one request: the answer line, or the client's error text, and how long it
/// took.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub ok: bool,
    pub text: String,
    pub took: Duration,
}

impl Outcome {
    pub fn reply(&self) -> Option<Reply> {
        if !self.ok {
            return None;
        }
        self.text.lines().find_map(Reply::parse)
    }

    /// The client failed with "Connection refused".
    pub fn refused(&self) -> bool {
        !self.ok && self.text.to_ascii_lowercase().contains("refused")
    }
}

/// Runs `cmd` from `from`; (success, stdout+stderr, time taken).
pub fn run_from(lab: &Lab, from: From<'_>, cmd: &[&str], timeout: Duration) -> Outcome {
    let mut full = from.argv();
    full.extend_from_slice(cmd);
    let t = Instant::now();
    let out = run_with_timeout(&mut lab.cmd(&full), timeout);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Outcome { ok: out.status.success() && !out.stdout.is_empty(), text, took: t.elapsed() }
}

/// One TCP request (`nc -v`, 3 s connect/idle timeout; -v names a refusal): the server's line.
pub fn tcp(lab: &Lab, from: From<'_>, addr: &str, port: u16) -> Outcome {
    run_from(lab, from, &["nc", "-v", "-w", "3", addr, &port.to_string()], Duration::from_secs(30))
}

/// One UDP request from a fresh connected socket (3 s timeout).
pub fn udp(lab: &Lab, from: From<'_>, addr: &str, port: u16) -> Outcome {
    let mut o = run_from(
        lab,
        from,
        &["python3", "-c", UDP_CLIENT, addr, &port.to_string(), "0", "0"],
        Duration::from_secs(30),
    );
    // The client prints `<time> ok <answer>`; keep the answer.
    let answer = o.text.lines().find_map(|l| l.split_once(" ok ").map(|(_, a)| a.to_string()));
    o.ok = o.ok && answer.is_some();
    if let Some(a) = answer {
        o.text = a;
    }
    o
}

/// A TCP request that must succeed; its reply.
pub fn tcp_reply(lab: &Lab, from: From<'_>, addr: &str, port: u16) -> Reply {
    let o = tcp(lab, from, addr, port);
    o.reply().unwrap_or_else(|| panic!("TCP {addr}:{port} from {from}: no echo answer ({:?}): {}", o.took, o.text))
}

/// A UDP request that must succeed; its reply.
pub fn udp_reply(lab: &Lab, from: From<'_>, addr: &str, port: u16) -> Reply {
    let o = udp(lab, from, addr, port);
    o.reply().unwrap_or_else(|| panic!("UDP {addr}:{port} from {from}: no echo answer ({:?}): {}", o.took, o.text))
}

/// The backends that answered `n` TCP requests, in order.
pub fn hosts_of(lab: &Lab, from: From<'_>, addr: &str, port: u16, n: usize) -> Vec<String> {
    (0..n).map(|_| tcp_reply(lab, from, addr, port).host).collect()
}

/// Retries a TCP request until it answers (the proxies program a new Service in the
/// background), then returns that reply.
pub fn first_tcp_reply(lab: &Lab, from: From<'_>, addr: &str, port: u16) -> Reply {
    eventually(&format!("{addr}:{port} to answer {from}"), Duration::from_secs(60), || {
        tcp(lab, from, addr, port).reply()
    })
}

/// Pods with a label selector: (name, node, ip).
pub fn pods_with(lab: &Lab, selector: &str) -> Vec<Backend> {
    let v = json(&lab.kubectl(&["get", "pods", "-l", selector, "-o", "json"]));
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Backend {
            name: p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            node: p["spec"]["nodeName"].as_str().unwrap_or_default().to_string(),
            ip: p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}
