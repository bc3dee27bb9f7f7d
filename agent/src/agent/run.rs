//! `weft agent`: the start-up order, and the long-running tasks started in it (routing in
//! `routing.rs`, Services in `services.rs`, NetworkPolicy in `policy.rs`).
//!
//! Order matters for "never drop traffic": the datapath (pinned maps and links of an earlier
//! agent keep forwarding meanwhile) is opened and every endpoint resumed before the socket
//! serves the CNI plugin; routes are reconciled from a complete listing of the Nodes; the CNI
//! configuration is installed last, once this agent can serve ADDs. SIGTERM stops the agent
//! and leaves the datapath, routes and CNI files in place.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use ipnetwork::Ipv4Network;
use kube::runtime::reflector::ObjectRef;
use tracing::{error, info, warn};

use super::options::{AgentOptions, HostRouting, RoutingMode};
use super::server::{self, AgentHandle};
use super::{install, sysctl, Agent, ClusterView};
use crate::datapath::{Datapath, DatapathSettings, Prog, ServiceHandoff};
use crate::ipam::Store;
use crate::k8s::node::{node_info, NodeInfo};
use crate::k8s::pod::{live_pods, on_node};
use crate::k8s::Reflectors;
use crate::metrics::{self, DatapathStats, Metrics, Readiness, Stage, StatsSource};
use crate::netlink::Netlink;
use crate::routing::overlay::{self, VNI, VXLAN_OVERHEAD};

/// Default pod MTU with no uplink to read it from (standalone agent).
const DEFAULT_MTU: u32 = 1500;

/// The switch between kube-proxy and weft that `opts` ask for. A handoff needs kernel host
/// routing: the connections kube-proxy translated must pass the stack both ways, where its
/// conntrack undoes their translation.
fn service_handoff(opts: &AgentOptions) -> anyhow::Result<ServiceHandoff> {
    match (opts.kube_proxy_handoff, opts.kube_proxy_replacement) {
        (false, _) => Ok(ServiceHandoff::None),
        _ if opts.host_routing == HostRouting::Bpf => anyhow::bail!(
            "kube-proxy-handoff needs host-routing: kernel (kube-proxy's connections must pass the \
             node's stack both ways, where its conntrack translates them)"
        ),
        (true, true) => Ok(ServiceHandoff::Takeover),
        (true, false) => Ok(ServiceHandoff::Release),
    }
}

