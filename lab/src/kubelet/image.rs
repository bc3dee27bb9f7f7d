//! Images loaded onto the node from archives (what `ctr import` or `kind load image-archive`
//! gives containerd): the archive's layers unpacked into one root file system, and its config's
//! ENTRYPOINT, CMD, Env and WorkingDir. A container naming a loaded image runs inside that
//! file system (an overlay per container, as containerd's snapshotter gives, then chroot), so a
//! file the image lacks is missing for the container too. Images not loaded come from the
//! catalogue.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::catalogue::{compose_argv, CommandError, ImageRef};

/// One image in the node's store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The name the archive gives it (`ghcr.io/weft-net/weft:0.1.0`).
    pub reference: String,
    /// Its unpacked layers (read-only: the lower layer of every container's overlay).
    pub rootfs: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` pairs of the config's Env.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
}

/// Search path when the image declares none (containerd's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl LoadedImage {
    /// Whether a pod's `image:` names this one (same repository and tag, `latest` when none).
    pub fn matches(&self, image: &str) -> bool {
        let (a, b) = (ImageRef::parse(&self.reference), ImageRef::parse(image));
        let tag = |r: &ImageRef| r.tag.clone().unwrap_or_else(|| "latest".into());
        a.repository == b.repository && tag(&a) == tag(&b)
    }

    /// PATH inside the container.
    pub fn path_env(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or_else(|| DEFAULT_PATH.to_string(), |(_, v)| v.clone())
    }

    /// The argv (Docker semantics over the image's ENTRYPOINT and CMD), argv[0] found inside
    /// the image: a path as given, a bare name on the image's PATH.
    pub fn argv(&self, command: &[String], args: &[String]) -> Result<Vec<String>, CommandError> {
        let mut argv = compose_argv(&self.entrypoint, &self.cmd, command, args)?;
        argv[0] = self.resolve(&argv[0])?;
        Ok(argv)
    }

    fn resolve(&self, arg0: &str) -> Result<String, CommandError> {
        let inside = |p: &str| self.rootfs.join(p.trim_start_matches('/'));
        // A link (nft's libraries, busybox applets) counts: it resolves inside the image at run time.
        let present = |p: &str| inside(p).symlink_metadata().is_ok_and(|m| !m.is_dir());
        if arg0.contains('/') {
            return if present(arg0) {
                Ok(arg0.to_string())
            } else {
                Err(CommandError::NotFound {
                    program: arg0.to_string(),
                })
            };
        }
        let path = self.path_env();
        path.split(':')
            .map(|dir| format!("{}/{arg0}", dir.trim_end_matches('/')))
            .find(|p| present(p))
            .ok_or(CommandError::NotFound {
                program: arg0.to_string(),
            })
    }
}

/// The name and config of the archive's one image, read from its `index.json` (OCI) and the
/// manifest and config blobs it points at.
#[derive(Debug, PartialEq)]
struct Described {
    reference: String,
    layers: Vec<(String, bool)>,
    config: Value,
}

/// Reads an OCI layout's index: the one manifest's digest and the name containerd would give
/// it (`io.containerd.image.name`, else `org.opencontainers.image.ref.name`).
fn read_index(index: &Value) -> anyhow::Result<(String, String)> {
    let manifests = index["manifests"]
        .as_array()
        .context("index.json without manifests")?;
    let [m] = manifests.as_slice() else {
        bail!(
            "the archive holds {} images; the lab loads archives of one",
            manifests.len()
        );
    };
    let digest = m["digest"]
        .as_str()
        .context("a manifest without a digest")?
        .to_string();
    let ann = &m["annotations"];
    let name = ann["io.containerd.image.name"]
        .as_str()
        .or_else(|| ann["org.opencontainers.image.ref.name"].as_str())
        .context("the image in the archive has no name (io.containerd.image.name)")?;
    Ok((digest, name.to_string()))
}

fn blob(layout: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("digest {digest:?} is not sha256"))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

fn describe(layout: &Path) -> anyhow::Result<Described> {
    let (digest, reference) = read_index(&read_json(&layout.join("index.json"))?)?;
    let manifest = read_json(&blob(layout, &digest)?)?;
    let layers = manifest["layers"]
        .as_array()
        .context("a manifest without layers")?
        .iter()
        .map(|l| {
            let digest = l["digest"]
                .as_str()
                .context("a layer without a digest")?
                .to_string();
            let gzip = l["mediaType"]
                .as_str()
                .is_some_and(|t| t.ends_with("+gzip") || t.ends_with(".gzip"));
            Ok((digest, gzip))
        })
        .collect::<anyhow::Result<_>>()?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .context("a manifest without a config")?;
    let config = read_json(&blob(layout, config_digest)?)?;
    Ok(Described {
        reference,
        layers,
        config,
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// Unpacks an OCI archive (`cargo xtask image`'s tar) into `dest` (replaced): the layout under
/// `dest/layout`, the layers in order under `dest/rootfs`.
pub fn unpack(archive: &Path, dest: &Path) -> anyhow::Result<LoadedImage> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    let layout = dest.join("layout");
    let rootfs = dest.join("rootfs");
    std::fs::create_dir_all(&layout)?;
    std::fs::create_dir_all(&rootfs)?;
    let tar = |args: &[&std::ffi::OsStr]| -> anyhow::Result<()> {
        let out = Command::new("tar")
            .args(args)
            .output()
            .context("running tar")?;
        if !out.status.success() {
            bail!("tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    tar(&[
        "-xf".as_ref(),
        archive.as_os_str(),
        "-C".as_ref(),
        layout.as_os_str(),
    ])
    .with_context(|| format!("unpacking {}", archive.display()))?;
    let d = describe(&layout)?;
    for (digest, gzip) in &d.layers {
        let flags = if *gzip { "-xzpf" } else { "-xpf" };
        tar(&[
            flags.as_ref(),
            blob(&layout, digest)?.as_os_str(),
            "-C".as_ref(),
            rootfs.as_os_str(),
        ])?;
    }
    let c = &d.config["config"];
    let env = strings(&c["Env"])
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    Ok(LoadedImage {
        reference: d.reference,
        rootfs,
        entrypoint: strings(&c["Entrypoint"]),
        cmd: strings(&c["Cmd"]),
        env,
        workdir: c["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(rootfs: PathBuf) -> LoadedImage {
        LoadedImage {
            reference: "ghcr.io/weft-net/weft:0.1.0".into(),
            rootfs,
            entrypoint: vec!["/usr/local/bin/weft".into()],
            cmd: vec!["agent".into()],
            env: vec![("PATH".into(), "/usr/local/bin:/usr/sbin".into())],
            workdir: None,
        }
    }

    #[test]
    fn a_pod_names_a_loaded_image_by_repository_and_tag() {
        let i = image(PathBuf::from("/nowhere"));
        assert!(i.matches("ghcr.io/weft-net/weft:0.1.0"));
        assert!(
            !i.matches("ghcr.io/weft-net/weft:0.2.0"),
            "another tag is another image"
        );
        assert!(!i.matches("ghcr.io/weft-net/weft"), "no tag is latest");
        assert!(!i.matches("weft:0.1.0"));
    }

    #[test]
    fn argv_follows_docker_semantics_and_finds_programs_only_inside_the_image() {
        let root = crate::kubelet::testutil::tempdir("wk-image");
        std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::write(root.join("usr/local/bin/weft"), "").unwrap();
        std::fs::write(root.join("usr/sbin/nft"), "").unwrap();
        let i = image(root.clone());
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            i.argv(&[], &[]).unwrap(),
            s(&["/usr/local/bin/weft", "agent"])
        );
        assert_eq!(
            i.argv(&[], &s(&["agent", "--x"])).unwrap(),
            s(&["/usr/local/bin/weft", "agent", "--x"])
        );
        assert_eq!(
            i.argv(&s(&["nft"]), &s(&["list", "ruleset"])).unwrap(),
            s(&["/usr/sbin/nft", "list", "ruleset"])
        );
        // The machine has /bin/sh; the image does not, so the container cannot run it.
        assert!(matches!(
            i.argv(&s(&["/bin/sh"]), &[]),
            Err(CommandError::NotFound { .. })
        ));
        assert!(matches!(
            i.argv(&s(&["sh"]), &[]),
            Err(CommandError::NotFound { .. })
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_index_names_the_one_image_as_containerd_would() {
        let idx = json!({"manifests": [{"digest": "sha256:ab", "annotations": {
            "org.opencontainers.image.ref.name": "0.1.0", "io.containerd.image.name": "ghcr.io/weft-net/weft:0.1.0"}}]});
        assert_eq!(
            read_index(&idx).unwrap(),
            ("sha256:ab".into(), "ghcr.io/weft-net/weft:0.1.0".into())
        );
        assert!(read_index(&json!({"manifests": []})).is_err());
        assert!(
            read_index(&json!({"manifests": [{"digest": "sha256:ab"}]})).is_err(),
            "a nameless image"
        );
    }
}
