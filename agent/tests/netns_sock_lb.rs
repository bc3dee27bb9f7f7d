//! Socket-level load balancing with real processes: a client in its own network namespace,
//! placed in a test cgroup v2 directory that has the `sock4_*` programs attached, reaches a
//! backend in another namespace through a Service address its namespace has no route to;
//! `getpeername()` and `recvfrom()` report the Service address. A process outside the cgroup
//! is not touched. Root only; fails (not skips) without root, bpffs, cgroup v2, `ip`, `socat`,
//! `nsenter` or `python3`.

mod support;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::bpf::*;
use support::cgroup::Cgroup;
use support::guards::Proc;
use support::lb::{active, clusterip};
use support::netns::Netns;
use support::require_tools;
use weft::datapath::{Datapath, SockLbState};
use weft::lb::Protocol;

const VIP: &str = "10.96.0.10";
const CLIENT_IP: &str = "10.91.0.1";
const BACKEND_IP: &str = "10.91.0.2";

/// What the client does, printed as one JSON object: a connected TCP socket (peer and the
/// server's answer), a connected UDP socket, an unconnected UDP socket (reply source), and a
/// connect to a Service without backends.
const CLIENT: &str = r#"
import json, socket, sys
vip = sys.argv[1]
out = {}
def attempt(name, f):
    try:
        out[name] = f()
    except OSError as e:
        out[name] = "error: " + (e.strerror or type(e).__name__)
def tcp():
    s = socket.create_connection((vip, 80), timeout=3)
    peer = list(s.getpeername())
    answer = s.recv(200).decode().strip()
    s.close()
    return {"peer": peer, "answer": answer}
def udp_connected():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    u.connect((vip, 53))
    u.send(b"hi\n")
    answer = u.recv(200).decode().strip()
    return {"peer": list(u.getpeername()), "answer": answer}
def udp_unconnected():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    u.sendto(b"hi\n", (vip, 53))
    data, src = u.recvfrom(200)
    return {"from": list(src), "answer": data.decode().strip()}
def refused():
    socket.create_connection((vip, 81), timeout=3).close()
    return "connected"
attempt("tcp", tcp)
attempt("udp_connected", udp_connected)
attempt("udp_unconnected", udp_unconnected)
attempt("refused", refused)
print(json.dumps(out))
"#;

struct Scene {
    _pins: PinDir,
    client: Netns,
    _server: Netns,
    _servers: Vec<Proc>,
    cgroup: Cgroup,
    dp: Datapath,
}

