//! Driving the lab from tests the way a user does (the `weft-lab` CLI), and an independent
//! listing of what the lab may leave on the machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Prefix of every network namespace the lab makes.
pub const NETNS_PREFIX: &str = "wl-";

/// Fails the test loudly unless it runs as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the lab tests need root (network namespaces, veths); run them as root");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// The `weft-lab` binary: `$WEFT_LAB_BIN`, or built now with cargo (once per test binary).
pub fn weft_lab_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(locate_or_build).clone()
}

fn locate_or_build() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_LAB_BIN") {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "-p", "weft-lab", "--bin", "weft-lab"])
        .current_dir(&root)
        .status()
        .expect("running cargo build -p weft-lab");
    assert!(status.success(), "cargo build -p weft-lab failed");
    // `--cni weft` runs the agent from its image, which `weft-lab up` loads from target/image/.
    // Its progress goes to stderr; stdout (the archive's path and how to load it) is for people.
    let status = Command::new(&cargo)
        .args(["xtask", "image"])
        .current_dir(&root)
        .stdout(Stdio::null())
        .status()
        .expect("running cargo xtask image");
    assert!(status.success(), "cargo xtask image failed");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    target.join("debug/weft-lab")
}

/// The `layout-bump` test build's image archive (`cargo xtask image --layout-bump`: weft with
/// `CT4` in another layout, tagged `VERSION-layout-bump`), built now if needed.
pub fn layout_bump_image_archive() -> PathBuf {
    let archive = weft_image_archive();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["xtask", "image", "--layout-bump"])
        .current_dir(workspace_root())
        .stdout(Stdio::null())
        .status()
        .expect("running cargo xtask image --layout-bump");
    assert!(status.success(), "cargo xtask image --layout-bump failed");
    let bump = archive.with_file_name(format!(
        "{}-layout-bump.tar",
        archive.file_stem().and_then(|s| s.to_str()).expect("archive name")
    ));
    assert!(bump.is_file(), "{} was not built", bump.display());
    bump
}

/// The image weft's DaemonSet in `deploy/base` runs (`ghcr.io/weft-net/weft:VERSION`).
pub fn daemonset_image() -> String {
    let ds = std::fs::read_to_string(workspace_root().join("deploy/base/daemonset.yaml")).expect("deploy/base/daemonset.yaml");
    let image = ds.lines().find_map(|l| l.trim().strip_prefix("image:")).expect("the DaemonSet names an image");
    image.trim().to_string()
}

/// weft's image archive, as `cargo xtask image` writes it (built with [`weft_lab_bin`]): the
/// one tar named for the DaemonSet's image tag in `target/image/`.
pub fn weft_image_archive() -> PathBuf {
    weft_lab_bin();
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let image = daemonset_image();
    let tag = image.rsplit_once(':').expect("the image has a tag").1;
    let archive = target.join("image").join(format!("weft-{tag}.tar"));
    assert!(archive.is_file(), "{} was not built", archive.display());
    archive
}

/// Output of a command run to completion within `timeout` (killed after it).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {desc}: {e}")),
        Err(_) => {
            // SAFETY: plain kill(2) on the pid we spawned.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{desc} did not finish within {timeout:?}");
        }
    }
}

/// A lab driven through its CLI; `Drop` runs `weft-lab down` so a failing test leaves
/// nothing behind.
pub struct Lab {
    bin: PathBuf,
    state: PathBuf,
    up: bool,
    root_before: RootNet,
}

impl Lab {
    /// Prepares a lab with its own state dir; refuses if another lab's namespaces exist.
    pub fn new(state: &str) -> Lab {
        require_root();
        let existing = lab_netns();
        assert!(
            existing.is_empty(),
            "lab namespaces already exist ({existing:?}): a lab is up; run `cargo xtask lab down` first"
        );
        Lab { bin: weft_lab_bin(), state: PathBuf::from(state), up: false, root_before: RootNet::snapshot() }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// `weft-lab ARGS…` with this lab's state dir.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).env("WEFT_LAB_STATE", &self.state);
        c
    }

