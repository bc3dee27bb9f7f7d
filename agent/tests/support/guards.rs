//! Cleanup guards: a temp directory, a child process and a private bpffs mount, each removed,
//! killed or unmounted on drop, also when the test panics.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A temp directory `<tmp>/wt-<id>`, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(id: &str) -> Self {
        let p = std::env::temp_dir().join(format!("wt-{id}"));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (TERM, then KILL) and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private bpffs instance mounted in a temp dir, unmounted on drop: each node's pins live
/// apart from every other test's and from the machine's /sys/fs/bpf (which may not even be
/// mounted).
pub struct BpfMount(pub PathBuf);

impl BpfMount {
    pub fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot mount bpffs at {}: {e} (the kernel needs CONFIG_BPF_SYSCALL)",
                dir.display()
            )
        });
        Self(dir)
    }
}

impl Drop for BpfMount {
    fn drop(&mut self) {
        // Unmounting drops every pin below: maps, programs and links go with it.
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}
