//! `cargo xtask build-ebpf`: build the eBPF object (dataplane-ebpf) that `weft` embeds.
//!
//! The eBPF crate is built with Debian's rustc 1.96 and its standard-library source
//! (`RUSTC=/usr/bin/rustc`, `-Z build-std=core`) and linked by bpf-linker; see
//! docs/toolchain.md. The result is copied to [`OBJECT_REL_PATH`] under the workspace root,
//! where `agent/build.rs` picks it up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{buildlog, util};

/// Where the object lands, relative to the workspace root. `agent/build.rs` reads the same path.
pub const OBJECT_REL_PATH: &str = "target/bpf/weft-dataplane.o";
/// Debian's rustc-web: the only rustc here with a matching standard-library source.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const TARGET: &str = "bpfel-unknown-none";
/// The `[[bin]]` name in dataplane-ebpf/Cargo.toml.
const BIN_NAME: &str = "weft-dataplane";

#[derive(clap::Args)]
pub struct Args {}

/// The `layout-bump` test build's object (`CT4` with another layout; the lab upgrades to it
/// and rolls back). `agent/build.rs` reads it when the agent is built with that feature.
pub const LAYOUT_BUMP_OBJECT_REL_PATH: &str = "target/bpf/weft-dataplane-layout-bump.o";

pub fn run(_args: Args) -> Result<()> {
    build(true)
}

/// Builds the object and installs it where `agent/build.rs` reads it. Unless `verbose`, says
/// nothing when the object is already up to date (see [`buildlog`]).
pub fn build(verbose: bool) -> Result<()> {
    build_object(verbose, false)
}

/// Builds the `layout-bump` test build's object, in its own target directory.
pub fn build_layout_bump(verbose: bool) -> Result<()> {
    build_object(verbose, true)
}

fn build_object(verbose: bool, layout_bump: bool) -> Result<()> {
    let root = util::root();
    let crate_dir = root.join("dataplane-ebpf");
    let cargo_bin = cargo_home().join("bin");
    preflight(&cargo_bin)?;

    let mut cmd = Command::new(cargo_bin.join("cargo"));
    cmd.current_dir(&crate_dir).args([
        "build",
        "--release",
        "--target",
        TARGET,
        "-Z",
        "build-std=core",
    ]);
    let target_dir = if layout_bump {
        cmd.args(["--features", "layout-bump", "--target-dir", "target/layout-bump"]);
        crate_dir.join("target/layout-bump")
    } else {
        crate_dir.join("target")
    };
    scrub_outer_cargo_env(&mut cmd);
    let path = format!(
        "{}:{}",
        cargo_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("PATH", &path);

    let header = [
        format!("building the eBPF object in {}", crate_dir.display()),
        format!(
            "+ cd {} && PATH={}:$PATH RUSTC={DEBIAN_RUSTC} RUSTC_BOOTSTRAP=1 {}",
            crate_dir.display(),
            cargo_bin.display(),
            util::show(&cmd)
        ),
    ];
    let started = Instant::now();
    let shown =
        buildlog::run(&mut cmd, &header, verbose).context("building dataplane-ebpf failed")?;

    let built = target_dir.join(TARGET).join("release").join(BIN_NAME);
    let dest = root.join(if layout_bump { LAYOUT_BUMP_OBJECT_REL_PATH } else { OBJECT_REL_PATH });
    let installed = install(&built, &dest)?;
    if !(verbose || shown || installed) {
        return Ok(());
    }
    let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "eBPF object: {} ({size} bytes, {:.1}s)",
        dest.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `$CARGO_HOME`, else `~/.cargo`: where rustup's cargo and bpf-linker live.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn preflight(cargo_bin: &Path) -> Result<()> {
    if !Path::new(DEBIAN_RUSTC).exists() {
        bail!("{DEBIAN_RUSTC} is missing (Debian's rustc-web); run `cargo xtask setup`");
    }
    let src = Path::new("/usr/lib/rustlib/src/rust/library/core");
    if !src.exists() {
        bail!(
            "{} is missing (Debian's rust-web-src); run `cargo xtask setup`",
            src.display()
        );
    }
    if !cargo_bin.join("bpf-linker").exists() {
        bail!(
            "bpf-linker is not in {}; run `cargo xtask setup`",
            cargo_bin.display()
        );
    }
    Ok(())
}

/// `cargo xtask` runs under an outer cargo that exports its own toolchain choice and build
/// settings to us; the inner build must not inherit them. `RUSTUP_TOOLCHAIN` would pin the
/// host toolchain, `CARGO`/`RUSTC*` point at it, `*RUSTFLAGS` and target settings are the
/// host's, and `CARGO_TARGET_DIR` would move the output away from where we copy it from.
fn scrub_outer_cargo_env(cmd: &mut Command) {
    const EXACT: &[&str] = &[
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_BIN_",
    ];
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
}

/// Copy the linked object to its stable place unless the copy there is at least as new
/// (write to a temp file, then rename, so a reader never sees half an object). Copying an
/// unchanged object would give it a new mtime, and `weft` (whose build script watches it)
/// would rebuild on every call. Returns whether it copied.
fn install(built: &Path, dest: &Path) -> Result<bool> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let built_at = mtime(built).with_context(|| format!("reading {}", built.display()))?;
    if mtime(dest).is_ok_and(|t| t >= built_at) {
        return Ok(false);
    }
    let dir = dest.parent().context("object path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dest.with_extension("o.tmp");
    std::fs::copy(built, &tmp)
        .with_context(|| format!("copying {} to {}", built.display(), tmp.display()))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))?;
    Ok(true)
}
