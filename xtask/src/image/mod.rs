//! `cargo xtask image`: weft's container image as one archive, built without a container
//! daemon or registry (neither exists on these machines): a statically linked `weft` (glibc,
//! `+crt-static`; it resolves no host names, so static glibc's NSS caveat does not apply; the
//! agent copies it to the host as the CNI plugin, where any libc must do) and Debian's `nft`
//! with its libraries (`rootfs`), made an OCI image by umoci and written as a tar that `docker
//! load`, `ctr import` and `kind load image-archive` read (`archive`). The result is checked
//! before it is reported: both binaries run inside the image's file system, and skopeo reads
//! the archive as an OCI archive and as a Docker archive.

mod archive;
mod rootfs;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

/// The repository the DaemonSet in deploy/ names.
pub const REPOSITORY: &str = "ghcr.io/weft-net/weft";

#[derive(clap::Args)]
pub struct Args {
    /// Rebuild even when the archive is newer than the static weft it holds.
    #[arg(long)]
    pub force: bool,
    /// The test build whose `CT4` map has another layout (tag `VERSION-layout-bump`): the lab
    /// upgrades to it and rolls back, exercising the pinned-map migration. Never shipped.
    #[arg(long)]
    pub layout_bump: bool,
}

/// The static `weft`, built into its own target directory (release, `+crt-static`).
fn static_weft(layout_bump: bool) -> Result<PathBuf> {
    let xtask = std::env::current_exe()?;
    util::run(Command::new(&xtask).arg("build-ebpf").current_dir(util::root()))?;
    let mut cargo = util::cargo(&["build", "--release", "-p", "weft", "--target", "x86_64-unknown-linux-gnu"]);
    let target_dir = if layout_bump {
        crate::ebpf::build_layout_bump(false)?;
        cargo.args(["--features", "layout-bump"]);
        util::target_dir().join("static-layout-bump")
    } else {
        util::target_dir().join("static")
    };
    cargo.arg("--target-dir").arg(&target_dir).env("RUSTFLAGS", "-C target-feature=+crt-static");
    util::run(&mut cargo)?;
    let bin = target_dir.join("x86_64-unknown-linux-gnu/release/weft");
    let ldd = Command::new("ldd").arg(&bin).output().context("running ldd")?;
    let text = String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    if !text.contains("not a dynamic executable") && !text.contains("statically linked") {
        bail!("{} is not static:\n{text}", bin.display());
    }
    Ok(bin)
}

/// The version `weft --version` reports (`weft 0.1.0` -> `0.1.0`).
fn version(bin: &std::path::Path) -> Result<String> {
    let out = Command::new(bin).arg("--version").output().context("running weft --version")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).map(str::to_string).with_context(|| format!("weft --version said {text:?}"))
}

pub fn run(args: Args) -> Result<()> {
    let archive = build(args.force, args.layout_bump)?;
    println!(
        "{0}\n  docker load -i {0}\n  kind load image-archive {0}\n  ctr -n k8s.io images import {0}",
        archive.display()
    );
    Ok(())
}

/// True when `archive` exists and is newer than every file in `inputs`.
fn up_to_date(archive: &std::path::Path, inputs: &[PathBuf]) -> bool {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(archive) else { return false };
    inputs.iter().all(|i| modified(i).is_some_and(|m| m < built))
}

/// Builds the image archive (unless it is newer than the static weft and this xtask, with
/// `force` false) and returns its path: what the lab loads onto its nodes.
pub fn build(force: bool, layout_bump: bool) -> Result<PathBuf> {
    util::require_root("building the image (its file system keeps root ownership; the check runs it with chroot)")?;
    for tool in ["umoci", "skopeo", "dpkg-deb", "apt-get"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output()?.stdout.is_empty() {
            bail!("{tool} is missing: run `cargo xtask setup`");
        }
    }
    let bin = static_weft(layout_bump)?;
    let tag = version(&bin)? + if layout_bump { "-layout-bump" } else { "" };
    let reference = format!("{REPOSITORY}:{tag}");
    let out_dir = util::target_dir().join("image");
    let root = out_dir.join(if layout_bump { "rootfs-layout-bump" } else { "rootfs" });
    let cache = dirs_cache().join("debs");
    let archive = out_dir.join(format!("weft-{tag}.tar"));
    if !force && up_to_date(&archive, &[bin.clone(), std::env::current_exe()?]) {
        eprintln!("==> {} is up to date", archive.display());
        return Ok(archive);
    }
    eprintln!("==> root file system: weft and Debian's nft with its libraries");
    let packages = rootfs::build(&root, &bin, &cache)?;
    let weft_says = rootfs::run_inside(&root, &["/usr/local/bin/weft", "--version"])?;
    let nft_says = rootfs::run_inside(&root, &[rootfs::NFT, "--version"])?;
    // nft talks to the kernel from inside the image: in a fresh network namespace, so nothing
    // of this machine's rule set is read or touched.
    let listed = util::run(Command::new("unshare").args(["--net", "chroot"]).arg(&root).args([rootfs::NFT, "list", "ruleset"]));
    listed.context("nft from the image could not list a rule set")?;
    eprintln!("==> OCI image {reference}");
    let work = out_dir.join(if layout_bump { "work-layout-bump" } else { "work" });
    archive::build(&root, &work, &reference, &archive)?;
    let (oci, docker) = archive::inspect(&archive)?;
    for (what, cfg) in [("oci-archive", &oci), ("docker-archive", &docker)] {
        if cfg["config"]["Entrypoint"] != serde_json::json!(["/usr/local/bin/weft"]) {
            bail!("skopeo reads the {what} without weft as its entrypoint: {cfg}");
        }
    }
    let size = std::fs::metadata(&archive)?.len();
    eprintln!(
        "==> {reference} ({:.1} MiB): {}, {}\n  packages: {}",
        size as f64 / (1 << 20) as f64,
        weft_says.trim(),
        nft_says.trim(),
        packages.join(" "),
    );
    Ok(archive)
}

/// The per-user cache of downloaded packages (`~/.cache/weft/image`).
fn dirs_cache() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from).join(".cache/weft/image")
}
