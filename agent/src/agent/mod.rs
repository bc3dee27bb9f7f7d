//! The node agent: owns the datapath and the IPAM store, serves the local socket.
//!
//! [`Agent`] is the single writer: every change of an attachment (address, ENDPOINTS entry,
//! tc attachment, host veth) happens in [`Agent::handle`], called from one owner thread
//! ([`server`]), so no two requests interleave their steps.

pub mod config;
pub mod ct_gc;
pub mod install;
pub mod options;
pub mod policy;
pub mod retry;
pub mod routing;
pub mod run;
pub mod server;
pub mod services;
pub mod sysctl;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ipnetwork::Ipv4Network;
use tracing::{debug, info, warn};

use crate::api::{
    ApiError, AttachmentInfo, AttachmentKey, CniStep, EndpointInfo, EndpointSpec, ErrorKind,
    LinkProgram, Mac, PodRef, Request, Response, StatusReport, StepTime,
};
use crate::cni::naming::{host_ifname, HOST_IF_PREFIX};
use crate::datapath::{Datapath, DatapathError, EndpointEntry, FromPodLink};
use crate::ipam::{self, IpamError, Store};
use crate::metrics::Metrics;
use crate::netlink::{NetlinkError, SyncNetlink};

/// The cluster-side facts `weft status` shows: this node's name and the routes the routing
/// reconciler last programmed. Written by the routing task, read by the owner thread.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub node: Option<String>,
    pub routes: Vec<crate::api::RouteInfo>,
    /// The policy task's last translation (`weft policy list|trace`).
    pub policy: Option<Arc<policy::PolicyView>>,
}

/// The agent's state: the store, the datapath, the node's pod CIDR, a netlink connection in
/// the node's namespace (host veths).
pub struct Agent {
    store: Store,
    datapath: Datapath,
    pod_cidr: Option<Ipv4Network>,
    /// What `status` reports about the cluster side (node name, routes); written by the
    /// routing task, read here.
    view: Arc<RwLock<ClusterView>>,
    /// Netlink in the node's namespace (host veths and their tc filters).
    node: SyncNetlink,
    /// Where the CNI steps' times go.
    metrics: Arc<Metrics>,
    /// Held while `weft bpf-stats` has the kernel count program run time.
    run_stats: Option<std::os::fd::OwnedFd>,
}

