//! Running external commands (iproute2, sysctl, upstream binaries) with errors that say what ran.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

/// A command that failed, with what it printed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed { cmd: String, status: std::process::ExitStatus, stderr: String },
}

/// Shell-like rendering of a command for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd`, capturing output; an error if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output, CmdError> {
    let desc = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CmdError::Spawn { cmd: desc.clone(), source })?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            cmd: desc,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// `ip ARGS…`.
pub fn ip<I, S>(args: I) -> Result<Output, CmdError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new("ip").args(args))
}

/// `ip -n NS ARGS…` (iproute2 acting inside a namespace without entering it).
pub fn ip_in(ns: &str, args: &[&str]) -> Result<Output, CmdError> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// A command that will run inside network namespace `ns` (`ip netns exec NS PROGRAM`).
pub fn in_netns(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

/// Sets a sysctl inside a namespace.
pub fn sysctl_in(ns: &str, key: &str, value: &str) -> Result<Output, CmdError> {
    run(in_netns(ns, "sysctl").args(["-q", "-w", &format!("{key}={value}")]))
}
