//! `cargo xtask image`: the container image's build context: a statically linked `weft` (glibc,
//! `+crt-static`; it resolves no host names, so static glibc's NSS caveat does not apply) and
//! `deploy/image/Containerfile`, in `target/image/`.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_: Args) -> Result<()> {
    let xtask = std::env::current_exe()?;
    util::run(Command::new(&xtask).arg("build-ebpf").current_dir(util::root()))?;
    let target_dir = util::target_dir().join("static");
    let mut cargo = util::cargo(&["build", "--release", "-p", "weft", "--target", "x86_64-unknown-linux-gnu"]);
    cargo
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    util::run(&mut cargo)?;
    let bin = target_dir.join("x86_64-unknown-linux-gnu/release/weft");
    let ldd = Command::new("ldd").arg(&bin).output().context("running ldd")?;
    let text = String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    if !text.contains("not a dynamic executable") && !text.contains("statically linked") {
        bail!("{} is not static:\n{text}", bin.display());
    }
    let out = util::target_dir().join("image");
    std::fs::create_dir_all(&out)?;
    std::fs::copy(&bin, out.join("weft")).context("copying weft")?;
    std::fs::copy(util::root().join("deploy/image/Containerfile"), out.join("Containerfile"))?;
    let version = Command::new(out.join("weft")).arg("--version").output()?;
    eprintln!(
        "build context ready: {} ({}, static)\n  docker build -t ghcr.io/weft-net/weft:0.1.0 -f {}/Containerfile {}",
        out.display(),
        String::from_utf8_lossy(&version.stdout).trim(),
        out.display(),
        out.display()
    );
    Ok(())
}
