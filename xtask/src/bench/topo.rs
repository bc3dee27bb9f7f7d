//! The benchmark's topologies: two "pods" joined by a bare veth, by a Linux bridge (what the
//! reference `bridge` CNI plugin builds), and by weft. Every namespace, process and pin is
//! removed when the topology is dropped.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;
use crate::weftnode::{Namespaces, WeftNode};

/// Where one end of a measurement runs: a named network namespace, or behind a command that
/// enters it (`weft-lab exec default/pod --`, for lab pods whose namespaces are the kubelet
/// stand-in's).
#[derive(Clone, Debug, Default)]
pub enum Place {
    #[default]
    Nowhere,
    Netns(String),
    Enter(Vec<std::ffi::OsString>),
}

impl From<&str> for Place {
    fn from(ns: &str) -> Self {
        Place::Netns(ns.to_owned())
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Nowhere => f.write_str("(nowhere)"),
            Place::Netns(ns) => f.write_str(ns),
            Place::Enter(cmd) => write!(f, "{}", cmd.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")),
        }
    }
}

/// Two endpoints to measure between: `client` talks to `server_ip` in `server`.
pub struct Topology {
    pub name: &'static str,
    pub client: Place,
    pub server: Place,
    pub server_ip: Ipv4Addr,
    // Field order is drop order: the agent (and its pods) go before the namespaces.
    weft: Option<WeftNode>,
    namespaces: Namespaces,
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
        client: Place::Nowhere,
        server: Place::Nowhere,
        server_ip: Ipv4Addr::UNSPECIFIED,
        weft: None,
        namespaces: Namespaces::default(),
    };
    for ns in namespaces {
        t.namespaces.add(ns)?;
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
    let mut t = new_topology("weft", &[])?;
    let mut node = WeftNode::start(weft_bin, "wb-weft-node", "10.251.2.0/24")?;
    node.add_pod("wb-weft-a")?;
    let server_ip = node.add_pod("wb-weft-b")?;
    (t.client, t.server, t.server_ip) = ("wb-weft-a".into(), "wb-weft-b".into(), server_ip);
    t.weft = Some(node);
    Ok(t)
}

impl Topology {
    /// The weft node behind this topology, if weft wired it.
    pub fn weft_node(&self) -> Option<&WeftNode> {
        self.weft.as_ref()
    }
}

/// Two bare hosts plugged into a lab's switch (`bridge` in namespace `switch`) with addresses
/// `client_ip` and `server_ip` of its underlay `prefix_len`: the lab's own network with nothing
/// of weft or Kubernetes on the path (no tc or cgroup program, no netfilter table), the limit
/// a pod path is measured against. Removed on drop (their veths go with their namespaces).
pub fn switch_hosts(switch: &str, bridge: &str, client_ip: Ipv4Addr, server_ip: Ipv4Addr, prefix_len: u8) -> Result<Topology> {
    let mut t = new_topology("bare", &["wb-bare-c", "wb-bare-s"])?;
    for (ns, port, addr) in [("wb-bare-c", "p-wb-bare-c", client_ip), ("wb-bare-s", "p-wb-bare-s", server_ip)] {
        ip(&["-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", switch])?;
        ip(&["-n", switch, "link", "set", port, "master", bridge, "up"])?;
        ip(&["-n", ns, "addr", "add", &format!("{addr}/{prefix_len}"), "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    }
    t.client = Place::Netns("wb-bare-c".into());
    t.server = Place::Netns("wb-bare-s".into());
    t.server_ip = server_ip;
    Ok(t)
}

/// Two endpoints set up elsewhere (a lab's pods or nodes), nothing to tear down here.
pub fn pair(name: &'static str, client: Place, server: Place, server_ip: Ipv4Addr) -> Topology {
    Topology {
        name,
        client,
        server,
        server_ip,
        weft: None,
        namespaces: Namespaces::default(),
    }
}

/// A load generator at `place`, pinned to `cpu` if given.
pub fn in_ns(place: &Place, program: &Path, cpu: Option<usize>) -> Command {
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(cpu) = cpu {
        argv.extend(["/usr/bin/taskset".into(), "-c".into(), cpu.to_string().into()]);
    }
    argv.push(program.as_os_str().to_owned());
    match place {
        Place::Netns(ns) => {
            let mut c = util::in_netns(ns, &argv[0]);
            c.args(&argv[1..]);
            c
        }
        Place::Enter(prefix) => {
            let mut c = Command::new(&prefix[0]);
            c.args(&prefix[1..]).args(&argv);
            c
        }
        Place::Nowhere => panic!("measuring at an unset place"),
    }
}
