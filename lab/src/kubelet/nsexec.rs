//! Starting a process inside a pod: entering or creating namespaces and applying bind mounts in
//! the forked child before exec (what `ip netns exec` and a container runtime do).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Everything the child does between fork and exec. Built in the parent (it allocates);
/// `apply` only makes system calls, so it is safe after fork in a threaded program.
#[derive(Debug, Default)]
pub struct ChildSetup {
    /// Namespaces to join, in order (fds stay open in the parent until spawn returns).
    enter: Vec<(File, libc::c_int)>,
    /// New UTS namespace with this hostname.
    hostname: Option<CString>,
    /// New mount namespace (slave of the current one, so nothing propagates back).
    new_mount_ns: bool,
    /// Mount a sysfs for the current network namespace on /sys (as `ip netns exec` does).
    remount_sys: bool,
    /// An overlay (mount options, mount point) made after the new mount namespace: the
    /// container's own root file system over its image's.
    overlay: Option<(CString, CString)>,
    /// Bind mounts (source, target), applied after the above.
    binds: Vec<(CString, CString)>,
    /// Change root to this directory after the binds (the container's file system).
    chroot: Option<CString>,
    /// Working directory.
    workdir: Option<CString>,
    /// Die with the stand-in: SIGKILL when the spawning thread's process goes away.
    die_with_parent: Option<libc::pid_t>,
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

impl ChildSetup {
    /// Joins the namespace at `path` (e.g. /run/netns/x or /proc/PID/ns/mnt).
    pub fn enter(mut self, path: &Path, nstype: libc::c_int) -> io::Result<Self> {
        let f = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
        self.enter.push((f, nstype));
        Ok(self)
    }

    pub fn hostname(mut self, name: &str) -> io::Result<Self> {
        self.hostname =
            Some(CString::new(name).map_err(|_| io::Error::other("hostname contains NUL"))?);
        Ok(self)
    }

    pub fn new_mount_ns(mut self) -> Self {
        self.new_mount_ns = true;
        self
    }

    pub fn remount_sys(mut self) -> Self {
        self.remount_sys = true;
        self
    }

    /// Mounts an overlay of `lower` (read-only) under `upper`/`work` at `merged`.
    pub fn overlay(mut self, lower: &Path, upper: &Path, work: &Path, merged: &Path) -> io::Result<Self> {
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let opts = CString::new(opts).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        self.overlay = Some((opts, cpath(merged)?));
        Ok(self)
    }

    pub fn chroot(mut self, root: &Path) -> io::Result<Self> {
        self.chroot = Some(cpath(root)?);
        Ok(self)
    }

    pub fn bind(mut self, source: &Path, target: &Path) -> io::Result<Self> {
        self.binds.push((cpath(source)?, cpath(target)?));
        Ok(self)
    }

    /// The child gets SIGKILL if the stand-in dies (PR_SET_PDEATHSIG), so a crashed stand-in
    /// leaves no pod processes behind (its successor reclaims the network state).
    pub fn die_with_parent(mut self) -> Self {
        self.die_with_parent = Some(std::process::id() as libc::pid_t);
        self
    }

    pub fn workdir(mut self, dir: &Path) -> io::Result<Self> {
        self.workdir = Some(cpath(dir)?);
        Ok(self)
    }

    /// Runs in the child after fork. Only raw system calls: no allocation, no locks.
    fn apply(&self) -> io::Result<()> {
        fn check(r: libc::c_int) -> io::Result<()> {
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
        // SAFETY: plain system calls on valid fds and NUL-terminated strings owned by self.
        unsafe {
            if let Some(parent) = self.die_with_parent {
                check(libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ))?;
                // The parent may have died between fork and prctl.
                if libc::getppid() != parent {
                    return Err(io::Error::other(
                        "the stand-in exited while starting the process",
                    ));
                }
            }
            for (f, nstype) in &self.enter {
                check(libc::setns(f.as_raw_fd() as RawFd, *nstype))?;
            }
            if let Some(h) = &self.hostname {
                check(libc::unshare(libc::CLONE_NEWUTS))?;
                check(libc::sethostname(h.as_ptr(), h.as_bytes().len()))?;
            }
            if self.new_mount_ns {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_SLAVE | libc::MS_REC,
                    std::ptr::null(),
                ))?;
            }
            if self.remount_sys {
                check(libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH))?;
                check(libc::mount(
                    c"sysfs".as_ptr(),
                    c"/sys".as_ptr(),
                    c"sysfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ))?;
            }
            if let Some((opts, merged)) = &self.overlay {
                check(libc::mount(
                    c"overlay".as_ptr(),
                    merged.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    opts.as_ptr().cast(),
                ))?;
            }
            for (src, dst) in &self.binds {
                check(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
            }
            if let Some(root) = &self.chroot {
                check(libc::chroot(root.as_ptr()))?;
                check(libc::chdir(c"/".as_ptr()))?;
            }
            // Own session and process group: the whole container is signalled as one.
            check(libc::setsid())?;
            if let Some(d) = &self.workdir {
                check(libc::chdir(d.as_ptr()))?;
            }
        }
        Ok(())
    }

