//! Entering a running pod to run a command, as a container runtime's exec does: the pod's
//! network and UTS namespaces, the container's own mount namespace (its resolv.conf, hosts and
//! volumes), environment, working directory, and the programs of its image. Used by the
//! kubelet API's `/exec` (`kubectl exec`) and by `weft-lab exec`.
//!
//! Entering goes by pid with `nsenter`, which works from any mount namespace; `ip netns exec`
//! would not: the stand-in's pod netns mounts live in its own (slave) mount namespace.

use std::path::{Path, PathBuf};

use super::nsexec;
use super::record::{self, ContainerRecord, PodRecord};

/// Why a command cannot be started in a pod.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnterError {
    #[error("pod {pod} has no sandbox record")]
    NoSandbox { pod: String },
    #[error("pod {pod} has no running sandbox (finished?)")]
    NotRunning { pod: String },
    #[error("pod {pod}: its sandbox process {pid} is gone")]
    SandboxGone { pod: String, pid: u32 },
    #[error("container {container:?} not found in pod {pod}")]
    NoContainer { pod: String, container: String },
    #[error("no command given")]
    EmptyCommand,
}

/// Where and how a command runs inside a pod, resolved from the pod's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The sandbox process: its net and UTS namespaces are the pod's.
    pub sandbox_pid: u32,
    /// The process whose mount namespace the command joins: the container's if it runs,
    /// else the sandbox's.
    pub mount_pid: u32,
    /// The environment the command gets (the container process's, when it runs).
    pub env: Vec<(String, String)>,
    /// Working directory inside the container, if known.
    pub workdir: Option<PathBuf>,
    /// Programs of the image that shadow the machine's (busybox applets).
    pub image_bin_dir: Option<PathBuf>,
    /// The container's own root (`/proc/PID/root`), when it runs from a loaded image's file
    /// system: the command runs there too, and finds its programs there.
    pub root: Option<PathBuf>,
}

fn pod_ref(rec: &PodRecord) -> String {
    format!("{}/{}", rec.namespace, rec.name)
}

fn ns_ino(pid: u32, kind: &str) -> Option<u64> {
    nsexec::ns_inode(Path::new(&format!("/proc/{pid}/ns/{kind}")))
}

/// The environment of a running process (`/proc/PID/environ`).
pub fn process_env(pid: u32) -> Option<Vec<(String, String)>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(parse_environ(&raw))
}

/// `KEY=VALUE\0…` as the kernel lists a process's environment.
pub fn parse_environ(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Resolves the container (by name, or the first one) of a pod recorded under `state_dir`.
pub fn resolve(state_dir: &Path, rec: &PodRecord, container: Option<&str>) -> Result<Entry, EnterError> {
    let pod = pod_ref(rec);
    let dir = record::pod_dir(state_dir, &rec.namespace, &rec.name);
    let sb = record::read_sandbox(&dir).ok_or_else(|| EnterError::NoSandbox { pod: pod.clone() })?;
    let pid = sb.pause_pid.ok_or_else(|| EnterError::NotRunning { pod: pod.clone() })?;
    if nsexec::start_time(pid) != sb.pause_start {
        return Err(EnterError::SandboxGone { pod, pid });
    }
    let chosen: Option<&ContainerRecord> = match container {
        Some(name) if !rec.containers.is_empty() => Some(
            rec.containers
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| EnterError::NoContainer { pod: pod.clone(), container: name.to_string() })?,
        ),
        _ => rec.containers.first(),
    };
    let (cpid, path_env, image_bin_dir) = match chosen {
        Some(c) => (c.pid, c.path_env.clone(), c.image_bin_dir.clone()),
        None => (rec.pid, sb.path_env.clone(), None),
    };
    // A recorded pid counts only while it still lives in the pod's namespaces (not reused).
    let in_pod = |p: u32| {
        ns_ino(p, "net").is_some()
            && ns_ino(p, "net") == ns_ino(pid, "net")
            && ns_ino(p, "uts") == ns_ino(pid, "uts")
    };
    let running = cpid.filter(|p| in_pod(*p));
    let env = running.and_then(process_env).unwrap_or_else(|| {
        let mut env = vec![("HOSTNAME".to_string(), rec.name.clone())];
        if !path_env.is_empty() {
            env.insert(0, ("PATH".to_string(), path_env.clone()));
        }
        env
    });
    let root = running
        .filter(|p| std::fs::read_link(format!("/proc/{p}/root")).is_ok_and(|r| r != Path::new("/")))
        .map(|p| PathBuf::from(format!("/proc/{p}/root")));
    // A chrooted process's cwd reads as a path outside its root: the command starts at the
    // container's `/` instead.
    let workdir = running
        .filter(|_| root.is_none())
        .and_then(|p| std::fs::read_link(format!("/proc/{p}/cwd")).ok());
    Ok(Entry { sandbox_pid: pid, mount_pid: running.unwrap_or(pid), env, workdir, image_bin_dir, root })
}

