//! Checks before the lab touches anything: root, usable network namespaces, no lab already up.

use std::path::PathBuf;

use crate::sh;
use crate::spec::NETNS_PREFIX;
use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("the lab needs root (it creates network namespaces, veths and processes in them); \
             run it as root, e.g. `sudo -E cargo xtask lab …`")]
    NotRoot,
    #[error("network namespaces are unusable here (`ip netns add` failed: {0}); the lab needs \
             iproute2 and a kernel with CONFIG_NET_NS")]
    NoNetns(String),
    #[error("a lab is already up (state dir {0} exists); run `cargo xtask lab down` first")]
    AlreadyUp(PathBuf),
    #[error("lab namespaces already exist ({0}); another lab (or a half-removed one) is up: run \
             `cargo xtask lab down` first")]
    NamespacesExist(String),
}

pub fn require_root() -> Result<(), PreflightError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(PreflightError::NotRoot)
    }
}

/// Creates and removes a throwaway namespace to prove `ip netns` works.
pub fn require_netns() -> Result<(), PreflightError> {
    let probe = format!("{NETNS_PREFIX}probe-{}", std::process::id());
    sh::ip(["netns", "add", &probe]).map_err(|e| PreflightError::NoNetns(e.to_string()))?;
    sh::ip(["netns", "del", &probe]).map_err(|e| PreflightError::NoNetns(e.to_string()))?;
    Ok(())
}

pub fn require_no_lab(state: &StateDir) -> Result<(), PreflightError> {
    if state.exists() {
        return Err(PreflightError::AlreadyUp(state.root().to_path_buf()));
    }
    let existing = crate::leftovers::lab_netns();
    if !existing.is_empty() {
        return Err(PreflightError::NamespacesExist(existing.join(", ")));
    }
    Ok(())
}