/// Run the agent until SIGTERM/SIGINT.
pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let mut required = vec![Stage::Datapath, Stage::Socket];
    if opts.kubernetes() {
        required.extend([Stage::Synced, Stage::Routes]);
    }
    if opts.install_cni() {
        required.push(Stage::Cni);
    }
    let readiness = Arc::new(Readiness::new(&required));
    // What the node must have, checked before anything else, so that a missing part is named
    // at once (not after the wait for the Node) and the agent exits with that reason.
    crate::datapath::bpffs::ensure_dir(&opts.paths.pin_dir)?;
    let handoff = service_handoff(&opts)?;
    let cgroup = match opts.kubernetes() && opts.kube_proxy_replacement {
        true => Some(cgroup_root(opts.cgroup_root.as_deref())?),
        false => None,
    };
    ensure_private_dir(&opts.paths.state_dir)?;

    // The HTTP endpoint first: /healthz answers while the agent waits for its Node.
    let stats = stats_source(&opts.paths.pin_dir);
    let http = metrics::serve(opts.metrics_addr, metrics.clone(), Some(stats), readiness.clone())
        .await
        .with_context(|| format!("binding the metrics address {}", opts.metrics_addr))?;
    tokio::spawn(async move {
        if let Err(e) = http.await {
            error!(error = %e, "metrics endpoint stopped");
        }
    });

    let nl = Arc::new(Netlink::connect(None).await.context("connecting to netlink")?);

    // The cluster side: client, reflectors, this node.
    let cluster = match &opts.node_name {
        Some(node) => Some(Cluster::start(&opts, node, metrics.clone()).await?),
        None => None,
    };
    let override_cidr = super::config::resolve_pod_cidr(opts.pod_cidr, &opts.paths.state_dir)?;
    let me = match &cluster {
        Some(c) => Some(c.own_node(override_cidr.is_none()).await),
        None => None,
    };
    let pod_cidr = override_cidr.or_else(|| me.as_ref().and_then(|n| n.pod_cidrs.first().copied()));
    if me.is_some() && pod_cidr.is_none() {
        anyhow::bail!("the Node has no IPv4 pod CIDR and none was given (--pod-cidr)");
    }

    // Devices: the uplink (Kubernetes mode, or named), and the VXLAN device in VXLAN mode.
    let uplink = if me.is_some() || opts.uplink.is_some() {
        let node_ip = me.as_ref().and_then(|n| n.internal_ip);
        let up = overlay::find_uplink(&nl, opts.uplink.as_deref(), node_ip).await?;
        info!(uplink = %up.name, ifindex = up.ifindex, ip = %up.ip, "uplink");
        Some(up)
    } else {
        None
    };
    let uplink_mtu = match &uplink {
        Some(u) => nl.link_by_index(u.ifindex).await?.map(|l| l.mtu).unwrap_or(DEFAULT_MTU),
        None => DEFAULT_MTU,
    };
    let vxlan = match (opts.routing_mode, &uplink) {
        (RoutingMode::Vxlan, Some(_)) => {
            let ifindex = overlay::ensure_vxlan(&nl, uplink_mtu - VXLAN_OVERHEAD).await?;
            info!(device = overlay::VXLAN_DEVICE, ifindex, "VXLAN device ready");
            Some(ifindex)
        }
        (RoutingMode::Vxlan, None) => anyhow::bail!("VXLAN mode needs an uplink (--uplink or a Node)"),
        (RoutingMode::Native, _) => None,
    };
    let pod_mtu = opts.mtu.unwrap_or(match vxlan {
        Some(_) => uplink_mtu - VXLAN_OVERHEAD,
        None => uplink_mtu,
    });
    if me.is_some() {
        sysctl::ensure("net.ipv4.ip_forward", "1")?;
        if let (Some(up), Some(_)) = (&uplink, vxlan) {
            sysctl::loosen_rp_filter(&up.name)?;
        }
    }

    // The datapath, on the owner thread.
    let settings = DatapathSettings {
        bpf_host_routing: opts.host_routing == HostRouting::Bpf,
        vxlan: vxlan.map(|i| (i, VNI)),
        log: opts.bpf_log,
        uplink: uplink.as_ref().map(|u| u.ifindex),
        handoff,
    };
    let view = Arc::new(RwLock::new(ClusterView {
        node: opts.node_name.clone(),
        routes: vec![],
        policy: None,
    }));
    let handle = start_owner(&opts, pod_cidr, settings, view.clone(), metrics.clone())?;
    if let Some(up) = &uplink {
        let name = up.name.clone();
        handle.run(move |a| a.attach_device(Prog::FromNetdev, &name)).await??;
    }
    if vxlan.is_some() {
        handle
            .run(|a| {
                a.attach_device(Prog::FromOverlay, overlay::VXLAN_DEVICE)?;
                a.attach_device(Prog::ToOverlay, overlay::VXLAN_DEVICE)
            })
            .await??;
    }
    // Every link now runs this agent's programs (endpoints resumed, devices attached).
    let migrated = handle.run(|a| a.finish_migrations()).await??;
    if !migrated.is_empty() {
        info!(maps = ?migrated, "pinned maps migrated from another layout");
    }
    if let Some(logger) = handle.run(|a| a.take_bpf_logger()).await? {
        tokio::spawn(poll_bpf_log(logger));
    }
    if let Some(cidr) = pod_cidr {
        crate::routing::kernel::refuse_unused_pod_addresses(&nl, cidr)
            .await
            .with_context(|| format!("refusing the unused addresses of {cidr}"))?;
    }
    readiness.done(Stage::Datapath);
    info!(pod_cidr = ?pod_cidr, ?settings, pod_mtu, "datapath ready");

    // Addresses of pods deleted while no agent ran.
    if let Some(c) = &cluster {
        c.reflectors.synced().await;
        readiness.done(Stage::Synced);
        let pods = c.reflectors.pods.snapshot();
        let here = pods.iter().map(|p| p.as_ref()).filter(|p| on_node(p, &c.node));
        let live: Vec<_> = live_pods(here).into_iter().collect();
        let released = handle.run(move |a| a.release_gone_pods(&live)).await??;
        metrics.ipam_released_gone_pods.inc_by(released.len() as u64);
        info!(released = released.len(), "IPAM reconciled with this node's pods");
    }

    // The socket: CNI ADD/DEL are served from here on.
    let listener = server::bind(&opts.paths.socket).await?;
    readiness.done(Stage::Socket);
    let serve = tokio::spawn(server::serve(listener, handle.clone()));

    // Services follow Services and EndpointSlices; connected sockets of the node's processes
    // and pods are translated once, at connect().
    // During a switch back to kube-proxy (handoff without replacement) the Service maps stay
    // current for the flows weft still carries; the socket hooks go, so new connections leave
    // with the Service's address for kube-proxy's rules.
    if cluster.is_some() && !opts.kube_proxy_replacement {
        let released = handle.run(|a| a.detach_every_sock_lb()).await??;
        if released > 0 {
            info!(links = released, "socket-level load balancing detached: kube-proxy takes new connections");
        }
        if handoff == ServiceHandoff::None {
            let stats = handle.run(|a| a.sync_services(&[])).await??;
            info!(?stats, "kube-proxy replacement off: no Service is translated in eBPF");
        }
    }
    let services_on = opts.kube_proxy_replacement || handoff != ServiceHandoff::None;
    if let (Some(c), true) = (&cluster, services_on) {
        if let Some(cgroup) = cgroup {
            let dir = cgroup.clone();
            handle.run(move |a| a.attach_sock_lb(&dir)).await??;
            info!(cgroup = %cgroup.display(), "socket-level load balancing attached");
        }
        let addresses: Vec<Ipv4Addr> = uplink.iter().map(|u| u.ip).collect();
        let task = super::services::ServicesTask {
            node: super::services::node_context(&c.node, addresses),
            services: c.reflectors.services.store.clone(),
            slices: c.reflectors.slices.store.clone(),
            dirty: c.reflectors.dirty_services.clone(),
            changes: c.reflectors.services.changes.clone(),
            slice_changes: c.reflectors.slices.changes.clone(),
            agent: handle.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(task.run());
        tokio::spawn(super::ct_gc::run(opts.paths.pin_dir.clone(), metrics.clone()));
        match handoff {
            ServiceHandoff::None => info!("kube-proxy replacement on: Services are translated in eBPF"),
            ServiceHandoff::Takeover => info!(
                "taking Services over from kube-proxy: new connections are translated in eBPF, \
                 the ones kube-proxy translated stay with the kernel's conntrack"
            ),
            ServiceHandoff::Release => info!(
                "handing Services back to kube-proxy: new connections are kube-proxy's, \
                 the ones weft translated keep weft's translation"
            ),
        }
    }

    // NetworkPolicy follows Pods, Namespaces and NetworkPolicies of the whole cluster.
    if let Some(c) = &cluster {
        let r = &c.reflectors;
        let task = super::policy::PolicyTask {
            node: c.node.clone(),
            node_addresses: uplink.iter().map(|u| u.ip).collect(),
            pods: r.pods.store.clone(),
            namespaces: r.namespaces.store.clone(),
            policies: r.policies.store.clone(),
            changes: [r.pods.changes.clone(), r.namespaces.changes.clone(), r.policies.changes.clone()],
            pin_dir: opts.paths.pin_dir.clone(),
            metrics: metrics.clone(),
            view: view.clone(),
        };
        tokio::spawn(task.run());
    }

    // Routes (and egress) follow the Nodes.
    if let (Some(c), Some(up), Some(cidr)) = (&cluster, uplink.clone(), pod_cidr) {
        let task = super::routing::RoutingTask {
            node: c.node.clone(),
            mode: opts.routing_mode,
            uplink: up,
            vxlan,
            pin_dir: opts.paths.pin_dir.clone(),
            pod_cidr: cidr,
            cluster_cidr: opts.cluster_cidr,
            masquerade: opts.masquerade,
            nl: nl.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            view,
        };
        let nodes = c.reflectors.nodes.store.clone();
        let changes = c.reflectors.nodes.changes.clone();
        tokio::spawn(task.run(nodes, changes));
    }

    if opts.install_cni() {
        let (bin, conf) = install::install(
            &opts.paths.cni_bin_dir,
            &opts.paths.cni_conf_dir,
            &opts.paths.cni_conf_name,
            &opts.paths.socket,
            pod_mtu,
        )?;
        info!(bin_dir = %opts.paths.cni_bin_dir.display(), conf_dir = %opts.paths.cni_conf_dir.display(),
            binary_replaced = bin, config_replaced = conf, "CNI plugin installed");
        readiness.done(Stage::Cni);
    }
    info!(node = ?opts.node_name, "agent running");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
        r = serve => match r {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("socket server task: {e}")),
        },
    };
    info!("shutting down; datapath, routes and CNI configuration stay");
    let _ = std::fs::remove_file(&opts.paths.socket);
    drop(cluster);
    outcome
}

