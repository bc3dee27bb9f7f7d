//! A CNI "node" for the netns tests: its netns, a running `weft agent` (own bpffs, socket and
//! state dir) and the plugin run exactly as a container runtime runs it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::guards::{BpfMount, Proc, TempDir};
use super::netns::Netns;
use super::{require_root, require_tools, sh, unique_id, PATH};

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
pub const POD_CIDR: &str = "10.200.1.0/24";

/// Fail (never skip) when the machine cannot run these tests.
pub fn preconditions() {
    require_root("netns tests");
    require_tools(&["ip", "ping", "socat"]);
}

/// What one plugin run printed and returned.
#[derive(Debug)]
pub struct PluginRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl PluginRun {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The result of a successful ADD.
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.code, 0, "plugin failed: {self:?}");
        self.json()
    }

    /// The pod address of an ADD result, without the prefix length.
    pub fn ip(&self) -> String {
        let r = self.ok_json();
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    }
}

/// A node: its netns, its agent (own pin dir, socket and state dir), its temp files.
pub struct Node {
    pub id: String,
    pub agent: Option<Proc>,
    pub ns: Netns,
    pub pin_dir: PathBuf,
    /// `--pod-cidr` of the agent; `None` starts it without one.
    pub agent_pod_cidr: Option<String>,
    /// Run the agent and the plugin with iproute2 hidden (`/usr/bin/ip` covered by /dev/null
    /// in their mount namespace), so any use of it fails.
    pub hide_iproute2: bool,
    bpffs: BpfMount,
    pub dir: TempDir,
}

impl Node {
    /// A node netns with IPv4 forwarding off (so pod-to-pod traffic can only flow through the
    /// eBPF redirect) and a running agent.
    pub fn start() -> Self {
        let mut node = Self::without_agent();
        node.start_agent();
        node
    }

    /// A node netns with no agent (for "agent down" tests).
    pub fn without_agent() -> Self {
        preconditions();
        let id = unique_id();
        let dir = TempDir::new(&id);
        let ns = Netns::new(format!("wt-{id}-node"));
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        let bpffs = BpfMount::new(dir.0.join("bpf"));
        let pin_dir = bpffs.0.join("weft");
        Self {
            id,
            agent: None,
            ns,
            pin_dir,
            agent_pod_cidr: Some(POD_CIDR.into()),
            hide_iproute2: false,
            bpffs,
            dir,
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.0.join("weft.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.0.join("state")
    }

    /// `program` run in the node netns (and a private mount namespace, which `ip netns exec`
    /// makes), with iproute2 hidden there if `hide_iproute2` is set.
    pub fn in_node(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name]);
        if self.hide_iproute2 {
            cmd.args([
                "sh",
                "-c",
                r#"mount --bind /dev/null /usr/bin/ip && exec "$0" "$@""#,
            ]);
        }
        cmd.arg(program);
        cmd
    }

    /// Start `weft agent` in the node netns and wait until its socket answers.
    pub fn start_agent(&mut self) {
        let log = std::fs::File::create(self.dir.0.join("agent.log")).unwrap();
        let mut cmd = self.in_node(WEFT);
        cmd.arg("agent");
        if let Some(cidr) = &self.agent_pod_cidr {
            cmd.args(["--pod-cidr", cidr]);
        }
        let child = cmd
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut proc = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Ok(Some(status)) = proc.0.try_wait() {
                panic!("weft agent exited with {status}:\n{}", self.agent_log());
            }
            assert!(
                Instant::now() < deadline,
                "weft agent did not listen in time:\n{}",
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.agent = Some(proc);
    }

    /// Stop the agent (SIGTERM, as a DaemonSet rollout would).
    pub fn stop_agent(&mut self) {
        self.agent = None;
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("agent.log")).unwrap_or_default()
    }

