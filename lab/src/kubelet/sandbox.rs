//! The pod sandbox, as containerd's RunPodSandbox builds it: a network namespace, CNI loopback
//! then the default network, resolv.conf/hosts, and a pause process that holds the pod's mount
//! and UTS namespaces for its containers (and for `lab exec`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::cni::{result, Cni, CniError, NetworkList, RuntimeConf};
use super::nsexec::{self, ChildSetup};

/// A sandbox failure, reported as FailedCreatePodSandBox / FailedKillPod.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error("CNI result for {network} has no IPv4 address on eth0")]
    NoPodIp { network: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// What a sandbox needs to know about its pod.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub hostname: String,
    pub fqdn: Option<String>,
    pub host_network: bool,
    /// resolv.conf content, None to keep the node's file.
    pub resolv_conf: Option<String>,
    /// containerd's CNI capability args (portMappings, pod annotations).
    pub capability_args: Map<String, Value>,
    pub host_aliases: Vec<(String, Vec<String>)>,
}

/// A running sandbox.
#[derive(Debug)]
pub struct Sandbox {
    pub id: String,
    /// Name under /run/netns; empty on the host network.
    pub netns: String,
    pub ip: Option<Ipv4Addr>,
    pub network: Option<NetworkList>,
    pub pause: Option<tokio::process::Child>,
    pub pause_pid: u32,
    /// Inodes of the sandbox's net and UTS namespaces (see `SandboxRecord`).
    pub net_ns_inode: Option<u64>,
    pub uts_ns_inode: Option<u64>,
}

/// Node-level settings a sandbox is built with.
#[derive(Clone, Debug)]
pub struct SandboxEnv {
    pub cni: Cni,
    pub netns_prefix: String,
    /// Where /etc/netns/<name>/ lives (normally /etc/netns).
    pub etc_netns: PathBuf,
}

/// A 64-hex id, like a containerd sandbox id.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 32, "getrandom failed");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The pod's netns name: prefix plus the first 12 hex digits of its UID.
pub fn netns_name(prefix: &str, uid: &str) -> String {
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect();
    format!("{prefix}{short}")
}

fn runtime_conf(spec: &SandboxSpec, id: &str, netns: &str, ifname: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: id.to_string(),
        netns: format!("/run/netns/{netns}"),
        ifname: ifname.to_string(),
        args: RuntimeConf::pod_args(&spec.namespace, &spec.name, id, &spec.uid),
        capability_args: spec.capability_args.clone(),
    }
}

