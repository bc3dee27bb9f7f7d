//! kubectl against the lab: run inside the control-plane namespace (the API server's address
//! is only reachable from the lab's namespaces) with the admin kubeconfig.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::sh;
use crate::spec::CP_NS;
use crate::state::{LabRecord, StateDir};

/// A `kubectl` command with the lab's admin credentials, ready for more arguments.
pub fn command(state: &StateDir, rec: &LabRecord) -> Command {
    let mut c = sh::in_netns(CP_NS, &rec.bins.kubectl);
    c.arg("--kubeconfig").arg(state.kubeconfig("admin"));
    c
}

/// Runs kubectl and returns its stdout.
pub fn output(state: &StateDir, rec: &LabRecord, args: &[&str]) -> anyhow::Result<String> {
    let out = sh::run(command(state, rec).args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl get … -o json`, parsed.
pub fn get_json(state: &StateDir, rec: &LabRecord, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let text = output(state, rec, &all)?;
    serde_json::from_str(&text).context("kubectl printed something that is not JSON")
}

/// `kubectl apply -f -` with `manifest` on stdin.
pub fn apply(state: &StateDir, rec: &LabRecord, manifest: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut cmd = command(state, rec);
    cmd.args(["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting kubectl apply")?;
    child.stdin.take().expect("piped").write_all(manifest.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Polls `check` every half second until it returns `Some`, printing a progress line.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    eprint!("  waiting for {what} …");
    let mut last_err = None;
    let mut dots = 0;
    loop {
        match check() {
            Ok(Some(v)) => {
                eprintln!(" ok ({:.1} s)", start.elapsed().as_secs_f64());
                return Ok(v);
            }
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > timeout {
            eprintln!(" timed out");
            let why = last_err.map(|e| format!(": last error: {e:#}")).unwrap_or_default();
            anyhow::bail!("timed out after {timeout:?} waiting for {what}{why}");
        }
        dots += 1;
        if dots % 10 == 0 {
            eprint!(".");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
