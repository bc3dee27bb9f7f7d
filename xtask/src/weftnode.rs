//! A weft "node" in a network namespace: `weft agent` running there and pods added by running
//! the CNI plugin exactly as a container runtime does. Shared by the benchmark and the demo;
//! dropping it removes every namespace, process, pin and file it made.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util;

pub struct WeftNode {
    pub node: String,
    bin: PathBuf,
    sock: PathBuf,
    tmp: PathBuf,
    pin_dir: PathBuf,
    agent: Option<Child>,
    conf: serde_json::Value,
    /// Pod namespaces made so far (removed on drop even if DEL was never run).
    pods: Vec<String>,
}

impl WeftNode {
    /// Create the node namespace and start the agent in it, handing out `pod_cidr`.
    pub fn start(bin: &Path, node: &str, pod_cidr: &str) -> Result<Self> {
        let tmp = std::env::temp_dir().join(format!("weft-{node}-{}", std::process::id()));
        std::fs::create_dir_all(&tmp)?;
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(node);
        let sock = tmp.join("weft.sock");
        let mut n = WeftNode {
            node: node.to_string(),
            bin: bin.to_path_buf(),
            sock: sock.clone(),
            tmp: tmp.clone(),
            pin_dir: pin_dir.clone(),
            agent: None,
            conf: serde_json::json!({
                "cniVersion": "1.1.0", "name": node, "type": "weft",
                "agentSocket": sock, "podCIDR": pod_cidr,
            }),
            pods: Vec::new(),
        };
        fresh_netns(node)?;
        let _ = std::fs::remove_dir_all(&pin_dir);
        let log = std::fs::File::create(tmp.join("agent.log"))?;
        let agent = util::in_netns(node, bin)
            .arg("agent")
            .arg("--pin-dir")
            .arg(&pin_dir)
            .arg("--socket")
            .arg(&sock)
            .arg("--state-dir")
            .arg(tmp.join("state"))
            .args(["--pod-cidr", pod_cidr])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting weft agent")?;
        n.agent = Some(agent);
        let start = Instant::now();
        while !sock.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("weft agent did not open {} within 10s; its log:\n{}", sock.display(), n.agent_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(n)
    }

    /// The agent's socket (the conflist's `agentSocket`).
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.tmp.join("agent.log")).unwrap_or_default()
    }

    /// Create the pod namespace and run CNI ADD for it; return the pod's address.
    pub fn add_pod(&mut self, pod: &str) -> Result<Ipv4Addr> {
        fresh_netns(pod)?;
        self.pods.push(pod.to_string());
        let out = self.cni("ADD", pod)?;
        let res: serde_json::Value = serde_json::from_slice(&out).context("parsing the CNI result")?;
        let addr = res["ips"][0]["address"].as_str().context("CNI result has no ips[0].address")?;
        let ip = addr.split('/').next().unwrap_or_default();
        ip.parse().with_context(|| format!("bad address {addr} in CNI result"))
    }

    /// Run CNI DEL for the pod and remove its namespace.
    pub fn del_pod(&mut self, pod: &str) -> Result<()> {
        self.cni("DEL", pod)?;
        self.pods.retain(|p| p != pod);
        util::run(Command::new("ip").args(["netns", "del", pod]))
    }

    /// `weft ARGS…` run in the node namespace against this node's agent.
    pub fn weft(&self, args: &[&str]) -> Command {
        let mut c = util::in_netns(&self.node, &self.bin);
        c.args(args).arg("--socket").arg(&self.sock);
        c
    }

    fn cni(&self, verb: &str, pod: &str) -> Result<Vec<u8>> {
        let mut child = util::in_netns(&self.node, &self.bin)
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", format!("{pod}-container"))
            .env("CNI_NETNS", format!("/run/netns/{pod}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.bin.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running the weft CNI plugin")?;
        child.stdin.take().expect("piped").write_all(self.conf.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "CNI {verb} for {pod} failed: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }
}

impl Drop for WeftNode {
    fn drop(&mut self) {
        for p in std::mem::take(&mut self.pods) {
            let _ = self.cni("DEL", &p);
            let _ = Command::new("ip").args(["netns", "del", &p]).status();
        }
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.node]).status();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// Network namespaces made by `fresh_netns`, deleted when this is dropped.
#[derive(Default)]
pub struct Namespaces(Vec<String>);

impl Namespaces {
    /// Create `ns` (fresh, loopback up) and own it.
    pub fn add(&mut self, ns: &str) -> Result<()> {
        fresh_netns(ns)?;
        self.0.push(ns.to_string());
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Create a network namespace with loopback up, replacing one an interrupted run left behind.
pub fn fresh_netns(ns: &str) -> Result<()> {
    let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
    util::run(Command::new("ip").args(["netns", "add", ns]))?;
    util::run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))
}

/// Build the agent (and with it the embedded eBPF object), as a debug or a release build, and
/// return the binary's path.
pub fn build_weft(release: bool) -> Result<PathBuf> {
    let xtask = std::env::current_exe()?;
    util::run(Command::new(&xtask).arg("build-ebpf").current_dir(util::root()))?;
    let mut args = vec!["build", "--quiet", "-p", "weft"];
    if release {
        args.push("--release");
    }
    util::run(&mut util::cargo(&args))?;
    Ok(util::target_dir().join(if release { "release/weft" } else { "debug/weft" }))
}
