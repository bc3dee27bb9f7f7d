//! Fixtures shared by every integration test binary (`mod support;`): commands, unique names,
//! preconditions that fail loudly, network namespaces and cleanup guards, plus the CNI node and
//! the packet-test helpers. Every fixture cleans up in Drop, also when the test panics.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the fixtures"
)]

pub mod bpf;
pub mod cgroup;
pub mod frames;
pub mod guards;
pub mod lb;
pub mod netns;
pub mod node;
pub mod veth;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The PATH the fixtures (and the plugin they run) search for `ip`, `ping`, `socat`.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Run a command; panic with its output if it cannot run or fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `<pid>-<n>`: unique to this process and call, so names built from it (namespaces, temp
/// dirs, pin dirs) never collide between parallel tests or test binaries.
pub fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fail (never skip) when not root; `what` names the tests in the message.
pub fn require_root(what: &str) {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "{what} need root (euid is {euid}): run them with sudo or as root"
    );
}

/// Fail (never skip) when one of `bins` is not installed.
pub fn require_tools(bins: &[&str]) {
    for bin in bins {
        let found = PATH.split(':').any(|d| Path::new(d).join(bin).exists());
        assert!(
            found,
            "{bin} is not installed (cargo xtask setup installs it)"
        );
    }
}
