//! The few kernel settings of the node a CNI needs: forwarding on, and reverse-path filtering
//! loose where traffic legitimately arrives on another device than its return route.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}")]
pub struct SysctlError {
    path: PathBuf,
    source: std::io::Error,
}

fn path(name: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(name.replace('.', "/"))
}

/// The value of `name` (`net.ipv4.ip_forward`), trimmed.
pub fn get(name: &str) -> Result<String, SysctlError> {
    let p = path(name);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|source| SysctlError { path: p, source })
}

/// Set `name` to `value` unless it already is; returns whether it changed.
pub fn ensure(name: &str, value: &str) -> Result<bool, SysctlError> {
    if get(name)? == value {
        return Ok(false);
    }
    let p = path(name);
    std::fs::write(&p, value).map_err(|source| SysctlError { path: p, source })?;
    tracing::info!(sysctl = name, value, "set");
    Ok(true)
}

/// Strict reverse-path filtering (1) becomes loose (2) on `dev`; 0 and 2 stay.
pub fn loosen_rp_filter(dev: &str) -> Result<(), SysctlError> {
    for d in ["all", dev] {
        let name = format!("net.ipv4.conf.{d}.rp_filter");
        if get(&name)? == "1" {
            ensure(&name, "2")?;
        }
    }
    Ok(())
}