impl Entry {
    fn path(&self) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str())
    }

    /// argv[0] as the image would find it: the image's own programs by base name first (so
    /// `/bin/sh` in a busybox pod is busybox's sh), then a path as given, then `$PATH`.
    pub fn program(&self, arg0: &str) -> String {
        let base = Path::new(arg0).file_name().and_then(|b| b.to_str()).unwrap_or(arg0);
        if let Some(dir) = &self.image_bin_dir {
            let p = dir.join(base);
            if p.exists() {
                return p.display().to_string();
            }
        }
        if arg0.contains('/') {
            return arg0.to_string();
        }
        let is_file = |p: &Path| match &self.root {
            Some(root) => root.join(p.strip_prefix("/").unwrap_or(p)).is_file(),
            None => p.is_file(),
        };
        self.path()
            .into_iter()
            .flat_map(|p| p.split(':'))
            .map(|d| Path::new(d).join(arg0))
            .find(|p| is_file(p))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| arg0.to_string())
    }

    /// The `nsenter` command line that runs `argv` in the pod.
    pub fn command(&self, argv: &[String]) -> Result<std::process::Command, EnterError> {
        let first = argv.first().ok_or(EnterError::EmptyCommand)?;
        // The machine's nsenter, by full path: with the container's PATH in the environment,
        // a bare name would find the image's (busybox has an nsenter too).
        let mut cmd = std::process::Command::new(nsenter());
        cmd.arg(format!("--net=/proc/{}/ns/net", self.sandbox_pid))
            .arg(format!("--uts=/proc/{}/ns/uts", self.sandbox_pid))
            .arg(format!("--mount=/proc/{}/ns/mnt", self.mount_pid));
        if let Some(root) = &self.root {
            // Opened before nsenter enters the namespaces: the container's root, then chroot.
            cmd.arg(format!("--root={}", root.display()));
        }
        if let Some(wd) = &self.workdir {
            cmd.arg(format!("--wdns={}", wd.display()));
        }
        cmd.arg("--").arg(self.program(first)).args(&argv[1..]);
        cmd.env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }
}

/// util-linux `nsenter` on this machine's PATH.
fn nsenter() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join("nsenter"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/nsenter"))
}

/// A command that runs `argv` in `container` (default: the first) of the pod.
pub fn command(
    state_dir: &Path,
    rec: &PodRecord,
    container: Option<&str>,
    argv: &[String],
) -> Result<std::process::Command, EnterError> {
    resolve(state_dir, rec, container)?.command(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_is_split_into_pairs() {
        let env = parse_environ(b"PATH=/bin:/usr/bin\0HOSTNAME=web\0EMPTY=\0A=b=c\0\0");
        assert_eq!(
            env,
            [("PATH", "/bin:/usr/bin"), ("HOSTNAME", "web"), ("EMPTY", ""), ("A", "b=c")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(process_env(std::process::id()).is_some_and(|e| !e.is_empty()));
    }

    fn entry(bin_dir: Option<PathBuf>, path: &str) -> Entry {
        Entry {
            sandbox_pid: 10,
            mount_pid: 11,
            env: vec![("PATH".into(), path.into())],
            workdir: Some(PathBuf::from("/work")),
            image_bin_dir: bin_dir,
            root: None,
        }
    }

    #[test]
    fn programs_resolve_like_the_image_would() {
        let tmp = crate::kubelet::testutil::tempdir("wk-enter");
        std::fs::write(tmp.join("sh"), "").unwrap();
        let bb = entry(Some(tmp.clone()), "/nowhere");
        // The image's sh wins over an absolute /bin/sh.
        assert_eq!(bb.program("/bin/sh"), tmp.join("sh").display().to_string());
        assert_eq!(bb.program("sh"), tmp.join("sh").display().to_string());
        let host = entry(None, "/nowhere:/usr/bin:/bin");
        assert_eq!(host.program("/bin/sh"), "/bin/sh");
        assert!(host.program("env").ends_with("/env"), "{}", host.program("env"));
        assert_eq!(host.program("no-such-program"), "no-such-program");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn command_enters_the_sandbox_and_the_containers_mounts() {
        let cmd = entry(None, "/usr/bin:/bin").command(&["env".into(), "-0".into()]).unwrap();
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(cmd.get_program().to_string_lossy().ends_with("/nsenter"), "an absolute path: {:?}", cmd.get_program());
        assert_eq!(
            args,
            ["--net=/proc/10/ns/net", "--uts=/proc/10/ns/uts", "--mount=/proc/11/ns/mnt", "--wdns=/work", "--", "/usr/bin/env", "-0"]
        );
        let env: Vec<_> = cmd.get_envs().collect();
        assert_eq!(env.len(), 1);
        let in_image = Entry { root: Some("/proc/11/root".into()), ..entry(None, "/usr/sbin") };
        let args: Vec<String> = in_image.command(&["nft".into()]).unwrap().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.contains(&"--root=/proc/11/root".to_string()), "{args:?}");
        assert_eq!(entry(None, "/bin").command(&[]).unwrap_err(), EnterError::EmptyCommand);
    }
}
