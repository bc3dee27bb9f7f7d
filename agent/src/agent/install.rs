//! Installing the CNI plugin on the node: the `weft` binary into the CNI bin directory and the
//! network configuration into the CNI config directory, each replaced atomically (temp file +
//! rename), only once the datapath is ready. Nothing is removed on shutdown: pods keep
//! being created and deleted while the agent restarts (ADD waits for the agent; DEL cleans up
//! locally).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct InstallError {
    op: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// The conflist the agent installs: the weft plugin pointed at this agent's socket, with the
/// pod MTU, then `portmap` for hostPort if the node has it (as Cilium chains it).
pub fn conflist(socket: &Path, mtu: u32, with_portmap: bool) -> serde_json::Value {
    let mut plugins = vec![json!({
        "type": "weft",
        "agentSocket": socket,
        "mtu": mtu,
    })];
    if with_portmap {
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    }
    json!({"cniVersion": "1.1.0", "name": "weft", "plugins": plugins})
}

/// Write `bytes` to `path` through a temp file in the same directory, fsync, chmod, rename.
/// Unchanged content is left alone (no needless inotify event at the runtime).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, InstallError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let err = |op, source| InstallError {
        op,
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| err("creating the directory of", e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.weft-tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err("writing", e)
    })?;
    Ok(true)
}

/// Copy the running binary to `<bin_dir>/weft` and write `<conf_dir>/<conf_name>`.
/// Returns (binary replaced, config replaced).
pub fn install(
    bin_dir: &Path,
    conf_dir: &Path,
    conf_name: &str,
    socket: &Path,
    mtu: u32,
) -> Result<(bool, bool), InstallError> {
    let exe = PathBuf::from("/proc/self/exe");
    let bytes = std::fs::read(&exe).map_err(|source| InstallError {
        op: "reading",
        path: exe,
        source,
    })?;
    let bin = write_atomic(&bin_dir.join("weft"), &bytes, 0o755)?;
    let portmap = bin_dir.join("portmap").is_file();
    let doc = conflist(socket, mtu, portmap);
    let text = serde_json::to_vec_pretty(&doc).expect("conflist serializes");
    let conf = write_atomic(&conf_dir.join(conf_name), &text, 0o644)?;
    Ok((bin, conf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_names_the_socket_mtu_and_chains_portmap_if_present() {
        let c = conflist(Path::new("/run/weft/weft.sock"), 1450, true);
        assert_eq!(c["plugins"][0]["type"], "weft");
        assert_eq!(c["plugins"][0]["agentSocket"], "/run/weft/weft.sock");
        assert_eq!(c["plugins"][0]["mtu"], 1450);
        assert_eq!(c["plugins"][1]["type"], "portmap");
        assert_eq!(conflist(Path::new("/s"), 1500, false)["plugins"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn atomic_write_replaces_changes_only_and_sets_the_mode() {
        let dir = std::env::temp_dir().join(format!("weft-install-{}", std::process::id()));
        let path = dir.join("sub/05-weft.conflist");
        assert!(write_atomic(&path, b"one", 0o644).unwrap());
        assert!(!write_atomic(&path, b"one", 0o644).unwrap(), "unchanged: not rewritten");
        assert!(write_atomic(&path, b"two", 0o600).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
