//! The kubelet stand-in of one lab node: registers the Node, keeps its lease, and runs the pods
//! bound to it as network namespaces plus Debian programs, calling CNI as containerd does.

pub mod catalogue;
pub mod cni;
pub mod container;
pub mod enter;
pub mod env;
pub mod events;
pub mod exec;
pub mod hostfs;
pub mod image;
pub mod nginx;
pub mod node;
pub mod nsexec;
pub mod pod;
pub mod probe;
pub mod record;
pub mod resolv;
pub mod rootfs;
pub mod sandbox;
pub mod server;
pub mod status;
pub mod stream;
pub mod volumes;

#[cfg(test)]
mod tests {
    #[test]
    fn sysfs_of_ip_netns_exec_is_recognised_by_its_source() {
        let host = "22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n";
        assert_eq!(super::sys_mount_source(host).as_deref(), Some("sysfs"));
        let node = format!("{host}901 880 0:77 / /sys rw,relatime - sysfs wl-node-1 rw\n");
        assert_eq!(super::sys_mount_source(&node).as_deref(), Some("wl-node-1"));
        assert_eq!(
            super::sys_mount_source("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;

    /// A fresh directory under the temp dir, unique per process and call.
    pub fn tempdir(prefix: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use record::{find_pod, list_pods, PodRecord};

/// How one node's stand-in runs.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Config {
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    /// Identity to use (a system:node:<name> client cert, or admin).
    pub kubeconfig: PathBuf,
    /// Per node: pod records, logs, CNI result cache.
    pub state_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    /// If set: written to cni_conf_dir/10-lab.conflist with "{{podCIDR}}" replaced once the
    /// Node's spec.podCIDR is known. Otherwise use the first *.conflist/*.conf in lexical order.
    pub cni_conf_template: Option<String>,
    /// Pod netns names start with this, e.g. "wl-n1-".
    pub netns_prefix: String,
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    /// Directory with extra binaries for the catalogue (coredns, agnhost).
    pub bin_paths: Option<PathBuf>,
    /// Images loaded onto the node from archives (see `image`): pods naming them run from
    /// their file systems.
    #[serde(default)]
    pub images: Vec<image::LoadedImage>,
    /// The node's own filesystem for hostPath volumes (see `hostfs`); none: the machine's.
    #[serde(default)]
    pub host_root: Option<PathBuf>,
    /// The node's own cgroup v2 subtree, relative to the machine's v2 root (`wl-lab/node-1`);
    /// none: the stand-in stays where it was started.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// CA that signs the certificates clients of the kubelet API must present (kubelet's
    /// `--client-ca-file`); without it the API accepts any client.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The list of mount points a stand-in with `state_dir` created on the machine.
pub fn mount_point_registry(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("host-mount-points")
}

/// What every pod worker of this node shares.
pub struct NodeCtx {
    pub cfg: Config,
    pub client: kube::Client,
    pub sandbox: sandbox::SandboxEnv,
    pub roots: catalogue::Roots,
    pub events: events::Events,
    /// The node's resolv.conf, for dnsPolicy Default and search domains.
    pub host_resolv_conf: String,
    /// hostPath volumes: the node's own filesystem.
    pub host_fs: hostfs::HostFs,
    start_times: Mutex<HashMap<String, String>>,
}

impl NodeCtx {
    /// The list of mount points this node created on the machine.
    pub fn mount_point_registry(&self) -> PathBuf {
        mount_point_registry(&self.cfg.state_dir)
    }

    /// Drops what is kept per pod UID once its worker finished.
    pub fn forget(&self, uid: &str) {
        self.start_times.lock().expect("not poisoned").remove(uid);
    }

    /// The pod's startTime: when this node first saw it.
    pub fn start_time_for(&self, uid: &str) -> String {
        let mut m = self.start_times.lock().expect("not poisoned");
        m.entry(uid.to_string()).or_insert_with(status::now).clone()
    }
}

struct PodHandle {
    namespace: String,
    name: String,
    pod: watch::Sender<Pod>,
    ctl: watch::Sender<pod::Control>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the stand-in until SIGTERM/SIGINT, then stops every pod locally (processes, CNI DEL,
/// netns) and returns, leaving API objects in place.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cfg.kubeconfig)
        .with_context(|| format!("reading {}", cfg.kubeconfig.display()))?;
    let client_cfg = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("loading the kubeconfig")?;
    let client = kube::Client::try_from(client_cfg).context("building the API client")?;
    std::fs::create_dir_all(cfg.state_dir.join("pods"))
        .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let roots = catalogue::Roots {
        images_dir: cfg.state_dir.join("images"),
        bin_paths: cfg.bin_paths.clone(),
        loaded: cfg.images.clone(),
    };
    catalogue::prepare_images(&roots).context("preparing the image catalogue")?;
    let ctx = Arc::new(NodeCtx {
        sandbox: sandbox::SandboxEnv {
            cni: cni::Cni {
                bin_dir: cfg.cni_bin_dir.clone(),
                conf_dir: cfg.cni_conf_dir.clone(),
                cache_dir: cfg.state_dir.join("cni"),
            },
            netns_prefix: cfg.netns_prefix.clone(),
            etc_netns: PathBuf::from("/etc/netns"),
        },
        events: events::Events::new(client.clone(), &cfg.node_name),
        host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        roots,
        client,
        host_fs: hostfs::HostFs::new(cfg.host_root.clone()),
        start_times: Mutex::default(),
        cfg,
    });
    node_mounts(ctx.cfg.cgroup.as_deref());
    cleanup_stale(&ctx).await;
    volumes::remove_unused_mount_points(&ctx.mount_point_registry());

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let stopping = async move {
        tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        }
    };
    tokio::pin!(stopping);

    tokio::select! {
        r = register_and_wait_cidr(&ctx) => r?,
        sig = &mut stopping => {
            tracing::info!(signal = sig, "stopping before the node was ready");
            return Ok(());
        }
    }
    let heartbeat = tokio::spawn(keep_alive(ctx.clone()));
    let api = tokio::spawn({
        let (dir, name, ip, ca) = (
            ctx.cfg.state_dir.clone(),
            ctx.cfg.node_name.clone(),
            ctx.cfg.node_ip,
            ctx.cfg.client_ca_file.clone(),
        );
        async move {
            if let Err(e) = server::serve(dir, name, ip, ca).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "kubelet API not available; `kubectl logs` and `kubectl exec` will not work on this node"
                );
            }
        }
    });

    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.cfg.node_name));
    let mut stream = watcher(pods, wc).default_backoff().boxed();
    let mut pods = Pods::default();
    let mut listed: Option<Vec<String>> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tracing::info!(node = ctx.cfg.node_name, "watching pods bound to this node");
    let signal = loop {
        tokio::select! {
            sig = &mut stopping => break sig,
            _ = tick.tick() => {
                pods.prune(&ctx);
                pods.start_pending(&ctx);
            }
            ev = stream.next() => match ev {
                None => anyhow::bail!("the pod watch ended"),
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error; retrying with back-off"),
                Some(Ok(ev)) => match ev {
                    watcher::Event::Init => listed = Some(vec![]),
                    watcher::Event::InitApply(p) => {
                        if let (Some(l), Some(uid)) = (listed.as_mut(), p.metadata.uid.clone()) { l.push(uid); }
                        pods.apply(&ctx, p);
                    }
                    watcher::Event::Apply(p) => pods.apply(&ctx, p),
                    watcher::Event::Delete(p) => pods.gone(p.metadata.uid.as_deref().unwrap_or_default()),
                    watcher::Event::InitDone => {
                        // After a re-list, pods we run that were not listed are gone.
                        let seen = listed.take().unwrap_or_default();
                        let missing: Vec<String> = pods.workers.keys().chain(pods.pending.keys()).filter(|u| !seen.contains(u)).cloned().collect();
                        for uid in missing { pods.gone(&uid); }
                    }
                },
            },
        }
    };
    tracing::info!(
        signal,
        pods = pods.workers.len(),
        "stopping: cleaning up local pod resources"
    );
    heartbeat.abort();
    api.abort();
    for h in pods.workers.values() {
        let _ = h.ctl.send(pod::Control::Shutdown);
    }
    for (_, h) in pods.workers.drain() {
        if tokio::time::timeout(Duration::from_secs(60), h.task)
            .await
            .is_err()
        {
            tracing::error!(pod = %format!("{}/{}", h.namespace, h.name), "pod did not stop within 60 s");
        }
    }
    // Last one out removes the mount-point directories (another node's pods may still use them).
    ctx.host_fs.unexpose_all();
    volumes::remove_unused_mount_points(&ctx.mount_point_registry());
    tracing::info!("stopped");
    Ok(())
}

/// The pod workers of this node, by pod UID.
#[derive(Default)]
struct Pods {
    workers: HashMap<String, PodHandle>,
    /// Pods waiting for a terminating namesake to finish.
    pending: HashMap<String, Pod>,
    /// UIDs whose worker finished (deleted or gone): a late event must not start them again.
    finished: std::collections::HashSet<String>,
}

impl Pods {
    fn apply(&mut self, ctx: &Arc<NodeCtx>, p: Pod) {
        let Some(uid) = p.metadata.uid.clone() else {
            return;
        };
        if self.finished.contains(&uid) {
            return;
        }
        if let Some(h) = self.workers.get(&uid) {
            let _ = h.pod.send(p);
            return;
        }
        self.pending.insert(uid, p);
        self.start_pending(ctx);
    }