fn octets(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

impl Scene {
    fn new(test: &str) -> Self {
        require_tools(&["ip", "socat", "nsenter", "python3"]);
        let pins = PinDir::new(test);
        let client = Netns::unique("wsl", "c");
        let server = Netns::unique("wsl", "s");
        client.exec(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &server.name]);
        for (ns, ip) in [(&client, CLIENT_IP), (&server, BACKEND_IP)] {
            ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ns.exec(&["ip", "link", "set", "eth0", "up"]);
        }
        let mut dp = Datapath::open(pins.path()).expect("open datapath");
        let b = octets(BACKEND_IP);
        dp.upsert_service(&clusterip("web", octets(VIP), 80, Protocol::Tcp, &[active(b, 8080)]))
            .unwrap();
        dp.upsert_service(&clusterip("dns", octets(VIP), 53, Protocol::Udp, &[active(b, 5353)]))
            .unwrap();
        dp.upsert_service(&clusterip("empty", octets(VIP), 81, Protocol::Tcp, &[]))
            .unwrap();
        let servers = vec![
            spawn(&server, &["socat", "TCP4-LISTEN:8080,fork,reuseaddr", "SYSTEM:echo tcp-peer=$SOCAT_PEERADDR"]),
            spawn(&server, &["socat", "UDP4-RECVFROM:5353,fork", "SYSTEM:echo udp-peer=$SOCAT_PEERADDR"]),
        ];
        let cgroup = Cgroup::new(test);
        Self {
            _pins: pins,
            client,
            _server: server,
            _servers: servers,
            cgroup,
            dp,
        }
    }

    /// Run the client in the client namespace, inside the test cgroup or not.
    fn run_client(&self, in_cgroup: bool) -> Value {
        let script = format!(
            "nsenter --net={} -- python3 -c '{}' {VIP}",
            self.client.path(),
            CLIENT.replace('\'', "'\\''")
        );
        let mut cmd = if in_cgroup {
            self.cgroup.command(&script)
        } else {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("exec {script}"));
            c
        };
        let out = cmd.stderr(Stdio::inherit()).output().expect("run the client");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("client output {text:?}: {e}"))
    }

    /// The client's result once the servers answer (they may still be starting).
    fn run_client_until_served(&self) -> Value {
        let start = Instant::now();
        loop {
            let v = self.run_client(true);
            // Every server answered: under load a forking UDP server can miss a 3 s window,
            // which is the server's delay, not the translation under test.
            let served = ["tcp", "udp_connected", "udp_unconnected"].iter().all(|k| v[*k]["answer"].is_string());
            if served || start.elapsed() > Duration::from_secs(15) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn spawn(ns: &Netns, cmd: &[&str]) -> Proc {
    Proc(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server"),
    )
}

#[test]
fn connected_tcp_and_udp_reach_the_backend_and_see_the_service_address() {
    let mut s = Scene::new("socklb");
    s.dp.attach_sock_lb(&s.cgroup.path).expect("attach");

    let v = s.run_client_until_served();

    assert_eq!(v["tcp"]["peer"], serde_json::json!([VIP, 80]), "getpeername shows the Service: {v}");
    assert_eq!(v["tcp"]["answer"], format!("tcp-peer={CLIENT_IP}"), "{v}");
    assert_eq!(v["udp_connected"]["peer"], serde_json::json!([VIP, 53]), "{v}");
    assert_eq!(v["udp_connected"]["answer"], format!("udp-peer={CLIENT_IP}"), "{v}");
    assert_eq!(
        v["udp_unconnected"]["from"],
        serde_json::json!([VIP, 53]),
        "recvfrom shows the Service as the source: {v}"
    );
    assert_eq!(v["refused"], "error: Connection refused", "{v}");
    assert_eq!(s.dp.sock_lb_state(&s.cgroup.path).unwrap(), SockLbState::Current);
}

#[test]
fn a_process_outside_the_cgroup_is_not_translated_and_detach_stops_translation() {
    let mut s = Scene::new("socklb-scope");
    s.dp.attach_sock_lb(&s.cgroup.path).expect("attach");
    assert!(s.run_client_until_served()["tcp"]["answer"].is_string());

    // Same namespace, outside the cgroup: the Service address is just an unroutable address.
    let outside = s.run_client(false);
    let tcp = outside["tcp"].as_str().unwrap_or_default();
    assert!(tcp.starts_with("error"), "outside the cgroup: {outside}");

    s.dp.detach_sock_lb(&s.cgroup.path).expect("detach");
    s.dp.detach_sock_lb(&s.cgroup.path).expect("detaching twice is not an error");
    assert_eq!(s.dp.sock_lb_state(&s.cgroup.path).unwrap(), SockLbState::Missing);
    let after = s.run_client(true);
    assert!(after["tcp"].as_str().unwrap_or_default().starts_with("error"), "detached: {after}");
}

#[test]
fn a_restarted_agent_takes_over_the_socket_programs_without_a_gap() {
    let mut s = Scene::new("socklb-restart");
    s.dp.attach_sock_lb(&s.cgroup.path).expect("attach");
    let pins = s._pins.path().to_path_buf();
    let mut next = Datapath::open(&pins).expect("a second agent opens the same pins");
    assert_eq!(next.sock_lb_state(&s.cgroup.path).unwrap(), SockLbState::Previous);
    assert!(s.run_client_until_served()["tcp"]["answer"].is_string(), "still translated");
    next.attach_sock_lb(&s.cgroup.path).expect("take over");
    next.attach_sock_lb(&s.cgroup.path).expect("attach is idempotent");
    assert_eq!(next.sock_lb_state(&s.cgroup.path).unwrap(), SockLbState::Current);
    // Unpinning releases the old link after an RCU grace period (bpffs frees inodes then).
    let start = Instant::now();
    while connect4_programs(&s.cgroup.path).len() > 1 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        connect4_programs(&s.cgroup.path).len(),
        1,
        "the earlier agent's connect4 program is detached"
    );
    assert_eq!(s.run_client(true)["tcp"]["peer"], serde_json::json!([VIP, 80]));
}

/// One unconnected UDP socket: ten datagrams to the Service, a line of answers, then (once the
/// marker file exists) ten more and another line.
const STICKY_CLIENT: &str = r#"
import json, os, socket, sys, time
vip, port, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
def batch():
    out = []
    for _ in range(10):
        u.sendto(b"hi\n", (vip, port))
        try:
            out.append(u.recvfrom(200)[0].decode().strip())
        except socket.timeout:
            out.append("timeout")
    print(json.dumps(out), flush=True)
batch()
while not os.path.exists(marker):
    time.sleep(0.05)
batch()
"#;

#[test]
fn an_unconnected_udp_socket_keeps_its_backend_until_that_backend_goes() {
    use std::io::BufRead;
    let mut s = Scene::new("socklb-sticky");
    // Two backends of their own (a backend another Service also lists stays valid for every
    // Service while that one does: see "Services as built", limits).
    // One process per backend answering every datagram in turn (socat's forking UDP server
    // can lose a datagram to a child that races its parent for the socket).
    let _servers = [("5354", "first"), ("5355", "second")].map(|(port, answer)| {
        let server = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', {port}))\n\
             while True:\n    d, a = s.recvfrom(200)\n    s.sendto(b'{answer}', a)\n"
        );
        let p = spawn(&s._server, &["python3", "-c", &server]);
        let start = Instant::now();
        while !s._server.exec(&["ss", "-Hlun", "sport", &format!("= :{port}")]).contains(port) {
            assert!(start.elapsed() < Duration::from_secs(5), "the backend on {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    });
    let b = octets(BACKEND_IP);
    let both = [active(b, 5354), active(b, 5355)];
    s.dp.upsert_service(&clusterip("pair", octets(VIP), 55, Protocol::Udp, &both)).unwrap();
    s.dp.attach_sock_lb(&s.cgroup.path).expect("attach");
    s.run_client_until_served();

    let marker = std::env::temp_dir().join(format!("weft-sock-sticky-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let script = format!(
        "nsenter --net={} -- python3 -c '{}' {VIP} 55 {}",
        s.client.path(),
        STICKY_CLIENT.replace('\'', "'\\''"),
        marker.display()
    );
    let mut child = s.cgroup.command(&script).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let batch = |l: Option<std::io::Result<String>>| -> Vec<String> {
        serde_json::from_str(&l.expect("a batch").expect("client output")).expect("a JSON batch")
    };
    let first = batch(lines.next());
    assert!(first.iter().all(|a| *a == first[0] && a != "timeout"), "one socket, one backend: {first:?}");

    // The backend it kept leaves the Service: the same socket moves to the other one.
    let kept = if first[0] == "second" { 1 } else { 0 };
    s.dp.upsert_service(&clusterip("pair", octets(VIP), 55, Protocol::Udp, &[both[1 - kept]])).unwrap();
    std::fs::write(&marker, b"").unwrap();
    let second = batch(lines.next());
    assert!(second.iter().all(|a| *a != first[0]), "moved off the removed backend: {second:?}");
    assert!(second.iter().all(|a| *a == second[0] && a != "timeout"), "{second:?}");
    let _ = child.wait();
    let _ = std::fs::remove_file(&marker);
}

/// Ids of the programs attached at `cgroup/connect4` of `cgroup` (BPF_PROG_QUERY; aya 0.14 has
/// no public query for cgroup sock_addr programs).
fn connect4_programs(cgroup: &std::path::Path) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_CGROUP_INET4_CONNECT: u32 = 10;
    let dir = std::fs::File::open(cgroup).unwrap();
    let mut ids = [0u32; 16];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(dir.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&BPF_CGROUP_INET4_CONNECT.to_ne_bytes());
    attr[16..24].copy_from_slice(&(ids.as_mut_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&(ids.len() as u32).to_ne_bytes());
    // SAFETY: BPF_PROG_QUERY reads the fd and attach type and writes at most prog_cnt ids into
    // `ids`, which outlives the call; `attr` is large enough for the kernel's union.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_QUERY, attr.as_mut_ptr(), attr.len()) };
    assert_eq!(r, 0, "BPF_PROG_QUERY: {}", std::io::Error::last_os_error());
    let n = u32::from_ne_bytes(attr[24..28].try_into().unwrap()) as usize;
    ids[..n].to_vec()
}
