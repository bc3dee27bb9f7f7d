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

/// Unpacks `archives` under `<state>/images/`; with `weft`, also weft's default archive when
/// none of them holds the DaemonSet's image, and refuses when the image is still missing.
pub fn load(state: &StateDir, archives: &[PathBuf], weft: bool) -> anyhow::Result<Vec<LoadedImage>> {
    let mut loaded = Vec::new();
    for archive in archives {
        loaded.push(unpack(state, archive, loaded.len())?);
    }
    if !weft {
        return Ok(loaded);
    }
    let reference = daemonset_image()?;
    if !loaded.iter().any(|l| l.matches(&reference)) {
        let path = default_archive(&reference);
        if !path.is_file() {
            bail!(
                "weft's DaemonSet runs {reference}, and no --image archive holds it: build it with \
                 `cargo xtask image` (writes {}) or pass --image ARCHIVE",
                path.display()
            );
        }
        let image = unpack(state, &path, loaded.len())?;
        if !image.matches(&reference) {
            bail!("weft's DaemonSet runs {reference}, but {} holds {}: rebuild with `cargo xtask image`", path.display(), image.reference);
        }
        loaded.push(image);
    }
    Ok(loaded)
}

/// Unpacks one archive as the node store's image number `n`.
fn unpack(state: &StateDir, archive: &Path, n: usize) -> anyhow::Result<LoadedImage> {
    let dest = state.root().join("images").join(n.to_string());
    let image = image::unpack(archive, &dest).with_context(|| format!("loading {}", archive.display()))?;
    eprintln!("  loaded {} from {}", image.reference, archive.display());
    Ok(image)
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
