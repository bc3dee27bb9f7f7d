//! Image archives loaded onto every node before the workloads start (what `kind load
//! image-archive` does): `weft-lab up --image ARCHIVE`, each unpacked once under the state
//! directory and handed to the kubelet stand-ins, which run pods naming them from their file
//! systems. With `--cni weft` the image weft's DaemonSet names must be among them: by default
//! the archive `cargo xtask image` writes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::kubelet::image::{self, LoadedImage};
use crate::state::StateDir;

/// The image weft's DaemonSet in `deploy/base` runs (`ghcr.io/weft-net/weft:0.1.0`).
pub fn daemonset_image() -> anyhow::Result<String> {
    let path = crate::weft::deploy_dir().join("base/daemonset.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    image_of(&text).with_context(|| format!("{} names no image", path.display()))
}

/// The first `image:` of a manifest.
fn image_of(manifest: &str) -> Option<String> {
    manifest
        .lines()
        .find_map(|l| l.trim().trim_start_matches("- ").strip_prefix("image:"))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// Where `cargo xtask image` writes the archive of `reference` (`target/image/weft-0.1.0.tar`).
pub fn default_archive(reference: &str) -> PathBuf {
    let tag = reference.rsplit_once(':').map_or("latest", |(_, t)| t);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("image").join(format!("weft-{tag}.tar"))
}

/// Unpacks `archives` (plus weft's default archive when `weft` and none of them holds the
/// DaemonSet's image) under `<state>/images/`, checking that weft's image is there.
pub fn load(
    state: &StateDir,
    archives: &[PathBuf],
    weft: bool,
) -> anyhow::Result<Vec<LoadedImage>> {
    let mut archives = archives.to_vec();
    let wanted = if weft { Some(daemonset_image()?) } else { None };
    let mut loaded = Vec::new();
    let mut i = 0;
    while i < archives.len() || (i == archives.len() && needs_default(&loaded, wanted.as_deref())) {
        if i == archives.len() {
            let reference = wanted
                .as_deref()
                .expect("needs_default needs a wanted image");
            let path = default_archive(reference);
            if !path.is_file() {
                bail!(
                    "weft's DaemonSet runs {reference}, and no --image archive holds it: build it with \
                     `cargo xtask image` (writes {}) or pass --image ARCHIVE",
                    path.display()
                );
            }
            archives.push(path);
        }
        let archive = &archives[i];
        let dest = state.root().join("images").join(i.to_string());
        let image = image::unpack(archive, &dest)
            .with_context(|| format!("loading {}", archive.display()))?;
        eprintln!("  loaded {} from {}", image.reference, archive.display());
        loaded.push(image);
        i += 1;
    }
    if let Some(reference) = wanted {
        if needs_default(&loaded, Some(&reference)) {
            let names: Vec<&str> = loaded.iter().map(|l| l.reference.as_str()).collect();
            bail!(
                "weft's DaemonSet runs {reference}, but the loaded archives hold {names:?}: rebuild with `cargo xtask image`"
            );
        }
    }
    Ok(loaded)
}

fn needs_default(loaded: &[LoadedImage], wanted: Option<&str>) -> bool {
    wanted.is_some_and(|w| !loaded.iter().any(|l| l.matches(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemonset_names_the_image_xtask_builds() {
        let reference = daemonset_image().unwrap();
        assert!(
            reference.starts_with("ghcr.io/weft-net/weft:"),
            "{reference}"
        );
        let archive = default_archive(&reference);
        assert!(archive.ends_with(format!(
            "image/weft-{}.tar",
            reference.rsplit_once(':').unwrap().1
        )));
        assert_eq!(
            image_of("spec:\n  containers:\n    - image: \"x/y:1\"\n").as_deref(),
            Some("x/y:1")
        );
    }
}
