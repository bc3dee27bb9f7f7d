//! A lab brought up for a benchmark under its own state dir (`/run/weft-lab-bench`, so a
//! user's lab is never touched), driven through the `weft-lab` CLI, taken down on drop.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::topo::Place;
use crate::util;

/// The benchmark labs' state dir.
pub const STATE: &str = "/run/weft-lab-bench";

/// Builds what a benchmark lab runs (eBPF object, `weft-lab`, weft's image) and refuses when
/// a benchmark lab is already up; returns the `weft-lab` binary.
pub fn prepare(xtask: &Path) -> Result<PathBuf> {
    if Path::new(STATE).exists() {
        bail!("{STATE} exists: a benchmark lab is already up (remove it with WEFT_LAB_STATE={STATE} weft-lab down)");
    }
    util::run(Command::new(xtask).arg("build-ebpf").current_dir(util::root()))?;
    // Release builds, as users run them: the agent's programming latency and memory are
    // figures of the optimised binary (the datapath is eBPF either way). The agent runs from
    // its image (a static release build), which `weft-lab up` loads from target/image/.
    util::run(&mut util::cargo(&["build", "--release", "--quiet", "-p", "weft-lab"]))?;
    crate::image::build(false, false)?;
    Ok(util::target_dir().join("release/weft-lab"))
}

/// A running benchmark lab; `Drop` takes it down.
pub struct Lab {
    bin: PathBuf,
}

impl Lab {
    /// `weft-lab up ARGS…` (progress on stderr); a failed `up` is taken down again.
    pub fn up(bin: &Path, args: &[&str]) -> Result<Lab> {
        let mut up = vec!["up"];
        up.extend_from_slice(args);
        let status = Command::new(bin).args(&up).env("WEFT_LAB_STATE", STATE).stdout(Stdio::null()).status()?;
        let lab = Lab { bin: bin.to_owned() };
        if !status.success() {
            bail!("weft-lab {} failed", up.join(" "));
        }
        Ok(lab)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).env("WEFT_LAB_STATE", STATE);
        c
    }

    /// Runs `weft-lab ARGS…`; its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd(args).stdin(Stdio::null()).output()?;
        if !out.status.success() {
            bail!("weft-lab {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl ARGS…` with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &[u8]) -> Result<()> {
        let mut full = vec!["kubectl"];
        full.extend_from_slice(args);
        let mut child = self.cmd(&full).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        std::io::Write::write_all(&mut child.stdin.take().expect("piped"), input)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply(&self, manifest: &str) -> Result<()> {
        self.kubectl_stdin(&["apply", "-f", "-"], manifest.as_bytes())
    }

    /// A place that runs commands through `weft-lab WHAT… --` (`exec default/pod`,
    /// `node-exec node-1`).
    pub fn enter(&self, what: &[&str]) -> Place {
        // `weft-lab` reads its state dir from the environment: pass it through `env`.
        let mut argv: Vec<OsString> = vec!["/usr/bin/env".into(), format!("WEFT_LAB_STATE={STATE}").into(), self.bin.clone().into()];
        argv.extend(what.iter().map(OsString::from));
        argv.push("--".into());
        Place::Enter(argv)
    }

    /// A pod's IP (`default` namespace).
    pub fn pod_ip(&self, pod: &str) -> Result<std::net::Ipv4Addr> {
        self.ok(&["kubectl", "get", "pod", pod, "-o", "jsonpath={.status.podIP}"])?
            .trim()
            .parse()
            .with_context(|| format!("{pod}'s pod IP"))
    }

    /// A node's InternalIP.
    pub fn node_ip(&self, node: &str) -> Result<std::net::Ipv4Addr> {
        self.ok(&["kubectl", "get", "node", node, "-o", "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}"])?
            .trim()
            .parse()
            .with_context(|| format!("{node}'s InternalIP"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        eprintln!("  taking the benchmark lab down");
        let _ = self.cmd(&["down"]).stdout(Stdio::null()).status();
    }
}

/// A busybox pod pinned to `node` that sleeps (the benchmark's load generators run in it
/// through `weft-lab exec`).
pub fn sleeper_pod(name: &str, node: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  nodeName: {node}\n  \
         containers:\n  - name: main\n    image: busybox\n    args: [sleep, \"36000\"]\n---\n"
    )
}