impl From<IpamError> for ApiError {
    fn from(e: IpamError) -> Self {
        let kind = match e {
            IpamError::Exhausted { .. } => ErrorKind::Exhausted,
            IpamError::CidrMismatch { .. } => ErrorKind::CidrMismatch,
            IpamError::CidrTooSmall { .. } => ErrorKind::BadRequest,
            _ => ErrorKind::Store,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<DatapathError> for ApiError {
    fn from(e: DatapathError) -> Self {
        ApiError::new(ErrorKind::Datapath, e.to_string())
    }
}

impl From<NetlinkError> for ApiError {
    fn from(e: NetlinkError) -> Self {
        ApiError::new(ErrorKind::Datapath, e.to_string())
    }
}

impl From<FromPodLink> for LinkProgram {
    fn from(l: FromPodLink) -> Self {
        match l {
            FromPodLink::Current => LinkProgram::Current,
            FromPodLink::Previous => LinkProgram::Previous,
            FromPodLink::Missing => LinkProgram::Missing,
        }
    }
}

impl Agent {
    /// The agent over `store` and `datapath`; connects to netlink in the calling thread's
    /// network namespace (the node's).
    pub fn new(
        store: Store,
        datapath: Datapath,
        pod_cidr: Option<Ipv4Network>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, NetlinkError> {
        Ok(Self {
            metrics,
            view: Arc::default(),
            store,
            datapath,
            pod_cidr,
            node: SyncNetlink::connect(None)?,
            run_stats: None,
        })
    }

    /// After a restart or an upgrade: switch every registered endpoint's host veth to this
    /// agent's `from_pod` and `to_pod`. The veths' tc filters kept traffic flowing while no
    /// agent ran; each switch replaces a filter's program atomically. A veth that is gone is
    /// left to GC; a veth that cannot be switched keeps the earlier program and is logged.
    /// Returns (switched, failed).
    pub fn resume(&mut self) -> Result<(usize, usize), ApiError> {
        let pool = self.store.snapshot()?;
        let registered: HashSet<Ipv4Addr> = self
            .datapath
            .endpoints()?
            .into_iter()
            .map(|(ip, _)| ip)
            .collect();
        let (mut switched, mut failed) = (0, 0);
        for (ip, key) in pool
            .allocations
            .iter()
            .filter(|(ip, _)| registered.contains(ip))
        {
            let host = host_ifname(&key.container_id, &key.ifname);
            if nix::net::if_::if_nametoindex(host.as_str()).is_err() {
                warn!(%ip, %host, "host veth is gone; left for GC");
                continue;
            }
            match self.datapath.attach_from_pod(&self.node, &host) {
                Ok(()) => switched += 1,
                Err(e) => {
                    warn!(%ip, %host, error = %e, "could not switch to this agent's from_pod");
                    failed += 1;
                }
            }
        }
        info!(
            switched,
            failed, "endpoints resumed on this agent's program"
        );
        Ok((switched, failed))
    }

    /// Release every attachment whose pod is not among `live` (this node's pods, listed
    /// from the API server): pods deleted while the agent was down, whose DEL freed nothing.
    /// Returns what was released.
    pub fn release_gone_pods(
        &mut self,
        live: &[PodRef],
    ) -> Result<Vec<(Ipv4Addr, PodRef)>, ApiError> {
        let pool = self.store.snapshot()?;
        let mut released = Vec::new();
        for (ip, key, pod) in pool.orphans(live) {
            info!(%ip, namespace = %pod.namespace, pod = %pod.name, container_id = %key.container_id,
                "pod is gone: releasing its address");
            self.release(&key)?;
            released.push((ip, pod));
        }
        Ok(released)
    }

    /// The eBPF programs' log reader, for the task that polls it.
    pub fn take_bpf_logger(&mut self) -> Option<crate::datapath::BpfLogger> {
        self.datapath.take_logger()
    }

    fn set_bpf_log(&mut self, on: bool) -> Result<Response, ApiError> {
        let mut settings = self.datapath.settings()?;
        settings.log = on;
        self.datapath.set_settings(&settings)?;
        info!(on, "eBPF debug log lines switched");
        Ok(Response::BpfLog { on })
    }

    /// The programs' run-time statistics, after switching the kernel's counting on or off.
    fn prog_stats(&mut self, enable: Option<bool>) -> Result<Response, ApiError> {
        match enable {
            Some(true) if self.run_stats.is_none() => {
                self.run_stats = Some(crate::datapath::run_stats::enable()?);
                info!("eBPF run-time statistics on");
            }
            Some(false) if self.run_stats.is_some() => {
                self.run_stats = None;
                info!("eBPF run-time statistics off");
            }
            _ => {}
        }
        Ok(Response::ProgStats {
            enabled: self.run_stats.is_some(),
            programs: self.datapath.run_stats()?,
        })
    }

    /// Make the LB maps hold exactly `services` (a full listing).
    pub fn sync_services(
        &mut self,
        services: &[crate::lb::Service],
    ) -> Result<crate::datapath::lb::ReconcileStats, ApiError> {
        Ok(self.datapath.sync_services(services)?)
    }

    /// Program one added or changed Service.
    pub fn upsert_service(
        &mut self,
        service: &crate::lb::Service,
    ) -> Result<crate::datapath::lb::ReconcileStats, ApiError> {
        Ok(self.datapath.upsert_service(service)?)
    }

    /// Remove a deleted Service.
    pub fn delete_service(
        &mut self,
        name: &crate::lb::ServiceName,
    ) -> Result<crate::datapath::lb::ReconcileStats, ApiError> {
        Ok(self.datapath.delete_service(name)?)
    }

    /// Once every link runs this agent's programs: finish carrying pinned maps of another
    /// layout over (an upgrade or rollback across a map layout change).
    pub fn finish_migrations(&mut self) -> Result<Vec<&'static str>, ApiError> {
        Ok(self.datapath.finish_migrations()?)
    }

    /// Attach the socket-level load balancing to the node's cgroup v2 root.
    pub fn attach_sock_lb(&mut self, cgroup: &std::path::Path) -> Result<(), ApiError> {
        Ok(self.datapath.attach_sock_lb(cgroup)?)
    }

    /// Release every socket-level load balancing link (kube-proxy takes new connections).
    pub fn detach_every_sock_lb(&mut self) -> Result<usize, ApiError> {
        Ok(self.datapath.detach_every_sock_lb()?)
    }

    /// The policy task's last translation.
    fn policy_view(&self) -> Result<Arc<policy::PolicyView>, ApiError> {
        self.view.read().ok().and_then(|v| v.policy.clone()).ok_or_else(|| {
            ApiError::new(
                ErrorKind::Unavailable,
                "NetworkPolicy is not running on this agent (not a Kubernetes node agent, or its first pass is not done)",
            )
        })
    }

    /// Share the cluster view `status` reports (the routing task writes it).
    pub fn set_view(&mut self, view: Arc<RwLock<ClusterView>>) {
        self.view = view;
    }

    /// Attach one of the node-device programs (`from_netdev` on the uplink, `from_overlay` /
    /// `to_overlay` on the VXLAN device), pinned like the pods' links.
    pub fn attach_device(
        &mut self,
        prog: crate::datapath::Prog,
        ifname: &str,
    ) -> Result<(), ApiError> {
        self.datapath.attach(prog, ifname)?;
        Ok(())
    }

    /// Serve one request.
    pub fn handle(&mut self, request: Request) -> Result<Response, ApiError> {
        debug!(?request, "request");
        let out = match request {
            Request::Allocate { key, pod_cidr, pod } => self.allocate(&key, pod_cidr, pod.as_ref()),
            Request::Register {
                key,
                endpoint,
                steps,
            } => {
                for t in steps {
                    self.metrics.cni_step(t);
                }
                self.register(&key, &endpoint)
            }
            Request::Release { key } => self.release(&key).map(|ip| Response::Released { ip }),
            Request::Lookup { key } => self.lookup(&key),
            Request::Gc { valid } => self.gc(&valid),
            Request::Status => self.status().map(Response::Status),
            Request::SetBpfLog { on } => self.set_bpf_log(on),
            Request::ServiceList => self
                .datapath
                .services()
                .map(|services| Response::Services { services })
                .map_err(ApiError::from),
            Request::CtList => self
                .datapath
                .conntrack()
                .map(|entries| Response::Conntrack { entries })
                .map_err(ApiError::from),
            Request::ProgStats { enable } => self.prog_stats(enable),
            Request::PolicyList => self.policy_view().map(|v| Response::Policies { endpoints: v.rows() }),
            Request::PolicyTrace { from, to, protocol, port } => self.policy_view().and_then(|v| {
                v.trace(&from, &to, &protocol, port)
                    .map(Response::PolicyTrace)
                    .map_err(|e| ApiError::new(ErrorKind::BadRequest, e))
            }),
        };
        if let Err(e) = &out {
            warn!(error = %e, "request failed");
        }
        out
    }

    fn allocate(
        &mut self,
        key: &AttachmentKey,
        asked: Option<Ipv4Network>,
        pod: Option<&PodRef>,
    ) -> Result<Response, ApiError> {
        let cidr = asked.or(self.pod_cidr).ok_or_else(|| {
            ApiError::new(
                ErrorKind::NoPodCidr,
                "no podCIDR in the CNI config and none configured on the agent",
            )
        })?;
        let ip = self.timed(CniStep::Allocate, |a| a.store.allocate_for(key, cidr, pod))?;
        info!(container_id = %key.container_id, ifname = %key.ifname, %ip, "allocated");
        Ok(Response::Allocated {
            ip,
            pod_cidr: crate::ipam::canonical(cidr),
        })
    }

    fn register(&mut self, key: &AttachmentKey, ep: &EndpointSpec) -> Result<Response, ApiError> {
        let held = self.store.find(key)?;
        if held != Some(ep.ip) {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                format!(
                    "{} is not allocated to {}/{} (holds {held:?})",
                    ep.ip, key.container_id, key.ifname
                ),
            ));
        }
        let expected = host_ifname(&key.container_id, &key.ifname);
        if ep.host_ifname != expected {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                format!("host veth must be {expected}, not {}", ep.host_ifname),
            ));
        }
        let ifindex = nix::net::if_::if_nametoindex(ep.host_ifname.as_str()).map_err(|e| {
            ApiError::new(
                ErrorKind::Datapath,
                format!("host veth {}: {e}", ep.host_ifname),
            )
        })?;
        let entry = EndpointEntry {
            ifindex,
            host_mac: ep.host_mac.0,
            pod_mac: ep.pod_mac.0,
        };
        self.timed(CniStep::Endpoint, |a| a.datapath.upsert_endpoint(ep.ip, &entry))?;
        let attached = self.timed(CniStep::Attach, |a| {
            a.datapath.attach_from_pod(&a.node, &ep.host_ifname)
        });
        if let Err(e) = attached {
            let _ = self.datapath.remove_endpoint(ep.ip);
            return Err(e.into());
        }
        info!(ip = %ep.ip, host = %ep.host_ifname, ifindex, "endpoint registered");
        Ok(Response::Registered { ifindex })
    }

    /// Undo an attachment in reverse order of ADD; every step tolerates "already gone".
    fn release(&mut self, key: &AttachmentKey) -> Result<Option<Ipv4Addr>, ApiError> {
        let ip = self.store.find(key)?;
        let host = host_ifname(&key.container_id, &key.ifname);
        if let Some(ip) = ip {
            self.timed(CniStep::EndpointRemove, |a| a.remove_endpoint(ip))?;
        }
        // The veth's tc filters go with it; deleting it is the whole detach.
        if self.timed(CniStep::VethDelete, |a| a.node.run(|n| n.delete_link(&host)))? {
            debug!(%host, "host veth deleted");
        }
        self.datapath.retire_pod_links(&host)?;
        let released = self.timed(CniStep::Release, |a| a.store.release(key))?;
        if let Some(ip) = released {
            info!(container_id = %key.container_id, ifname = %key.ifname, %ip, "released");
        }
        Ok(released)
    }

    /// Run `f`, recording its time as CNI step `step`.
    fn timed<T>(&mut self, step: CniStep, f: impl FnOnce(&mut Self) -> T) -> T {
        let start = Instant::now();
        let out = f(self);
        self.metrics.cni_step(StepTime::new(step, start.elapsed()));
        out
    }

    /// Remove the ENDPOINTS entry of `ip`; an entry that is not there is not an error.
    fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), ApiError> {
        match self.datapath.remove_endpoint(ip) {
            Ok(()) => Ok(()),
            Err(e) if !self.datapath.endpoints()?.iter().any(|(i, _)| *i == ip) => {
                debug!(%ip, error = %e, "endpoint already absent");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn lookup(&mut self, key: &AttachmentKey) -> Result<Response, ApiError> {
        let ip = self.store.find(key)?;
        let registered = match ip {
            Some(ip) => {
                let host = host_ifname(&key.container_id, &key.ifname);
                let ifindex = nix::net::if_::if_nametoindex(host.as_str()).ok();
                self.datapath
                    .endpoints()?
                    .iter()
                    .any(|(i, e)| *i == ip && Some(e.ifindex) == ifindex)
            }
            None => false,
        };
        Ok(Response::Attachment { ip, registered })
    }

    /// Release attachments not in `valid`, then sweep what no allocation explains: ENDPOINTS
    /// entries and `weft…` host veths left by a crash.
    fn gc(&mut self, valid: &[AttachmentKey]) -> Result<Response, ApiError> {
        let valid: HashSet<&AttachmentKey> = valid.iter().collect();
        let pool = self.store.snapshot()?;
        let mut released = Vec::new();
        for (ip, key) in pool.allocations.iter().filter(|(_, k)| !valid.contains(k)) {
            self.release(key)?;
            released.push((key.clone(), *ip));
        }
        let pool = self.store.snapshot()?;
        let live_ips: HashSet<Ipv4Addr> = pool.allocations.keys().copied().collect();
        for (ip, _) in self.datapath.endpoints()? {
            if !live_ips.contains(&ip) {
                info!(%ip, "GC: orphan endpoint entry removed");
                self.remove_endpoint(ip)?;
            }
        }
        let live_links: HashSet<String> = pool
            .allocations
            .values()
            .map(|k| host_ifname(&k.container_id, &k.ifname))
            .collect();
        let links = self.node.run(|n| n.links_with_prefix(HOST_IF_PREFIX))?;
        for link in links {
            if !live_links.contains(&link.name) {
                info!(host = %link.name, "GC: orphan host veth removed");
                self.node.run(|n| n.delete_link(&link.name))?;
                self.datapath.retire_pod_links(&link.name)?;
            }
        }
        Ok(Response::GcDone { released })
    }

    fn status(&mut self) -> Result<StatusReport, ApiError> {
        let pool = self.store.snapshot()?;
        let view = self.view.read().map(|v| v.clone()).unwrap_or_default();
        let pod_cidr = pool
            .pod_cidr
            .filter(|_| !pool.allocations.is_empty())
            .or(self.pod_cidr)
            .or(pool.pod_cidr);
        Ok(StatusReport {
            pod_cidr,
            allocated: pool.allocations.len(),
            capacity: pod_cidr.map(ipam::capacity).unwrap_or(0),
            attachments: pool
                .allocations
                .iter()
                .map(|(ip, key)| AttachmentInfo {
                    key: key.clone(),
                    ip: *ip,
                })
                .collect(),
            endpoints: self
                .datapath
                .endpoints()?
                .into_iter()
                .map(|(ip, e)| {
                    let host = pool
                        .allocations
                        .get(&ip)
                        .map(|k| host_ifname(&k.container_id, &k.ifname));
                    Ok(EndpointInfo {
                        ip,
                        ifindex: e.ifindex,
                        host_mac: Mac(e.host_mac),
                        pod_mac: Mac(e.pod_mac),
                        program: match host {
                            Some(h) => self.datapath.from_pod_link(&self.node, &h)?.into(),
                            None => LinkProgram::Missing,
                        },
                    })
                })
                .collect::<Result<_, DatapathError>>()?,
            drops: owned_names(self.datapath.drop_counters()?),
            service_counters: owned_names(self.datapath.lb_counters()?),
            node: view.node,
            routes: view.routes,
            forwarding: Some(forwarding_info(&self.datapath.settings()?)),
        })
    }
}

/// The forwarding settings as `weft status` names them.
fn forwarding_info(s: &crate::datapath::DatapathSettings) -> crate::api::ForwardingInfo {
    crate::api::ForwardingInfo {
        host_routing: if s.bpf_host_routing { "bpf" } else { "kernel" }.into(),
        handoff: s.handoff.name().into(),
    }
}

/// Named counts with owned names, as the API carries them.
fn owned_names(counts: Vec<(&'static str, u64)>) -> Vec<(String, u64)> {
    counts.into_iter().map(|(n, c)| (n.to_owned(), c)).collect()
}