async fn run(cmd: &mut tokio::process::Command) -> Result<(), SandboxError> {
    let described = format!("{cmd:?}");
    let out = cmd.output().await.map_err(io(described.clone()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SandboxError::Command {
            command: described,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl SandboxEnv {
    /// Builds the sandbox; on failure everything made so far is removed again.
    pub async fn create(
        &self,
        spec: &SandboxSpec,
        pod_dir: &Path,
    ) -> Result<Sandbox, SandboxError> {
        let id = new_id();
        let mut sb = Sandbox {
            id,
            netns: String::new(),
            ip: None,
            network: None,
            pause: None,
            pause_pid: 0,
            net_ns_inode: None,
            uts_ns_inode: None,
        };
        match self.create_inner(spec, pod_dir, &mut sb).await {
            Ok(()) => Ok(sb),
            Err(e) => {
                if let Err(cleanup) = self.teardown(spec, &mut sb).await {
                    tracing::warn!(pod = %format!("{}/{}", spec.namespace, spec.name), error = %cleanup, "cleaning up a failed sandbox");
                }
                Err(e)
            }
        }
    }

    async fn create_inner(
        &self,
        spec: &SandboxSpec,
        pod_dir: &Path,
        sb: &mut Sandbox,
    ) -> Result<(), SandboxError> {
        let etc = pod_dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(io(format!("creating {}", etc.display())))?;
        if !spec.host_network {
            let name = netns_name(&self.netns_prefix, &spec.uid);
            if Path::new("/run/netns").join(&name).exists() {
                // Left by a stand-in that died: the pod is being set up anew.
                tracing::warn!(netns = name, "reclaiming a stale pod network namespace");
                self.reclaim(&name).await?;
            }
            run(tokio::process::Command::new("ip").args(["netns", "add", &name])).await?;
            sb.netns = name.clone();
            // Loopback first, then the default network (containerd's order).
            let lo = NetworkList::loopback();
            self.cni
                .add(&lo, &runtime_conf(spec, &sb.id, &name, "lo"))
                .await?;
            let net = self.cni.default_network()?;
            sb.network = Some(net.clone());
            let res = self
                .cni
                .add(&net, &runtime_conf(spec, &sb.id, &name, "eth0"))
                .await?;
            sb.ip = Some(
                result::pod_ipv4(&res, "eth0").ok_or_else(|| SandboxError::NoPodIp {
                    network: net.name.clone(),
                })?,
            );
        }
        let hosts = super::resolv::render_hosts(
            sb.ip,
            &spec.hostname,
            spec.fqdn.as_deref(),
            &spec.host_aliases,
        );
        let mut setup = ChildSetup::default();
        if !spec.host_network {
            let dir = self.etc_netns.join(&sb.netns);
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            let resolv = spec.resolv_conf.clone().unwrap_or_default();
            for (file, text) in [("resolv.conf", &resolv), ("hosts", &hosts)] {
                std::fs::write(dir.join(file), text)
                    .map_err(io(format!("writing {}/{file}", dir.display())))?;
            }
            setup = setup
                .enter(
                    &PathBuf::from(format!("/run/netns/{}", sb.netns)),
                    libc::CLONE_NEWNET,
                )
                .map_err(io("entering the pod netns"))?
                .hostname(&spec.hostname)
                .map_err(io("hostname"))?
                .new_mount_ns()
                .remount_sys()
                .bind(&dir.join("resolv.conf"), Path::new("/etc/resolv.conf"))
                .map_err(io("bind"))?
                .bind(&dir.join("hosts"), Path::new("/etc/hosts"))
                .map_err(io("bind"))?;
        } else {
            // Host network: the node's netns, but the node's name as hostname (as on a real node).
            setup = setup
                .hostname(&spec.hostname)
                .map_err(io("hostname"))?
                .new_mount_ns();
            if let Some(r) = &spec.resolv_conf {
                let f = etc.join("resolv.conf");
                std::fs::write(&f, r).map_err(io(format!("writing {}", f.display())))?;
                setup = setup
                    .bind(&f, Path::new("/etc/resolv.conf"))
                    .map_err(io("bind"))?;
            }
        }
        let setup = setup.die_with_parent();
        let mut cmd = tokio::process::Command::new("/bin/sleep");
        cmd.arg("infinity")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let guard = setup.install(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(io("starting the sandbox (pause) process"))?;
        drop(guard);
        sb.pause_pid = child.id().unwrap_or_default();
        sb.pause = Some(child);
        let ns =
            |kind: &str| nsexec::ns_inode(Path::new(&format!("/proc/{}/ns/{kind}", sb.pause_pid)));
        sb.net_ns_inode = ns("net");
        sb.uts_ns_inode = ns("uts");
        Ok(())
    }

    /// Releases a pod netns nobody tracks any more: kills the processes inside, runs CNI DEL
    /// for every cached attachment into it, deletes it and its /etc/netns directory.
    pub async fn reclaim(&self, name: &str) -> Result<(), SandboxError> {
        let path = Path::new("/run/netns").join(name);
        if let Some(ino) = nsexec::ns_inode(&path) {
            nsexec::kill_namespace_members("net", ino);
        }
        // A stand-in that died took its mount namespace, and with it the netns mount: what is
        // left at the path is a plain file. DEL then gets an empty CNI_NETNS, which the spec
        // allows and the plugins take as "release what you hold, the interfaces are gone".
        let live = is_netns(&path);
        let mut first = None;
        for (list, mut rt) in self.cni.cached_attachments(&path.display().to_string()) {
            if !live {
                rt.netns.clear();
            }
            if let Err(e) = self.cni.del(&list, &rt).await {
                first.get_or_insert(SandboxError::from(e));
            }
        }
        if live {
            if let Err(e) =
                run(tokio::process::Command::new("ip").args(["netns", "del", name])).await
            {
                first.get_or_insert(e);
            }
        } else if path.exists() {
            let _ = std::fs::remove_file(&path);
        }
        let _ = std::fs::remove_dir_all(self.etc_netns.join(name));
        first.map_or(Ok(()), Err)
    }

    /// Stops the pause process, runs CNI DEL (default network, then loopback: the reverse of
    /// ADD), deletes the netns and /etc/netns/<name>. Continues past errors; returns the first.
    pub async fn teardown(&self, spec: &SandboxSpec, sb: &mut Sandbox) -> Result<(), SandboxError> {
        let mut first: Option<SandboxError> = None;
        if let Some(mut pause) = sb.pause.take() {
            // Whatever else still runs in the pod (a background process a `kubectl exec` left,
            // in its own session) shares the sandbox's UTS namespace and goes with the
            // sandbox, as it would with the runtime's cgroup. Only while the sandbox process
            // still holds that namespace: a freed namespace's inode number is soon another
            // pod's (on any node).
            let uts = nsexec::ns_inode(Path::new(&format!("/proc/{}/ns/uts", sb.pause_pid)));
            if let Some(ino) = sb.uts_ns_inode.take().filter(|i| uts == Some(*i)) {
                nsexec::kill_namespace_members_but("uts", ino, Some(sb.pause_pid));
            }
            nsexec::kill_group(sb.pause_pid, libc::SIGKILL);
            let _ = pause.wait().await;
        }
        if !sb.netns.is_empty() {
            let net = sb
                .network
                .clone()
                .or_else(|| self.cni.default_network().ok());
            if let Some(net) = net {
                if let Err(e) = self
                    .cni
                    .del(&net, &runtime_conf(spec, &sb.id, &sb.netns, "eth0"))
                    .await
                {
                    first.get_or_insert(e.into());
                }
            }
            if let Err(e) = self
                .cni
                .del(
                    &NetworkList::loopback(),
                    &runtime_conf(spec, &sb.id, &sb.netns, "lo"),
                )
                .await
            {
                first.get_or_insert(e.into());
            }
            if Path::new("/run/netns").join(&sb.netns).exists() {
                if let Err(e) =
                    run(tokio::process::Command::new("ip").args(["netns", "del", &sb.netns])).await
                {
                    first.get_or_insert(e);
                }
            }
            let dir = self.etc_netns.join(&sb.netns);
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    first.get_or_insert(SandboxError::Io {
                        what: format!("removing {}", dir.display()),
                        source: e,
                    });
                }
            }
        }
        if first.is_none() {
            // Done: a second teardown (deletion after completion) has nothing left to do.
            sb.netns.clear();
            sb.network = None;
        }
        first.map_or(Ok(()), Err)
    }
}

/// Whether `path` is a network namespace (an nsfs mount), not a stale mount-point file.
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
        assert_eq!(
            netns_name("wl-n1-", "5f1c2a3b-0d4e-4f5a-9b6c-7d8e9fa0b1c2"),
            "wl-n1-5f1c2a3b0d4e"
        );
    }
}
