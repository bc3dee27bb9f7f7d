//! The bpffs pin directory: check it really is bpffs, create it, clear it.

use std::path::Path;

use nix::sys::statfs::{statfs, BPF_FS_MAGIC};

use super::DatapathError;

pub(super) fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DatapathError + 'a {
    move |source| DatapathError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Fail unless `path` exists and lies on a BPF filesystem.
pub fn check(path: &Path) -> Result<(), DatapathError> {
    let st = statfs(path).map_err(|e| DatapathError::Io {
        op: "statfs",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    if st.filesystem_type() != BPF_FS_MAGIC {
        return Err(DatapathError::NotBpffs {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Create `path` (and parents) on bpffs. The nearest existing ancestor is checked first, so a
/// path outside bpffs fails without leaving directories behind.
pub fn ensure_dir(path: &Path) -> Result<(), DatapathError> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    check(existing).map_err(|e| match e {
        DatapathError::NotBpffs { .. } => DatapathError::NotBpffs {
            path: path.to_path_buf(),
        },
        other => other,
    })?;
    std::fs::create_dir_all(path).map_err(io("creating", path))?;
    check(path)
}

/// Remove `path` and every pin below it. Refuses to touch anything that is not on bpffs, so a
/// wrong path can never delete ordinary files.
pub fn remove_tree(path: &Path) -> Result<(), DatapathError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspecting", path)(e)),
        Ok(_) => {}
    }
    check(path)?;
    std::fs::remove_dir_all(path).map_err(io("removing", path))
}

/// Remove one pin file; Ok if it is already gone.
pub fn remove_pin(path: &Path) -> Result<(), DatapathError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("unpinning", path)(e)),
        _ => Ok(()),
    }
}