/// Forward the eBPF programs' log lines (aya-log ring buffer) to this agent's log whenever
/// the ring buffer has data. The programs write only while logging is switched on.
async fn poll_bpf_log(logger: crate::datapath::BpfLogger) {
    // SAFETY: the logger owns its ring buffer map's fd, which stays open and the same for as
    // long as the logger lives, i.e. as long as this AsyncFd owns it.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "cannot poll the eBPF log ring buffer");
            return;
        }
    };
    loop {
        match fd.readable_mut().await {
            Ok(mut guard) => {
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            Err(e) => {
                warn!(error = %e, "eBPF log ring buffer");
                return;
            }
        }
    }
}

/// The node's cgroup v2 root: `given`, else the usual mount points.
fn cgroup_root(given: Option<&Path>) -> anyhow::Result<std::path::PathBuf> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    let is_v2 = |p: &Path| statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC);
    if let Some(p) = given {
        if !is_v2(p) {
            anyhow::bail!("--cgroup-root {} is not a cgroup v2 directory", p.display());
        }
        return Ok(p.to_owned());
    }
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(Path::new)
        .find(|p| is_v2(p))
        .map(Path::to_owned)
        .context("no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified (set --cgroup-root)")
}

/// The state dir holds the IPAM store: root only.
fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))
}