    /// Installs the setup into a command. The returned guard keeps the namespace fds open and
    /// must live until `spawn` returned.
    pub fn install(self, cmd: &mut tokio::process::Command) -> std::sync::Arc<ChildSetup> {
        let setup = std::sync::Arc::new(self);
        let in_child = setup.clone();
        // SAFETY: `apply` is async-signal-safe (system calls only, on data built before fork).
        unsafe {
            cmd.pre_exec(move || in_child.apply());
        }
        setup
    }
}

/// Sends `sig` to a process group; false if it no longer exists.
pub fn kill_group(pgid: u32, sig: libc::c_int) -> bool {
    // SAFETY: kill(2) with a negative pid addresses the group; no memory involved.
    unsafe { libc::kill(-(pgid as libc::pid_t), sig) == 0 }
}

/// The inode of a namespace file (`/run/netns/x`, `/proc/PID/ns/uts`).
pub fn ns_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// SIGKILLs every process whose `kind` namespace (net, uts, …) has inode `ino`; never our own
/// namespace (that would be the whole node). Returns how many were signalled.
pub fn kill_namespace_members(kind: &str, ino: u64) -> usize {
    kill_namespace_members_but(kind, ino, None)
}

/// [`kill_namespace_members`] sparing `spare`: a process that keeps the namespace (and so its
/// inode number) alive until the scan is over, so the number cannot meanwhile be given to a
/// new namespace whose processes the scan would then find.
pub fn kill_namespace_members_but(kind: &str, ino: u64, spare: Option<u32>) -> usize {
    if ns_inode(&Path::new("/proc/self/ns").join(kind)) == Some(ino) {
        return 0;
    }
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        if Some(pid as u32) == spare {
            continue;
        }
        if ns_inode(&entry.path().join("ns").join(kind)) == Some(ino) {
            // SAFETY: kill(2) on a pid; no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            n += 1;
        }
    }
    n
}

/// Start time (clock ticks since boot) of a process, to tell a pid from its reuse.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after the command name start at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_stable() {
        let me = std::process::id();
        let t = start_time(me).expect("own stat is readable");
        assert_eq!(start_time(me), Some(t));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn child_dies_with_the_thread_that_started_it() {
        // PR_SET_PDEATHSIG fires when the spawning thread ends: here a short-lived thread
        // stands in for a stand-in that died.
        let pid = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut cmd = tokio::process::Command::new("/bin/sleep");
                cmd.arg("30");
                let _guard = ChildSetup::default().die_with_parent().install(&mut cmd);
                let child = cmd.spawn().unwrap();
                child.id().unwrap()
            })
        })
        .join()
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // Gone, or a zombie waiting for its reaper (state Z).
        let dead = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true)
        };
        while !dead() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(dead(), "sleep {pid} outlived its parent thread");
    }

    #[tokio::test]
    async fn child_gets_its_own_session_and_workdir() {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(["-c", "pwd; cut -d' ' -f6 /proc/$$/stat; echo $$"])
            .stdout(std::process::Stdio::piped());
        let _guard = ChildSetup::default()
            .workdir(Path::new("/tmp"))
            .unwrap()
            .install(&mut cmd);
        let out = cmd.output().await.unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "/tmp");
        assert_eq!(lines[1], lines[2], "the child leads its own session");
    }
}
