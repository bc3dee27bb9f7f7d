//! Link, address, route and neighbour changes through iproute2's `ip`, in the current (node)
//! netns or in a pod netns entered by `setns` in the child just before `exec`.
//!
//! Why iproute2 and not a netlink crate: the commands are few, `ip -batch` applies a pod's
//! whole setup in one process, and its error messages name the failing object. Output is read
//! as JSON (`ip -j`).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::api::Mac;

#[derive(Debug, thiserror::Error)]
pub enum IpError {
    #[error("cannot open network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("`ip {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("`ip {args}` printed unexpected output: {detail}")]
    Output { args: String, detail: String },
}

/// An open network namespace (a `/run/netns/x` or `/proc/<pid>/ns/net` path).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    pub fn open(path: &Path) -> Result<Self, IpError> {
        let file = File::open(path).map_err(|source| IpError::Netns {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One interface as `ip -j link` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkInfo {
    pub name: String,
    pub ifindex: u32,
    pub mac: Mac,
    pub mtu: u32,
    pub up: bool,
}

fn ip_binary() -> &'static str {
    // Runtimes may call plugins with a bare PATH; iproute2 lives in one of these.
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("ip")
}

fn command(netns: Option<&Netns>, args: &[&str]) -> Command {
    let mut cmd = Command::new(ip_binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = netns {
        let fd = ns.file.as_raw_fd();
        // SAFETY: runs in the forked child before exec; setns is a plain syscall
        // (async-signal-safe) on an fd inherited from the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

fn finish(mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Result<String, IpError> {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|source| IpError::Spawn {
        bin: ip_binary().into(),
        source,
    })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        pipe.write_all(input.as_bytes())
            .map_err(|source| IpError::Spawn {
                bin: ip_binary().into(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| IpError::Spawn {
        bin: ip_binary().into(),
        source,
    })?;
    if !out.status.success() {
        return Err(IpError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `ip ARGS` in `netns` (or the current one).
pub fn run(netns: Option<&Netns>, args: &[&str]) -> Result<String, IpError> {
    finish(command(netns, args), args, None)
}

/// Run several `ip` commands in one process (`ip -batch -`); stops at the first failure.
pub fn batch(netns: Option<&Netns>, lines: &[String]) -> Result<(), IpError> {
    let args = ["-batch", "-"];
    let input = lines.join("\n") + "\n";
    finish(
        command(netns, &args),
        &[&format!("-batch: {}", lines.join("; "))],
        Some(&input),
    )
    .map(drop)
}

fn is_missing_device(e: &IpError) -> bool {
    matches!(e, IpError::Failed { stderr, .. }
        if stderr.contains("does not exist") || stderr.contains("Cannot find device"))
}

fn parse_link(v: &Value, args: &str) -> Result<LinkInfo, IpError> {
    let bad = |detail: &str| IpError::Output {
        args: args.into(),
        detail: detail.into(),
    };
    Ok(LinkInfo {
        name: v["ifname"]
            .as_str()
            .ok_or_else(|| bad("no ifname"))?
            .to_owned(),
        ifindex: v["ifindex"].as_u64().ok_or_else(|| bad("no ifindex"))? as u32,
        mac: v["address"]
            .as_str()
            .ok_or_else(|| bad("no address"))?
            .parse()
            .map_err(|e: String| bad(&e))?,
        mtu: v["mtu"].as_u64().ok_or_else(|| bad("no mtu"))? as u32,
        up: v["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
    })
}

/// The link `name`, or `None` if it does not exist.
pub fn link(netns: Option<&Netns>, name: &str) -> Result<Option<LinkInfo>, IpError> {
    let args = ["-j", "link", "show", "dev", name];
    match run(netns, &args) {
        Ok(out) => {
            let v: Value = serde_json::from_str(&out).map_err(|e| IpError::Output {
                args: args.join(" "),
                detail: e.to_string(),
            })?;
            v.get(0).map(|l| parse_link(l, &args.join(" "))).transpose()
        }
        Err(e) if is_missing_device(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every link whose name starts with `prefix`.
pub fn links_with_prefix(netns: Option<&Netns>, prefix: &str) -> Result<Vec<LinkInfo>, IpError> {
    let args = ["-j", "link", "show"];
    let out = run(netns, &args)?;
    let v: Value = serde_json::from_str(&out).map_err(|e| IpError::Output {
        args: args.join(" "),
        detail: e.to_string(),
    })?;
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .map(|l| parse_link(l, &args.join(" ")))
        .collect()
}

/// Delete link `name`; `Ok(false)` if it did not exist.
pub fn delete_link(netns: Option<&Netns>, name: &str) -> Result<bool, IpError> {
    match run(netns, &["link", "del", "dev", name]) {
        Ok(_) => Ok(true),
        Err(e) if is_missing_device(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The IPv4 addresses (`a.b.c.d/len`) on `dev`.
pub fn ipv4_addresses(netns: Option<&Netns>, dev: &str) -> Result<Vec<String>, IpError> {
    let args = ["-j", "-4", "addr", "show", "dev", dev];
    let out = run(netns, &args)?;
    let v: Value = serde_json::from_str(&out).map_err(|e| IpError::Output {
        args: args.join(" "),
        detail: e.to_string(),
    })?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect())
}

/// IPv4 routes of the main table, as `ip -j route` objects.
pub fn ipv4_routes(netns: Option<&Netns>) -> Result<Vec<Value>, IpError> {
    let args = ["-j", "-4", "route", "show"];
    let out = run(netns, &args)?;
    let v: Value = serde_json::from_str(&out).map_err(|e| IpError::Output {
        args: args.join(" "),
        detail: e.to_string(),
    })?;
    Ok(v.as_array().cloned().unwrap_or_default())
}
