//! The image itself, without a container daemon or registry: umoci makes an OCI image layout
//! from the root file system (one layer, the entrypoint and environment in its config), and
//! the layout is written as one tar that both formats read: `index.json` (OCI, named for
//! containerd with `io.containerd.image.name`, what `ctr import` and `kind load image-archive`
//! use) and Docker's `manifest.json` (what `docker load` uses), over the same blobs.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::rootfs::PATH;
use crate::util;

/// Docker's `manifest.json` for the OCI `manifest` (config and layer blobs by digest) under
/// the name `reference`.
pub fn docker_manifest(manifest: &Value, reference: &str) -> Result<Value> {
    let blob = |d: &Value| -> Result<String> {
        let digest = d["digest"].as_str().context("a descriptor without a digest")?;
        let hex = digest.strip_prefix("sha256:").context("a digest that is not sha256")?;
        Ok(format!("blobs/sha256/{hex}"))
    };
    let layers = manifest["layers"]
        .as_array()
        .context("a manifest without layers")?
        .iter()
        .map(blob)
        .collect::<Result<Vec<_>>>()?;
    Ok(json!([{"Config": blob(&manifest["config"])?, "RepoTags": [reference], "Layers": layers}]))
}

/// Name the layout's only manifest `reference` for containerd, keeping umoci's tag.
pub fn name_in_index(index: &mut Value, reference: &str) -> Result<()> {
    let manifests = index["manifests"].as_array_mut().context("index.json without manifests")?;
    if manifests.len() != 1 {
        bail!("expected one image in the layout, found {}", manifests.len());
    }
    manifests[0]["annotations"]["io.containerd.image.name"] = reference.into();
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Build the image from `rootfs` as `reference` (`ghcr.io/weft-net/weft:0.1.0`) into the tar
/// `out`, working in `work`.
pub fn build(rootfs: &Path, work: &Path, reference: &str, out: &Path) -> Result<()> {
    let tag = reference.rsplit_once(':').map(|(_, t)| t).context("a reference without a tag")?;
    if work.exists() {
        std::fs::remove_dir_all(work)?;
    }
    std::fs::create_dir_all(work)?;
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let image = format!("{}:{tag}", layout.display());
    let umoci = |args: &[&str]| util::run(Command::new("umoci").args(args));
    umoci(&["init", "--layout", &layout.display().to_string()])?;
    umoci(&["new", "--image", &image])?;
    umoci(&["unpack", "--image", &image, &bundle.display().to_string()])?;
    // The file system goes into the bundle as it is (owners, modes, links).
    util::run(Command::new("cp").arg("-a").arg(format!("{}/.", rootfs.display())).arg(bundle.join("rootfs")))?;
    umoci(&["repack", "--image", &image, &bundle.display().to_string()])?;
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.entrypoint",
        "/usr/local/bin/weft",
        "--config.cmd",
        "agent",
        "--config.env",
        &format!("PATH={PATH}"),
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ])?;
    umoci(&["gc", "--layout", &layout.display().to_string()])?;

    let mut index = read_json(&layout.join("index.json"))?;
    name_in_index(&mut index, reference)?;
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    let digest = index["manifests"][0]["digest"].as_str().context("the manifest's digest")?;
    let manifest = read_json(&layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:")))?;
    std::fs::write(layout.join("manifest.json"), serde_json::to_vec(&docker_manifest(&manifest, reference)?)?)?;
    util::run(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(out)
            .args(["oci-layout", "index.json", "manifest.json", "blobs"]),
    )?;
    let _ = std::fs::remove_dir_all(&bundle);
    Ok(())
}

/// What `skopeo inspect` reads from the archive as an OCI archive and as a Docker archive: both
/// must name the same layers and the entrypoint.
pub fn inspect(out: &Path) -> Result<(Value, Value)> {
    let read = |transport: &str| -> Result<Value> {
        let o = Command::new("skopeo")
            .args(["inspect", "--config", &format!("{transport}:{}", out.display())])
            .output()
            .context("running skopeo")?;
        if !o.status.success() {
            bail!("skopeo inspect {transport}: {}", String::from_utf8_lossy(&o.stderr));
        }
        serde_json::from_slice(&o.stdout).context("parsing skopeo inspect")
    };
    Ok((read("oci-archive")?, read("docker-archive")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_manifest_points_at_the_oci_blobs() {
        let m = json!({"config": {"digest": "sha256:aa"}, "layers": [{"digest": "sha256:bb"}, {"digest": "sha256:cc"}]});
        let d = docker_manifest(&m, "ghcr.io/weft-net/weft:0.1.0").unwrap();
        assert_eq!(d, json!([{"Config": "blobs/sha256/aa", "RepoTags": ["ghcr.io/weft-net/weft:0.1.0"],
                              "Layers": ["blobs/sha256/bb", "blobs/sha256/cc"]}]));
        assert!(docker_manifest(&json!({"config": {"digest": "md5:x"}, "layers": []}), "x:1").is_err());
    }

    #[test]
    fn the_index_names_its_one_image_for_containerd() {
        let mut i = json!({"manifests": [{"digest": "sha256:aa", "annotations": {"org.opencontainers.image.ref.name": "0.1.0"}}]});
        name_in_index(&mut i, "ghcr.io/weft-net/weft:0.1.0").unwrap();
        assert_eq!(i["manifests"][0]["annotations"]["io.containerd.image.name"], "ghcr.io/weft-net/weft:0.1.0");
        assert_eq!(i["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "0.1.0");
        assert!(name_in_index(&mut json!({"manifests": []}), "x:1").is_err());
    }
}
