//! The node's own filesystem for hostPath volumes. Lab nodes share the machine's files, so a
//! node with `host_root` gets its hostPaths under that directory (`/opt/cni/bin` ->
//! `<host_root>/opt/cni/bin`), as every real node has its own disk. Kernel filesystems
//! (`/sys`, `/proc`, `/dev`) stay the machine's, which the node's namespaces already scope.
//!
//! A hostPath under `/run` is also bind-mounted at its own path in the stand-in's (private)
//! mount namespace, so the programs the stand-in runs, CNI plugins first, see the node's
//! `/run/…` exactly where the pod does: a socket a host-network pod creates in its hostPath
//! `/run/weft` is the socket a CNI config naming `/run/weft/weft.sock` reaches.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Kernel filesystems that are never remapped.
const MACHINE_PREFIXES: &[&str] = &["/sys", "/proc", "/dev"];

/// The node's filesystem root, if it has one of its own.
#[derive(Debug, Default)]
pub struct HostFs {
    root: Option<PathBuf>,
    /// `/run` paths bind-mounted into the stand-in's namespace (unmounted at stop).
    exposed: Mutex<Vec<PathBuf>>,
}

fn is_under(path: &Path, prefix: &str) -> bool {
    path.starts_with(prefix)
}

/// `/var/run/x` is `/run/x` (a symlink on every Debian machine).
fn run_path(path: &Path) -> Option<PathBuf> {
    if let Ok(rest) = path.strip_prefix("/var/run") {
        return Some(Path::new("/run").join(rest));
    }
    is_under(path, "/run").then(|| path.to_owned())
}

impl HostFs {
    pub fn new(root: Option<PathBuf>) -> Self {
        Self {
            root,
            exposed: Mutex::default(),
        }
    }

    /// Where the node keeps `path` (a hostPath's `path`).
    pub fn source(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        match &self.root {
            Some(root) if p.is_absolute() && !MACHINE_PREFIXES.iter().any(|m| is_under(p, m)) => {
                root.join(p.strip_prefix("/").expect("absolute"))
            }
            _ => p.to_owned(),
        }
    }

    /// For a hostPath under `/run`: bind its node directory `source` at `path` in this
    /// process's mount namespace (once), creating the mount point on the machine's /run (noted
    /// in `registry`). Other paths: nothing to do.
    pub fn expose(&self, path: &str, source: &Path, registry: &Path) -> std::io::Result<()> {
        let Some(target) = run_path(Path::new(path)) else {
            return Ok(());
        };
        // `/run` itself stays the machine's (the stand-in's netns mounts live there); the
        // node's directories under it are exposed one by one.
        if self.root.is_none() || target == source || target == Path::new("/run") {
            return Ok(());
        }
        let mut exposed = self.exposed.lock().expect("not poisoned");
        if exposed.contains(&target) {
            return Ok(());
        }
        super::volumes::create_mount_point(&target, registry)?;
        nix::mount::mount(
            Some(source),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(std::io::Error::from)?;
        tracing::info!(path = %target.display(), source = %source.display(), "node directory mounted");
        exposed.push(target);
        Ok(())
    }

    /// Undo [`Self::expose`] (at stop, so the mount points can be removed).
    pub fn unexpose_all(&self) {
        let mut exposed = self.exposed.lock().expect("not poisoned");
        for target in exposed.drain(..) {
            if let Err(e) = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!(path = %target.display(), error = %e, "unmounting node directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_land_under_the_node_root_except_kernel_filesystems() {
        let fs = HostFs::new(Some("/lab/nodes/node-1/root".into()));
        assert_eq!(fs.source("/opt/cni/bin"), PathBuf::from("/lab/nodes/node-1/root/opt/cni/bin"));
        assert_eq!(fs.source("/run/weft"), PathBuf::from("/lab/nodes/node-1/root/run/weft"));
        assert_eq!(fs.source("/sys/fs/bpf"), PathBuf::from("/sys/fs/bpf"));
        assert_eq!(fs.source("/proc"), PathBuf::from("/proc"));
        assert_eq!(fs.source("/system"), PathBuf::from("/lab/nodes/node-1/root/system"));
        let plain = HostFs::new(None);
        assert_eq!(plain.source("/opt/cni/bin"), PathBuf::from("/opt/cni/bin"));
    }

    #[test]
    fn only_run_paths_are_exposed_to_the_node() {
        assert_eq!(run_path(Path::new("/var/run/weft")), Some(PathBuf::from("/run/weft")));
        assert_eq!(run_path(Path::new("/run/weft")), Some(PathBuf::from("/run/weft")));
        assert_eq!(run_path(Path::new("/runx")), None);
        assert_eq!(run_path(Path::new("/var/lib/weft")), None);
    }
}