    /// Runs `weft-lab ARGS…`, returning stdout; panics with stderr on failure.
    pub fn ok(&self, args: &[&str], timeout: Duration) -> String {
        let out = run_with_timeout(&mut self.cmd(args), timeout);
        assert!(
            out.status.success(),
            "`weft-lab {}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `weft-lab up ARGS…`, output streamed to the test's stderr (it shows progress).
    pub fn up(&mut self, args: &[&str], timeout: Duration) {
        self.up = true;
        let mut full = vec!["up"];
        full.extend_from_slice(args);
        let mut c = self.cmd(&full);
        c.stdin(Stdio::null());
        let mut child = c.spawn().expect("starting weft-lab up");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("waiting for weft-lab up") {
                assert!(status.success(), "`weft-lab {}` failed ({status})", full.join(" "));
                return;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                panic!("`weft-lab up` did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `weft-lab kubectl ARGS…` with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut full = vec!["kubectl"];
        full.extend_from_slice(args);
        let mut child = self
            .cmd(&full)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting weft-lab kubectl");
        child.stdin.take().expect("piped").write_all(stdin.as_bytes()).expect("writing manifest");
        let out = child.wait_with_output().expect("waiting for kubectl");
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut full = vec!["kubectl"];
        full.extend_from_slice(args);
        self.ok(&full, Duration::from_secs(60))
    }

    /// `kubectl exec POD -- CMD…` through the API server and the node's kubelet port, as the
    /// seeds type it: (exit code, stdout+stderr).
    pub fn kubectl_exec(&self, pod: &str, cmd: &[&str], timeout: Duration) -> (i32, String) {
        let mut full = vec!["kubectl", "exec", pod, "--"];
        full.extend_from_slice(cmd);
        let out = run_with_timeout(&mut self.cmd(&full), timeout);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// `kubectl exec -ti POD -- CMD…` on a real terminal (kubectl asks for one for `-t`):
    /// run under `script`, which gives it a pty. Returns (exit code, what the terminal showed).
    pub fn kubectl_exec_tty(&self, pod: &str, cmd: &[&str], timeout: Duration) -> (i32, String) {
        let mut line = vec![self.bin.display().to_string(), "kubectl".into(), "exec".into(), "-ti".into(), pod.into(), "--".into()];
        line.extend(cmd.iter().map(|s| s.to_string()));
        let quoted: Vec<String> = line.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
        // A terminal of a usual size, as a user's would be.
        let script = format!("stty cols 80 rows 24; {}", quoted.join(" "));
        let mut c = Command::new("script");
        // -e: script exits with the command's code; -q: no banners; the log goes nowhere.
        c.args(["-qec", &script, "/dev/null"])
            .env("WEFT_LAB_STATE", &self.state)
            // An open, silent stdin: at EOF script would type the terminal's EOF character.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("starting script");
        let stdin = child.stdin.take();
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(timeout) {
            Ok(out) => out.expect("waiting for script"),
            Err(_) => {
                // SAFETY: plain kill(2) on the pid we spawned.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("kubectl exec -ti {pod} did not finish within {timeout:?}");
            }
        };
        drop(stdin);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// `weft-lab exec POD -- CMD…` (the shortcut that enters the pod without the API
    /// server): (success, stdout+stderr).
    pub fn exec(&self, pod: &str, cmd: &[&str], timeout: Duration) -> (bool, String) {
        let mut full = vec!["exec", pod, "--"];
        full.extend_from_slice(cmd);
        let out = run_with_timeout(&mut self.cmd(&full), timeout);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// `weft-lab down`, then the leftover listing, which must be empty. Processes that ran in
    /// a lab namespace before are listed too if they survived (a deleted namespace stays alive,
    /// unnamed, as long as a process holds it).
    pub fn down(&mut self) -> Leftovers {
        let lab_links = RootNet::snapshot().lab_like_links();
        assert!(lab_links.is_empty(), "the lab made links in the root namespace: {lab_links:?}");
        let before = processes_in_lab_netns();
        assert!(!before.is_empty(), "a running lab has processes in its namespaces");
        self.up = false;
        self.ok(&["down"], Duration::from_secs(120));
        let mut left = leftovers(&self.state);
        left.root_changes = self.root_before.changes_since();
        for (pid, cmd) in before {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() && cmdline(pid).as_deref() == Some(cmd.as_str()) {
                left.processes.push(format!("{pid} {cmd} (ran in a lab namespace)"));
            }
        }
        left
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.up {
            let _ = run_with_timeout(&mut self.cmd(&["down"]), Duration::from_secs(120));
        }
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What the lab left on the machine, found without the lab's own code.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub netns: Vec<String>,
    pub processes: Vec<String>,
    pub mounts: Vec<String>,
    pub etc_netns: Vec<String>,
    pub bpf_pins: Vec<String>,
    /// cgroup v2 directories named for the lab (`weft-lab-*`), found through /proc/mounts.
    pub cgroups: Vec<String>,
    pub state_dir_exists: bool,
    /// Differences in the root namespace's IPv4 routes, rules and addresses since before `up`.
    pub root_changes: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.netns.is_empty()
            && self.processes.is_empty()
            && self.mounts.is_empty()
            && self.etc_netns.is_empty()
            && self.bpf_pins.is_empty()
            && self.cgroups.is_empty()
            && !self.state_dir_exists
            && self.root_changes.is_empty()
    }
}

/// Lab namespaces as `ip netns list` shows them.
pub fn lab_netns() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .map(String::from)
        .collect()
}

fn prefixed(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(NETNS_PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Processes whose network namespace is one of the lab's (compared by nsfs inode).
pub fn processes_in_lab_netns() -> Vec<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let inodes: Vec<u64> = lab_netns()
        .iter()
        .filter_map(|n| std::fs::metadata(format!("/run/netns/{n}")).ok())
        .map(|m| m.ino())
        .collect();
    pids()
        .into_iter()
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| inodes.contains(&m.ino()))
        })
        .filter_map(|pid| Some((pid, cmdline(pid)?)))
        .collect()
}

/// Lists namespaces, processes mentioning the state dir, mounts under it or of lab
/// namespaces, /etc/netns/wl-*, /sys/fs/bpf/wl-* and the state dir itself.
pub fn leftovers(state: &Path) -> Leftovers {
    let state_s = state.to_string_lossy().into_owned();
    let me = std::process::id();
    let processes = pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let cmd = cmdline(pid)?;
            cmd.contains(&state_s).then(|| format!("{pid} {cmd}"))
        })
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&state_s) || m.starts_with(&format!("/run/netns/{NETNS_PREFIX}")))
        .map(String::from)
        .collect();
    Leftovers {
        netns: lab_netns(),
        processes,
        mounts,
        etc_netns: prefixed("/etc/netns"),
        bpf_pins: prefixed("/sys/fs/bpf"),
        cgroups: lab_cgroups(),
        state_dir_exists: state.exists(),
        root_changes: vec![],
    }
}

