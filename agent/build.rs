//! Embeds the eBPF object built by `cargo xtask build-ebpf` into `weft`, so the agent is one
//! self-contained binary. Fails (rather than embedding something old) when the object is
//! missing or older than the eBPF sources.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Relative to the workspace root; `xtask/src/ebpf.rs` (`OBJECT_REL_PATH`) writes it there.
const OBJECT_REL_PATH: &str = "target/bpf/weft-dataplane.o";
/// The `layout-bump` test build's object (`LAYOUT_BUMP_OBJECT_REL_PATH` in xtask), embedded
/// when the agent is built with that feature.
const LAYOUT_BUMP_OBJECT_REL_PATH: &str = "target/bpf/weft-dataplane-layout-bump.o";

/// Everything the object is built from (relative to the workspace root).
const INPUTS: &[&str] = &[
    "dataplane-ebpf/src",
    "dataplane-ebpf/Cargo.toml",
    "dataplane-ebpf/Cargo.lock",
    "dataplane-ebpf/.cargo/config.toml",
    "dataplane-common/src",
    "dataplane-common/Cargo.toml",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("agent/ lives one level below the workspace root");
    let layout_bump = std::env::var_os("CARGO_FEATURE_LAYOUT_BUMP").is_some();
    let object = root.join(if layout_bump { LAYOUT_BUMP_OBJECT_REL_PATH } else { OBJECT_REL_PATH });

    println!("cargo:rerun-if-changed={}", object.display());
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }

    let built = match std::fs::metadata(&object).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => fail(&format!("the eBPF object {} is missing", object.display())),
    };
    if let Some((newest, path)) = newest_input(root) {
        if newest > built {
            fail(&format!(
                "the eBPF object {} is older than {}",
                object.display(),
                path.display()
            ));
        }
    }

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let dest = out.join("weft-dataplane.o");
    if let Err(e) = std::fs::copy(&object, &dest) {
        fail(&format!(
            "copying {} to {}: {e}",
            object.display(),
            dest.display()
        ));
    }
}

fn fail(why: &str) -> ! {
    eprintln!("error: {why}.\nRun `cargo xtask build-ebpf` first (from the workspace root; the `layout-bump` build's\nobject comes with `cargo xtask image --layout-bump`).");
    std::process::exit(1);
}

/// The most recently modified input file and its time.
fn newest_input(root: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack: Vec<PathBuf> = INPUTS.iter().map(|p| root.join(p)).collect();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(t) = meta.modified() {
            if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                newest = Some((t, path));
            }
        }
    }
    newest
}
