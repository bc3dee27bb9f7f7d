//! The benchmark's topologies: two "pods" joined by a bare veth, by a Linux bridge (what the
//! reference `bridge` CNI plugin builds), and by weft. Every namespace, process and pin is
//! removed when the topology is dropped.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util;

/// Two endpoints to measure between: `client` netns talks to `server_ip` in `server` netns.
pub struct Topology {
    pub name: &'static str,
    pub client: String,
    pub server: String,
    pub server_ip: Ipv4Addr,
    namespaces: Vec<String>,
    agent: Option<Child>,
    pin_dir: Option<PathBuf>,
    tmp: Option<PathBuf>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if let Some(p) = &self.pin_dir {
            let _ = std::fs::remove_dir_all(p);
        }
        if let Some(t) = &self.tmp {
            let _ = std::fs::remove_dir_all(t);
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn new_topology(name: &'static str, namespaces: &[&str]) -> Result<Topology> {
    let mut t = Topology {
        name,
        client: String::new(),
        server: String::new(),
        server_ip: Ipv4Addr::UNSPECIFIED,
        namespaces: Vec::new(),
        agent: None,
        pin_dir: None,
        tmp: None,
    };
    for ns in namespaces {
        // A namespace left by an interrupted earlier run would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        ip(&["netns", "add", ns])?;
        t.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    Ok(t)
}

/// Two namespaces joined by one veth pair: the physical limit of the measurement.
pub fn veth() -> Result<Topology> {
    let (a, b) = ("wb-veth-a", "wb-veth-b");
    let mut t = new_topology("veth", &[a, b])?;
    ip(&["-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b])?;
    for (ns, addr) in [(a, "10.251.0.1/24"), (b, "10.251.0.2/24")] {
        ip(&["-n", ns, "addr", "add", addr, "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    }
    (t.client, t.server, t.server_ip) = (a.into(), b.into(), Ipv4Addr::new(10, 251, 0, 2));
    Ok(t)
}

/// Two pods on one node joined by a Linux bridge with the gateway on it, as the reference
/// `bridge` plugin (isGateway) plus `host-local` lays them out.
pub fn bridge() -> Result<Topology> {
    let (node, a, b) = ("wb-br-node", "wb-br-a", "wb-br-b");
    let mut t = new_topology("bridge", &[node, a, b])?;
    ip(&["-n", node, "link", "add", "cni0", "type", "bridge"])?;
    ip(&["-n", node, "addr", "add", "10.251.1.1/24", "dev", "cni0"])?;
    ip(&["-n", node, "link", "set", "cni0", "up"])?;
    for (i, (ns, addr)) in [(a, "10.251.1.2/24"), (b, "10.251.1.3/24")].into_iter().enumerate() {
        let host = format!("veth{i}");
        ip(&["-n", node, "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        ip(&["-n", node, "link", "set", &host, "master", "cni0", "up"])?;
        ip(&["-n", ns, "addr", "add", addr, "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "route", "add", "default", "via", "10.251.1.1"])?;
    }
    (t.client, t.server, t.server_ip) = (a.into(), b.into(), Ipv4Addr::new(10, 251, 1, 3));
    Ok(t)
}

/// Two pods on one node wired by weft: `weft agent` in the node namespace, pods added by
/// running the CNI plugin exactly as a container runtime does.
pub fn weft(weft_bin: &Path) -> Result<Topology> {
    let (node, a, b) = ("wb-weft-node", "wb-weft-a", "wb-weft-b");
    let mut t = new_topology("weft", &[node, a, b])?;
    let tmp = std::env::temp_dir().join(format!("weft-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    t.tmp = Some(tmp.clone());
    let pin_dir = PathBuf::from("/sys/fs/bpf/wb-weft");
    let _ = std::fs::remove_dir_all(&pin_dir);
    t.pin_dir = Some(pin_dir.clone());
    let sock = tmp.join("weft.sock");
    let log = std::fs::File::create(tmp.join("agent.log"))?;
    let agent = Command::new("ip")
        .args(["netns", "exec", node])
        .arg(weft_bin)
        .arg("agent")
        .arg("--pin-dir")
        .arg(&pin_dir)
        .arg("--socket")
        .arg(&sock)
        .arg("--state-dir")
        .arg(tmp.join("state"))
        .args(["--pod-cidr", "10.251.2.0/24"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting weft agent")?;
    t.agent = Some(agent);
    let start = Instant::now();
    while !sock.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("weft agent did not open {} within 10s; see {}", sock.display(), tmp.join("agent.log").display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "weft-bench", "type": "weft",
        "agentSocket": sock, "podCIDR": "10.251.2.0/24",
    });
    let mut ips = Vec::new();
    for ns in [a, b] {
        ips.push(cni_add(weft_bin, node, ns, &conf)?);
    }
    (t.client, t.server, t.server_ip) = (a.into(), b.into(), ips[1]);
    Ok(t)
}

/// Run `weft` as a CNI plugin (ADD) in the node namespace; return the pod's address.
fn cni_add(weft_bin: &Path, node: &str, pod: &str, conf: &serde_json::Value) -> Result<Ipv4Addr> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", node])
        .arg(weft_bin)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", format!("bench-{pod}"))
        .env("CNI_NETNS", format!("/run/netns/{pod}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", weft_bin.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running the weft CNI plugin")?;
    child.stdin.take().expect("piped").write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "CNI ADD for {pod} failed: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing the CNI result")?;
    let addr = res["ips"][0]["address"].as_str().context("CNI result has no ips[0].address")?;
    let ip = addr.split('/').next().unwrap_or_default();
    ip.parse().with_context(|| format!("bad address {addr} in CNI result"))
}

/// `ip netns exec NS <cmd>` as a Command, for running load generators inside a namespace.
pub fn in_ns(ns: &str, program: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

pub fn ensure_clean_run() -> Result<()> {
    if !util::is_root() {
        bail!("the benchmark needs root (network namespaces, BPF)");
    }
    Ok(())
}
