//! Services on real veths: pods in network namespaces wired like the CNI plugin wires them,
//! `from_pod` attached, Services programmed through the reconciler, and real sockets (socat) as
//! clients and servers. This is where the kernel's checksum offload (CHECKSUM_PARTIAL on veth)
//! meets the datapath's rewrites, which BPF_PROG_TEST_RUN cannot show. Root only; fails (not
//! skips) without root, bpffs, `ip` or `socat`.

mod support;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::bpf::*;
use support::guards::Proc;
use support::lb::{active, clusterip};
use support::netns::Netns;
use support::require_tools;
use support::frames::{l4_checksum_or_seed_ok, seen, IPPROTO_TCP, TCP_SYN};
use support::veth::{capture, node_netns, register_and_attach, Pod};
use weft::datapath::Datapath;
use weft::lb::Protocol;

const VIP: &str = "10.32.0.10";
const SELF_VIP: &str = "10.32.0.11";
const EMPTY_VIP: &str = "10.32.0.12";

struct Scene {
    _pins: PinDir,
    _node: Netns,
    client: Pod,
    server: Pod,
    _servers: Vec<Proc>,
    dp: Datapath,
}

fn ip(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

impl Scene {
    fn new(test: &str) -> Self {
        require_tools(&["socat"]);
        let pins = PinDir::new(test);
        let node = node_netns();
        node.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]);
        let client = Pod::new(&node, "c", "wlbc", "10.200.0.5");
        let server = Pod::new(&node, "s", "wlbs", "10.200.0.7");
        let mut dp = Datapath::open(pins.path()).expect("open datapath");
        register_and_attach(&mut dp, &node, &[&client, &server]);
        let b = ip(&server.ip);
        dp.upsert_service(&clusterip("web", ip(VIP), 80, Protocol::Tcp, &[active(b, 8080)]))
            .unwrap();
        dp.upsert_service(&clusterip("dns", ip(VIP), 53, Protocol::Udp, &[active(b, 5353)]))
            .unwrap();
        dp.upsert_service(&clusterip("self", ip(SELF_VIP), 80, Protocol::Tcp, &[active(b, 8080)]))
            .unwrap();
        dp.upsert_service(&clusterip("empty-tcp", ip(EMPTY_VIP), 80, Protocol::Tcp, &[]))
            .unwrap();
        dp.upsert_service(&clusterip("empty-udp", ip(EMPTY_VIP), 53, Protocol::Udp, &[]))
            .unwrap();
        // Servers that answer with the address they saw the client at.
        let servers = vec![
            spawn(&server.ns, &["socat", "TCP4-LISTEN:8080,fork,reuseaddr", "SYSTEM:echo tcp-peer=$SOCAT_PEERADDR"]),
            spawn(&server.ns, &["socat", "UDP4-RECVFROM:5353,fork", "SYSTEM:echo udp-peer=$SOCAT_PEERADDR"]),
        ];
        Self {
            _pins: pins,
            _node: node,
            client,
            server,
            _servers: servers,
            dp,
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

/// Run a socat client in `ns` sending `input`; its output (stdout + stderr) and success.
fn socat(ns: &Netns, input: &str, target: &str) -> (bool, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "socat", "-T2", "-", target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn socat");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Retry while the server may still be starting.
fn socat_until(ns: &Netns, input: &str, target: &str, want: &str) -> String {
    let start = Instant::now();
    loop {
        let (_, out) = socat(ns, input, target);
        if out.contains(want) || start.elapsed() > Duration::from_secs(5) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tcp_and_udp_through_a_clusterip_reach_the_backend_and_answer_from_the_clusterip() {
    let s = Scene::new("lbveth-basic");
    // A TCP connection only completes if the SYN-ACK comes back from the ClusterIP, and a
    // connected UDP socket only accepts a reply from the address it connected to.
    let want = format!("tcp-peer={}", s.client.ip);
    let frames = capture(&s.server.ns, "eth0", Duration::from_millis(1500));
    let out = socat_until(&s.client.ns, "", &format!("TCP4:{VIP}:80"), &want);
    assert!(out.contains(&want), "TCP via the ClusterIP: {out}");
    let frames = frames.join().unwrap();
    let syn = frames
        .iter()
        .find(|f| {
            f.len() > 34 && f[12..14] == [8, 0] && {
                let p = seen(f);
                p.proto == IPPROTO_TCP && p.dport == 8080 && p.tcp_flags == TCP_SYN
            }
        })
        .expect("the backend received the SYN");
    assert_eq!(seen(syn).dst, ip(&s.server.ip));
    assert!(
        l4_checksum_or_seed_ok(syn),
        "the SYN's TCP checksum (complete or offload seed) does not match its translated \
         addresses: {syn:02x?}"
    );
    let want = format!("udp-peer={}", s.client.ip);
    let out = socat_until(&s.client.ns, "hello\n", &format!("UDP4:{VIP}:53"), &want);
    assert!(out.contains(&want), "UDP via the ClusterIP: {out}");
    assert_no_drops(&s.dp);
}

#[test]
fn a_pod_reaches_itself_through_a_service_it_backs() {
    let s = Scene::new("lbveth-hairpin");
    let want = "tcp-peer=169.254.42.1";
    let out = socat_until(&s.server.ns, "", &format!("TCP4:{SELF_VIP}:80"), want);
    assert!(out.contains(want), "hairpin: {out}");
    assert_no_drops(&s.dp);
}

#[test]
fn a_service_without_backends_is_refused_at_once() {
    let s = Scene::new("lbveth-refused");
    let t = Instant::now();
    let (ok, out) = socat(&s.client.ns, "", &format!("TCP4:{EMPTY_VIP}:80"));
    assert!(!ok && out.contains("Connection refused"), "TCP: {out}");
    // The ICMP port unreachable reaches the connected UDP socket as ECONNREFUSED.
    let (ok, out) = socat(&s.client.ns, "hello\n", &format!("UDP4:{EMPTY_VIP}:53"));
    assert!(!ok && out.contains("Connection refused"), "UDP: {out}");
    assert!(t.elapsed() < Duration::from_secs(2), "refusals are immediate, not timeouts");
    assert!(counter(&s.dp, "service_no_backend") >= 2);
}