    /// Starts pending pods, except one whose namespace/name still belongs to a terminating
    /// worker (a StatefulSet pod recreated with a new UID): its directory must be free first.
    fn start_pending(&mut self, ctx: &Arc<NodeCtx>) {
        let busy = |p: &Pod| {
            self.workers.values().any(|h| {
                !h.task.is_finished()
                    && Some(&h.namespace) == p.metadata.namespace.as_ref()
                    && Some(&h.name) == p.metadata.name.as_ref()
            })
        };
        let ready: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| !busy(p))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in ready {
            let p = self.pending.remove(&uid).expect("listed above");
            let (pod_tx, pod_rx) = watch::channel(p.clone());
            let (ctl_tx, ctl_rx) = watch::channel(pod::Control::Run);
            let task = tokio::spawn(pod::run(ctx.clone(), pod_rx, ctl_rx));
            self.workers.insert(
                uid,
                PodHandle {
                    namespace: p.metadata.namespace.clone().unwrap_or_default(),
                    name: p.metadata.name.clone().unwrap_or_default(),
                    pod: pod_tx,
                    ctl: ctl_tx,
                    task,
                },
            );
        }
    }

    fn gone(&mut self, uid: &str) {
        self.pending.remove(uid);
        if let Some(h) = self.workers.get(uid) {
            let _ = h.ctl.send(pod::Control::Gone);
        }
    }