/// Directories `weft-lab-*` at the top of the machine's cgroup v2 hierarchy.
fn lab_cgroups() -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let Some(root) = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| f[1].to_string())
    else {
        return vec![];
    };
    std::fs::read_dir(&root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("weft-lab-"))
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The machine's root network namespace as far as the lab must never change it.
#[derive(Debug, Clone)]
pub struct RootNet {
    routes: Vec<String>,
    rules: Vec<String>,
    addrs: Vec<String>,
    links: Vec<String>,
}

fn ip_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("ip").args(args).output().expect("running ip");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect();
    v.sort();
    v
}

impl RootNet {
    pub fn snapshot() -> RootNet {
        RootNet {
            routes: ip_lines(&["-4", "route", "show", "table", "all"]),
            rules: ip_lines(&["rule", "show"]),
            addrs: ip_lines(&["-4", "-o", "addr", "show"]),
            links: ip_lines(&["-o", "link", "show"])
                .iter()
                .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or("").to_string()))
                .collect(),
        }
    }

    /// Root-namespace links named like the lab's (switch ports, bridges, node uplinks).
    pub fn lab_like_links(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|n| n.starts_with("p-") || n.starts_with(NETNS_PREFIX) || *n == "br0" || *n == "cni0")
            .cloned()
            .collect()
    }

    /// What differs now from this snapshot.
    pub fn changes_since(&self) -> Vec<String> {
        let now = RootNet::snapshot();
        let mut out = vec![];
        for (what, before, after) in
            [("route", &self.routes, &now.routes), ("rule", &self.rules, &now.rules), ("addr", &self.addrs, &now.addrs)]
        {
            out.extend(after.iter().filter(|l| !before.contains(l)).map(|l| format!("{what} added: {l}")));
            out.extend(before.iter().filter(|l| !after.contains(l)).map(|l| format!("{what} removed: {l}")));
        }
        out
    }
}
