//! A test cgroup v2 directory under `/sys/fs/cgroup/unified`, removed on drop (its processes
//! killed first), and commands started inside it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::unique_id;

/// Where this machine mounts the cgroup v2 hierarchy (the v1 controllers sit beside it).
pub const UNIFIED: &str = "/sys/fs/cgroup/unified";

pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    /// `/sys/fs/cgroup/unified/weft-test-<unique id>-<name>`. Fails loudly without cgroup v2.
    pub fn new(name: &str) -> Self {
        let st = nix::sys::statfs::statfs(UNIFIED)
            .unwrap_or_else(|e| panic!("socket LB tests need cgroup v2 at {UNIFIED}: {e}"));
        assert!(
            st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC,
            "{UNIFIED} is not a cgroup v2 mount"
        );
        let path = Path::new(UNIFIED).join(format!("weft-test-{}-{name}", unique_id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// `sh -c` `script` started inside this cgroup (it moves itself in before anything else
    /// runs; children inherit the cgroup).
    pub fn command(&self, script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "echo $$ > {}/cgroup.procs && exec {script}",
            self.path.display()
        ));
        c
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!("could not remove {}", self.path.display());
    }
}
