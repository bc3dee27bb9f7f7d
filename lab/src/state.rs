//! The lab's state directory: every file the lab makes lives under it, so `down` can remove it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::spec::LabSpec;

/// Default state directory (a tmpfs: a reboot also clears it).
pub const DEFAULT_STATE_DIR: &str = "/run/weft-lab";
/// Environment variable that overrides the state directory.
pub const STATE_ENV: &str = "WEFT_LAB_STATE";

/// Written to `lab.json` once `up` has decided what to build.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabRecord {
    pub spec: LabSpec,
    /// The upstream binaries, recorded at `up` so later commands need no build step.
    pub bins: crate::upstream::Bins,
    /// Images loaded onto every node (`--image`, weft's own with `--cni weft`).
    #[serde(default)]
    pub images: Vec<crate::kubelet::image::LoadedImage>,
}

/// Layout of the state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `$WEFT_LAB_STATE` or `/run/weft-lab`.
    pub fn from_env() -> Self {
        let root = std::env::var_os(STATE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        Self::at(root)
    }

    /// A state directory at an explicit place.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn exists(&self) -> bool {
        self.root.exists()
    }
    pub fn record_file(&self) -> PathBuf {
        self.root.join("lab.json")
    }
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn kubeconfig(&self, identity: &str) -> PathBuf {
        self.root.join("kubeconfigs").join(format!("{identity}.kubeconfig"))
    }
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
    pub fn pids(&self) -> PathBuf {
        self.root.join("pids")
    }
    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.pids().join(format!("{name}.pid"))
    }
    /// Per-node directory: kubelet config and state, CNI config, IPAM data.
    pub fn node(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node)
    }
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }
    /// What `env` puts first on PATH: the lab's `kubectl` (see `shellenv`).
    pub fn client_bin(&self) -> PathBuf {
        self.root.join("client")
    }

    pub fn save_record(&self, rec: &LabRecord) -> anyhow::Result<()> {
        let path = self.record_file();
        std::fs::write(&path, serde_json::to_vec_pretty(rec)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The record of the running lab, or a clear error when no lab is up.
    pub fn load_record(&self) -> anyhow::Result<LabRecord> {
        let path = self.record_file();
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "no lab is up (cannot read {}: {e}); start one with `cargo xtask lab up`",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}