fn start_owner(
    opts: &AgentOptions,
    pod_cidr: Option<Ipv4Network>,
    settings: DatapathSettings,
    view: Arc<RwLock<ClusterView>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<AgentHandle> {
    let store = Store::open(opts.paths.state_dir.join("ipam")).context("opening the IPAM store")?;
    let pin_dir = opts.paths.pin_dir.clone();
    AgentHandle::spawn(move || {
        let datapath = Datapath::open_with(&pin_dir, &settings)
            .with_context(|| format!("opening the datapath in {}", pin_dir.display()))?;
        let mut agent = Agent::new(store, datapath, pod_cidr, metrics).context("connecting to netlink")?;
        agent.set_view(view);
        agent.resume().context("resuming registered endpoints")?;
        Ok(agent)
    })
}

/// Datapath figures for /metrics, from read-only handles on the pinned maps.
fn stats_source(pin_dir: &Path) -> StatsSource {
    let pin_dir = pin_dir.to_owned();
    Arc::new(move || -> Result<DatapathStats, String> {
        let f = crate::datapath::read_stats(&pin_dir).map_err(|e| e.to_string())?;
        Ok(DatapathStats {
            drops: f.drops,
            service_path: f.service_path,
            map_entries: f.maps.iter().map(|(m, n, _)| (*m, *n)).collect(),
            map_capacity: f.maps.iter().map(|(m, _, c)| (*m, *c)).collect(),
        })
    })
}

/// The Kubernetes side of a running agent.
struct Cluster {
    node: String,
    reflectors: Reflectors,
}

impl Cluster {
    async fn start(opts: &AgentOptions, node: &str, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = crate::k8s::client(opts.kubeconfig.as_deref(), opts.api_server.as_deref())
            .await
            .context("building the Kubernetes client")?;
        info!(node, "watching the API server");
        Ok(Self {
            node: node.to_owned(),
            reflectors: Reflectors::start(client, metrics),
        })
    }

    /// Wait for this node's Node object to have an InternalIP (and a pod CIDR if
    /// `need_cidr`), logging every 10 s while waiting.
    async fn own_node(&self, need_cidr: bool) -> NodeInfo {
        let nodes = &self.reflectors.nodes;
        let mut changes = nodes.changes.clone();
        let _ = nodes.store.wait_until_ready().await;
        let started = Instant::now();
        loop {
            let info = nodes.store.get(&ObjectRef::new(&self.node)).map(|n| node_info(&n));
            let missing = match &info {
                None => Some("the Node object"),
                Some(i) if i.internal_ip.is_none() => Some("an InternalIP on the Node"),
                Some(i) if need_cidr && i.pod_cidrs.is_empty() => Some("spec.podCIDR on the Node"),
                Some(_) => None,
            };
            match (missing, info) {
                (None, Some(info)) => return info,
                (Some(what), _) => {
                    info!(node = %self.node, waited_s = started.elapsed().as_secs(), "waiting for {what}")
                }
                (None, None) => unreachable!("no Node is reported missing"),
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff_of(settings: &[&str]) -> anyhow::Result<ServiceHandoff> {
        let args = std::iter::once("agent").chain(settings.iter().copied()).map(Into::into).collect();
        service_handoff(&super::super::options::parse(args, |_| None).unwrap())
    }

    #[test]
    fn a_handoff_takes_over_or_hands_back_and_needs_kernel_host_routing() {
        assert_eq!(handoff_of(&[]).unwrap(), ServiceHandoff::None);
        let kernel = ["--host-routing=kernel", "--kube-proxy-handoff=true"];
        assert_eq!(handoff_of(&kernel).unwrap(), ServiceHandoff::Takeover);
        let back = [&kernel[..], &["--kube-proxy-replacement=false"]].concat();
        assert_eq!(handoff_of(&back).unwrap(), ServiceHandoff::Release);
        let err = handoff_of(&["--kube-proxy-handoff=true"]).unwrap_err().to_string();
        assert!(err.contains("needs host-routing: kernel"), "{err}");
    }
}
