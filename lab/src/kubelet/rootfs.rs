//! A container's own root file system, for images loaded from archives: an overlay of the
//! image's unpacked layers (read-only, shared) under a per-container upper directory, the
//! kernel file systems and the pod's resolv.conf and hosts bound in, the volumes at their
//! mountPaths inside it, then chroot, as containerd's snapshotter and runc do. Each start of
//! the container gets a fresh upper directory (a new container, as after a restart).

use std::io;
use std::path::{Path, PathBuf};

use super::nsexec::ChildSetup;

/// What the runtime mounts into every container before its volumes: the kernel's file
/// systems (the stand-in's /sys, with its bpffs and cgroup2) and kubelet's managed files.
const SYSTEM_MOUNTS: &[&str] = &["/proc", "/sys", "/dev", "/etc/resolv.conf", "/etc/hosts"];

/// The file system of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRoot {
    /// The image's unpacked layers.
    pub image: PathBuf,
    /// `<pod dir>/<container>-root`: upper, work and the mount point.
    pub dir: PathBuf,
}

/// Where `path` (absolute inside the container) is under `base`.
fn under(base: &Path, path: &Path) -> PathBuf {
    base.join(path.strip_prefix("/").unwrap_or(path))
}

impl ContainerRoot {
    fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The overlay's mount point: the container's `/` (mounted only in its mount namespace).
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }

    /// Makes a mount point for `target` in the upper directory unless the image has one: a
    /// directory, or an empty file when `source` is a file.
    fn mount_point(&self, source: &Path, target: &Path) -> io::Result<()> {
        if under(&self.image, target).symlink_metadata().is_ok() {
            return Ok(());
        }
        let at = under(&self.upper(), target);
        if source.is_dir() {
            std::fs::create_dir_all(&at)
        } else {
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&at)
                .map(drop)
        }
    }

    /// Prepares a fresh upper directory and the mount points, then adds to `setup` (which has
    /// entered the pod and made the container's mount namespace) the overlay, the system
    /// mounts, the volume `binds` (source on this machine, mountPath) and the chroot.
    pub fn setup(
        &self,
        mut setup: ChildSetup,
        binds: &[(PathBuf, PathBuf)],
    ) -> io::Result<ChildSetup> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)?;
        }
        for d in [self.upper(), self.work(), self.merged()] {
            std::fs::create_dir_all(d)?;
        }
        let system = SYSTEM_MOUNTS
            .iter()
            .map(|p| (PathBuf::from(p), PathBuf::from(p)));
        let all: Vec<(PathBuf, PathBuf)> = system.chain(binds.iter().cloned()).collect();
        for (src, dst) in &all {
            self.mount_point(src, dst)?;
        }
        setup = setup.overlay(&self.image, &self.upper(), &self.work(), &self.merged())?;
        for (src, dst) in &all {
            setup = setup.bind(src, &under(&self.merged(), dst))?;
        }
        setup.chroot(&self.merged())
    }

    /// Adds to `setup` what enters the running container `pid`'s file system (an exec probe):
    /// its mount namespace, then the chroot into its overlay.
    pub fn join(&self, setup: ChildSetup, pid: u32) -> io::Result<ChildSetup> {
        setup
            .enter(Path::new(&format!("/proc/{pid}/ns/mnt")), libc::CLONE_NEWNS)?
            .chroot(&self.merged())
    }

    /// Removes the container's directories (its overlay is gone with its mount namespace).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_go_into_the_upper_directory_unless_the_image_has_them() {
        let tmp = crate::kubelet::testutil::tempdir("wk-rootfs");
        let image = tmp.join("image");
        std::fs::create_dir_all(image.join("etc")).unwrap();
        std::fs::create_dir_all(image.join("proc")).unwrap();
        let root = ContainerRoot {
            image,
            dir: tmp.join("c-root"),
        };
        std::fs::create_dir_all(root.upper()).unwrap();
        root.mount_point(Path::new("/"), Path::new("/proc"))
            .unwrap();
        root.mount_point(Path::new("/"), Path::new("/run/weft"))
            .unwrap();
        root.mount_point(&tmp.join("missing-file"), Path::new("/etc/hosts"))
            .unwrap();
        assert!(!root.upper().join("proc").exists(), "the image has /proc");
        assert!(root.upper().join("run/weft").is_dir());
        assert!(root.upper().join("etc/hosts").is_file());
        assert_eq!(
            under(Path::new("/m"), Path::new("/sys/fs/bpf")),
            PathBuf::from("/m/sys/fs/bpf")
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
