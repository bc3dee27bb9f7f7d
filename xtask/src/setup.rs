//! `cargo xtask setup`: installs the Debian packages and cargo tools a fresh machine needs,
//! idempotently, and says what it installs.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util;

/// Debian packages, grouped by why the project needs them.
const PACKAGES: &[(&str, &[&str])] = &[
    (
        "eBPF toolchain (rustc 1.96 + std source, LLVM 22 for bpf-linker)",
        &["rustc-web", "rust-web-src", "llvm-22-dev", "libpolly-22-dev", "libzstd-dev", "zlib1g-dev"],
    ),
    ("networking tools the tests and the lab drive (weft itself uses netlink)", &["iproute2", "nftables", "iptables", "conntrack", "ethtool", "tcpdump", "bpftool"]),
    ("kube-router's firewall controller, the lab's reference NetworkPolicy engine", &["ipset"]),
    ("the container image without a daemon (`cargo xtask image`): OCI layout, archive checks, strip; containerd (with runc) to import and run it in a test", &["umoci", "skopeo", "binutils", "containerd"]),
    (
        "workloads the tests and the lab run in pods",
        &["nginx-light", "curl", "busybox", "iputils-ping", "bind9-dnsutils", "socat", "netcat-openbsd", "iperf3", "sockperf"],
    ),
    ("build helpers; openssl checks the lab's certificates", &["python3", "git", "ca-certificates", "openssl"]),
];

/// bpf-linker links the eBPF object; 0.13 builds against Debian's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// The lab builds Kubernetes 1.36 from Go modules; that release needs Go 1.25 or newer.
const GO_MIN_MINOR: u32 = 25;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Only report what is missing; install nothing (exit 1 if anything is missing).
    #[arg(long)]
    check: bool,
}

pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    let missing = missing_packages()?;
    let linker_ok = bpf_linker_ok();
    let go = go_minor();
    let go_ok = go.is_some_and(|m| m >= GO_MIN_MINOR);

    if args.check {
        report_check(&missing, linker_ok, go_ok);
        if !missing.is_empty() || !linker_ok || !go_ok || !bpffs_mounted() {
            bail!("setup is incomplete; run `cargo xtask setup`");
        }
        return Ok(());
    }

    if !missing.is_empty() {
        if !util::is_root() {
            bail!("installing Debian packages needs root; missing: {}", missing.join(" "));
        }
        eprintln!("setup: installing {} Debian package(s): {}", missing.len(), missing.join(" "));
        util::run(Command::new("apt-get").args(["update", "-qq"]))?;
        util::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        let still = missing_packages()?;
        if !still.is_empty() {
            bail!("apt-get finished but these packages are still not installed: {}", still.join(" "));
        }
    } else {
        eprintln!("setup: all {} Debian packages present", PACKAGES.iter().map(|(_, p)| p.len()).sum::<usize>());
    }

    if !linker_ok {
        eprintln!("setup: installing bpf-linker {BPF_LINKER_VERSION} from crates.io (about a minute on 2 cores)");
        let path = format!("/usr/lib/llvm-22/bin:{}", std::env::var("PATH").unwrap_or_default());
        util::run(
            Command::new("cargo")
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked"])
                .args(["--no-default-features", "--features", "llvm-22"])
                .env("PATH", path),
        )?;
        if !bpf_linker_ok() {
            bail!("bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` does not report it");
        }
    } else {
        eprintln!("setup: bpf-linker {BPF_LINKER_VERSION} present");
    }

    ensure_bpffs()?;

    match go {
        Some(m) if m >= GO_MIN_MINOR => eprintln!("setup: go 1.{m} present"),
        Some(m) => bail!("go 1.{m} is too old for the lab (needs 1.{GO_MIN_MINOR}+); install a newer Go"),
        None => bail!("`go` is not on PATH; the lab builds Kubernetes from Go modules and needs Go 1.{GO_MIN_MINOR}+"),
    }
    eprintln!("setup: done in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

fn report_check(missing: &[String], linker_ok: bool, go_ok: bool) {
    for (why, pkgs) in PACKAGES {
        let miss: Vec<_> = pkgs.iter().filter(|p| missing.iter().any(|m| m == *p)).collect();
        let state = if miss.is_empty() { "ok".to_string() } else { format!("missing {miss:?}") };
        eprintln!("{state:<10} {why}");
    }
    eprintln!("{:<10} bpf-linker {BPF_LINKER_VERSION}", if linker_ok { "ok" } else { "missing" });
    eprintln!("{:<10} go 1.{GO_MIN_MINOR}+", if go_ok { "ok" } else { "missing" });
    eprintln!("{:<10} bpffs at {BPFFS}", if bpffs_mounted() { "ok" } else { "missing" });
}

/// Where the agent pins maps and links (systemd mounts it on most distributions; a bare
/// machine or container may not have it).
const BPFFS: &str = "/sys/fs/bpf";

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(BPFFS) && l.split_whitespace().nth(2) == Some("bpf")))
}

fn ensure_bpffs() -> Result<()> {
    if bpffs_mounted() {
        eprintln!("setup: bpffs mounted at {BPFFS}");
        return Ok(());
    }
    eprintln!("setup: mounting bpffs at {BPFFS} (the agent pins its maps and links there)");
    util::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}

/// Packages from [`PACKAGES`] that dpkg does not report as installed.
fn missing_packages() -> Result<Vec<String>> {
    let all: Vec<&str> = PACKAGES.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status}\n"])
        .args(&all)
        .output()
        .context("running dpkg-query (is this a Debian machine?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, s)| *s == "installed")
        .map(|(p, _)| p)
        .collect();
    Ok(all.into_iter().filter(|p| !installed.contains(p)).map(String::from).collect())
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
}

/// Go's minor version (26 for go1.26.8), if `go` runs.
fn go_minor() -> Option<u32> {
    let out = Command::new("go").arg("env").arg("GOVERSION").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout);
    v.trim().strip_prefix("go1.")?.split('.').next()?.parse().ok()
}