    /// Forgets finished workers, remembering their UIDs.
    fn prune(&mut self, ctx: &NodeCtx) {
        let done: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, h)| h.task.is_finished())
            .map(|(u, _)| u.clone())
            .collect();
        for uid in done {
            self.workers.remove(&uid);
            ctx.forget(&uid);
            self.finished.insert(uid);
        }
    }
}

/// Registers the Node (retrying while the apiserver is unreachable), then waits for its pod
/// CIDR and renders the CNI config template.
async fn register_and_wait_cidr(ctx: &NodeCtx) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut delay = Duration::from_millis(500);
    while let Err(e) = node::register(&nodes, &ctx.cfg).await {
        tracing::warn!(error = %e, retry_in = ?delay, "registering the node failed");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    let mut waited = 0u32;
    let cidr = loop {
        match nodes.get_opt(&ctx.cfg.node_name).await {
            Ok(Some(n)) => {
                if let Some(c) = n.spec.and_then(|s| s.pod_cidr) {
                    break c;
                }
            }
            Ok(None) => {
                tracing::warn!("the Node object disappeared; registering again");
                let _ = node::register(&nodes, &ctx.cfg).await;
            }
            Err(e) => tracing::warn!(error = %e, "reading the Node failed"),
        }
        if waited.is_multiple_of(10) {
            tracing::info!(
                node = ctx.cfg.node_name,
                "waiting for spec.podCIDR (kube-controller-manager node-ipam)"
            );
        }
        waited += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    tracing::info!(pod_cidr = cidr, "node has its pod CIDR");
    if let Some(t) = &ctx.cfg.cni_conf_template {
        node::write_conf_template(&ctx.cfg.cni_conf_dir, t, &cidr)
            .context("writing the CNI config template")?;
    }
    Ok(())
}

/// Lease renewal every 10 s and a node status heartbeat every minute.
async fn keep_alive(ctx: Arc<NodeCtx>) {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let mut lease_tick = tokio::time::interval(node::LEASE_RENEW);
    let mut status_tick = tokio::time::interval(node::STATUS_REPORT);
    let mut node_uid = None;
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if node_uid.is_none() {
                    node_uid = nodes.get_opt(&ctx.cfg.node_name).await.ok().flatten().and_then(|n| n.metadata.uid);
                }
                if let Err(e) = node::renew_lease(&leases, &ctx.cfg.node_name, node_uid.clone()).await {
                    tracing::warn!(error = %e, "renewing the node lease failed");
                }
            }
            _ = status_tick.tick() => {
                if let Err(e) = node::heartbeat(&nodes, &ctx.cfg.node_name).await {
                    tracing::warn!(error = %e, "node status heartbeat failed");
                }
            }
        }
    }
}