    /// The network config a runtime would pass, in `version`.
    pub fn config(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "weft-test",
            "type": "weft",
            "agentSocket": self.socket(),
            "mtu": 1500,
            "logFile": self.dir.0.join("cni.log"),
            "logLevel": "debug",
        })
    }

    /// Start the plugin in the node netns with the `CNI_*` environment (plus `extra_env`) and
    /// `config` written to its stdin; stdout and stderr are piped.
    fn spawn_plugin(
        &self,
        command: &str,
        container_id: &str,
        pod: Option<&Netns>,
        config: &Value,
        extra_env: &[(&str, &str)],
    ) -> Child {
        let mut cmd = self.in_node(WEFT);
        cmd.env_clear()
            .env("PATH", PATH)
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", "/opt/cni/bin")
            .env("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=test")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !container_id.is_empty() {
            cmd.env("CNI_CONTAINERID", container_id)
                .env("CNI_IFNAME", "eth0");
        }
        if let Some(pod) = pod {
            cmd.env("CNI_NETNS", pod.path());
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(config.to_string().as_bytes())
            .unwrap();
        child
    }

    /// Run the plugin inside the node netns exactly as a runtime does: `CNI_*` environment,
    /// the config on stdin, the answer on stdout.
    pub fn plugin(
        &self,
        command: &str,
        container_id: &str,
        pod: Option<&Netns>,
        config: &Value,
    ) -> PluginRun {
        let out = self
            .spawn_plugin(command, container_id, pod, config, &[])
            .wait_with_output()
            .unwrap();
        PluginRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn add(&self, container_id: &str, pod: &Netns) -> PluginRun {
        self.plugin("ADD", container_id, Some(pod), &self.config("1.0.0"))
    }

    pub fn del(&self, container_id: &str, pod: &Netns) -> PluginRun {
        self.plugin("DEL", container_id, Some(pod), &self.config("1.0.0"))
    }

    /// Start ADD with a debug-build pause after `step`, wait until it reports the pause, and
    /// SIGKILL it there.
    pub fn add_killed_after(&self, step: &str, container_id: &str, pod: &Netns) {
        #[cfg(not(debug_assertions))]
        panic!("the pause hook exists only in debug builds: run without --release");
        let mut proc = Proc(self.spawn_plugin(
            "ADD",
            container_id,
            Some(pod),
            &self.config("1.0.0"),
            &[("WEFT_TEST_PAUSE_AFTER", step)],
        ));
        let stderr = proc.0.stderr.take().unwrap();
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            seen += &line;
            seen.push('\n');
            if line.contains(&format!("paused after {step}")) {
                proc.0.kill().unwrap(); // SIGKILL, as the OOM killer or a runtime timeout would
                proc.0.wait().unwrap();
                return;
            }
        }
        panic!("plugin never paused after {step}: {seen}");
    }

    /// `weft status -o json` against this node's agent.
    pub fn status(&self) -> Value {
        let out = sh(&[
            WEFT,
            "status",
            "-o",
            "json",
            "--socket",
            self.socket().to_str().unwrap(),
        ]);
        serde_json::from_str(&out).unwrap()
    }

    /// Links whose name starts with `weft` in the node netns.
    pub fn host_veths(&self) -> Vec<String> {
        self.ns
            .links()
            .into_iter()
            .filter(|l| l.starts_with("weft"))
            .collect()
    }

    /// A pod netns (not attached yet).
    pub fn pod(&self, n: usize) -> Netns {
        Netns::new(format!("wt-{}-p{n}", self.id))
    }

    /// Assert the node holds nothing: no allocation, no endpoint, no host veth, no pod route.
    pub fn assert_empty(&self) {
        let st = self.status();
        assert_eq!(st["allocated"], 0, "addresses leaked: {st}");
        assert_eq!(
            st["endpoints"].as_array().unwrap().len(),
            0,
            "endpoint entries leaked: {st}"
        );
        assert!(
            self.host_veths().is_empty(),
            "host veths leaked: {:?}",
            self.host_veths()
        );
        let pod_routes: Vec<_> = self
            .ns
            .route_dsts()
            .into_iter()
            // Per-pod /32s; the agent's `prohibit 10.200.1.0/24` for the whole CIDR stays.
            .filter(|d| d.starts_with("10.200.1.") && !d.contains('/'))
            .collect();
        assert!(pod_routes.is_empty(), "pod routes leaked: {pod_routes:?}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.agent = None; // stop the agent before its pins go (with `bpffs`, dropped next)
        if std::thread::panicking() {
            eprintln!("--- agent log ({}) ---\n{}", self.id, self.agent_log());
            eprintln!(
                "--- cni log ---\n{}",
                std::fs::read_to_string(self.dir.0.join("cni.log")).unwrap_or_default()
            );
        }
    }
}