/// Gives the node (this process's mount namespace, inherited by host-network pods) the
/// filesystems a DaemonSet like weft's expects at /sys/fs/bpf and /sys/fs/cgroup. `ip netns
/// exec` replaced /sys with a sysfs for the node's netns, which drops those mounts; mounting
/// them here touches only the stand-in's own (slave) mount namespace. Pins in this bpffs
/// outlive pod restarts and go with the stand-in, as a node's do with a reboot.
fn node_mounts(node_cgroup: Option<&str>) {
    use nix::mount::{mount, MsFlags};
    use nix::sys::statfs::{statfs, BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC};
    // Only under `ip netns exec`, whose sysfs is mounted with the netns name as its source;
    // never in the machine's own mount namespace.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(sys_source) = sys_mount_source(&mountinfo) else {
        return;
    };
    if sys_source == "sysfs" {
        return;
    }
    let wanted = [
        ("/sys/fs/bpf", "bpf", BPF_FS_MAGIC),
        ("/sys/fs/cgroup", "cgroup2", CGROUP2_SUPER_MAGIC),
    ];
    for (path, fstype, magic) in wanted {
        if statfs(path).is_ok_and(|s| s.filesystem_type() == magic) || !Path::new(path).is_dir() {
            continue;
        }
        match mount(
            Some(fstype),
            path,
            Some(fstype),
            MsFlags::empty(),
            None::<&str>,
        ) {
            Ok(()) => tracing::info!(path, fstype, "mounted for host-network pods"),
            Err(e) => {
                tracing::warn!(path, fstype, error = %e, "cannot mount; host-network pods will miss it")
            }
        }
    }
    if let Some(sub) = node_cgroup {
        if let Err(e) = enter_node_cgroup(sub) {
            tracing::warn!(cgroup = sub, error = %e, "cannot give the node its own cgroup");
        }
    }
}

/// Give the node its own cgroup v2 subtree, as a real node has its own root cgroup: the
/// stand-in moves itself into `<v2 root>/<sub>` (its pods and every process it starts follow,
/// children inherit their parent's cgroup), then shows that subtree at /sys/fs/cgroup in its
/// mount namespace. A program attached to the node's "root cgroup" (weft's socket-level load
/// balancing) then reaches this node's processes and no others on the machine.
fn enter_node_cgroup(sub: &str) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    let dir = Path::new("/sys/fs/cgroup").join(sub);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())?;
    mount(Some(&dir), "/sys/fs/cgroup", None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(std::io::Error::from)?;
    tracing::info!(cgroup = sub, "node cgroup entered and shown at /sys/fs/cgroup");
    Ok(())
}

/// The source of the last mount on /sys in a mountinfo text.
fn sys_mount_source(mountinfo: &str) -> Option<String> {
    mountinfo
        .lines()
        .rev()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let source = right.split_whitespace().nth(1)?;
            (mount_point == "/sys").then(|| source.to_string())
        })
        .next()
}

/// Cleans up after a previous stand-in of this node that did not stop cleanly: kills its
/// sandbox processes, runs CNI DEL from the result cache, deletes pod netns. The pods
/// themselves are recreated from the API.
async fn cleanup_stale(ctx: &NodeCtx) {
    let recs = match list_pods(&ctx.cfg.state_dir) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "reading old pod records");
            return;
        }
    };
    for rec in recs {
        let dir = record::pod_dir(&ctx.cfg.state_dir, &rec.namespace, &rec.name);
        let pod = format!("{}/{}", rec.namespace, rec.name);
        tracing::info!(pod, "cleaning up a pod left by a previous run");
        let sb = record::read_sandbox(&dir).unwrap_or_default();
        // Every process of the pod shares the sandbox's UTS (and, off the host network, net)
        // namespace, whether or not the sandbox process or the netns mount still exist.
        if let Some(ino) = sb.uts_ns_inode {
            nsexec::kill_namespace_members("uts", ino);
        }
        if let (false, Some(ino)) = (rec.host_network, sb.net_ns_inode) {
            nsexec::kill_namespace_members("net", ino);
        }
        // Host-network pods have no netns to search: their processes are known by pid, and
        // only killed if the start time shows the pid was not reused.
        if let (Some(pid), Some(start)) = (sb.pause_pid, sb.pause_start) {
            if nsexec::start_time(pid) == Some(start) {
                // Containers join the sandbox's UTS namespace: that finds them all.
                if let Some(uts) = nsexec::ns_inode(Path::new(&format!("/proc/{pid}/ns/uts"))) {
                    nsexec::kill_namespace_members("uts", uts);
                }
                nsexec::kill_group(pid, libc::SIGKILL);
            }
        }
        if !rec.netns.is_empty() {
            if let Err(e) = ctx.sandbox.reclaim(&rec.netns).await {
                tracing::warn!(pod, error = %e, "cleaning up an old sandbox");
            }
        }
        let _ = std::fs::remove_file(record::record_path(&dir));
        let _ = std::fs::remove_file(record::sandbox_path(&dir));
    }
}
