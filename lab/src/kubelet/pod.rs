//! The pod worker: one task per pod UID, from sandbox to deletion, as kubelet's pod workers and
//! status manager do: create the sandbox, start the containers, report status, and on
//! deletion stop containers, tear the sandbox down and remove the API object.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

use super::container::{self, PodEnv, RestartPolicy, Update};
use super::record::{self, ContainerRecord, PodRecord, SandboxRecord};
use super::resolv::{self, DnsInputs};
use super::sandbox::{Sandbox, SandboxSpec};
use super::status::{self, ContainerView, PodView, Transitions};
use super::NodeCtx;

/// What the node loop tells a worker besides pod updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Run,
    /// The object is gone from the API (force-deleted, or missing after a re-list).
    Gone,
    /// The stand-in is shutting down: clean up locally, leave the API object.
    Shutdown,
}

/// How the worker ended its pod.
enum Ending {
    /// deletionTimestamp set: stop with this grace, then DELETE the object.
    Delete(Duration),
    Gone,
    Shutdown,
}

struct Worker {
    ctx: Arc<NodeCtx>,
    pods: Api<Pod>,
    namespace: String,
    name: String,
    uid: String,
    dir: PathBuf,
    transitions: Transitions,
    last_sent: Option<Value>,
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

fn ending_of(pod: &Pod, ctl: Control) -> Option<Ending> {
    match ctl {
        Control::Gone => Some(Ending::Gone),
        Control::Shutdown => Some(Ending::Shutdown),
        Control::Run if pod.metadata.deletion_timestamp.is_some() => {
            Some(Ending::Delete(grace_of(pod)))
        }
        Control::Run => None,
    }
}

/// Runs one pod until it is deleted, gone, or the stand-in shuts down.
pub async fn run(
    ctx: Arc<NodeCtx>,
    mut pod_rx: watch::Receiver<Pod>,
    mut ctl: watch::Receiver<Control>,
) {
    let pod = pod_rx.borrow_and_update().clone();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = record::pod_dir(&ctx.cfg.state_dir, &namespace, &name);
    let mut w = Worker {
        pods: Api::namespaced(ctx.client.clone(), &namespace),
        ctx,
        namespace,
        name,
        uid,
        dir,
        transitions: Transitions::default(),
        last_sent: None,
    };
    let ending = w.live(pod, &mut pod_rx, &mut ctl).await;
    w.finish(ending).await;
}

impl Worker {
    fn pod_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Everything up to the decision to stop.
    async fn live(
        &mut self,
        pod: Pod,
        pod_rx: &mut watch::Receiver<Pod>,
        ctl: &mut watch::Receiver<Control>,
    ) -> (Ending, Option<Running>) {
        if let Some(e) = ending_of(&pod, *ctl.borrow()) {
            return (e, None);
        }
        if is_finished(&pod) {
            // A finished pod from before a restart: nothing to run, wait for its deletion.
            return (wait_for_end(pod_rx, ctl).await, None);
        }
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::error!(pod = self.pod_ref(), error = %e, "cannot create the pod directory");
        }
        let spec = self.sandbox_spec(&pod);
        let sandbox = match self.create_sandbox(&pod, &spec, pod_rx, ctl).await {
            Ok(sb) => sb,
            Err(e) => return (e, None),
        };
        self.announce_sandbox(&pod, &sandbox);
        let mut running = self.start_running(&pod, sandbox, spec).await;
        let ending = self.run_pod(&pod, &mut running, pod_rx, ctl).await;
        (ending, Some(running))
    }

    /// Creates the sandbox (namespaces, CNI), retrying with a short back-off and reporting each
    /// failure; `Err` when the pod ends first.
    async fn create_sandbox(
        &mut self,
        pod: &Pod,
        spec: &SandboxSpec,
        pod_rx: &mut watch::Receiver<Pod>,
        ctl: &mut watch::Receiver<Control>,
    ) -> Result<Sandbox, Ending> {
        let mut attempt = 0u32;
        loop {
            match self.ctx.sandbox.create(spec, &self.dir).await {
                Ok(sb) => return Ok(sb),
                Err(e) => {
                    attempt += 1;
                    let msg = format!("Failed to create pod sandbox: {e}");
                    self.ctx.events.warning(pod, "FailedCreatePodSandBox", &msg);
                    let view = self.view(pod, None, false, None, Some(msg));
                    self.patch(&view).await;
                    // Short retries: the network plugin (weft's DaemonSet) may write its config moments later.
                    let wait = Duration::from_secs((1u64 << attempt.min(4)).min(10));
                    if let Some(e) = wait_or_end(pod_rx, ctl, wait).await {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Logs the new sandbox and records its SandboxReady event.
    fn announce_sandbox(&self, pod: &Pod, sandbox: &Sandbox) {
        tracing::info!(pod = self.pod_ref(), netns = sandbox.netns, ip = ?sandbox.ip, sandbox = sandbox.id, "sandbox ready");
        self.ctx.events.normal(
            pod,
            "SandboxReady",
            &format!(
                "Pod sandbox {} ready, IP {}",
                &sandbox.id[..12],
                sandbox
                    .ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "host network".into())
            ),
        );
    }

    /// The pod's running state around its new sandbox, saved to the record and with the IP
    /// reported early, as kubelet does once the sandbox exists.
    async fn start_running(&mut self, pod: &Pod, sandbox: Sandbox, spec: SandboxSpec) -> Running {
        let running = Running::new(pod, sandbox, spec);
        self.save_record(pod, &running);
        let view = self.view(pod, running.sandbox.ip, true, Some(&running), None);
        self.patch(&view).await;
        running
    }

    /// What runs in a ready sandbox: volumes, init containers, then the containers until they
    /// all end or the pod does.
    async fn run_pod(
        &mut self,
        pod: &Pod,
        running: &mut Running,
        pod_rx: &mut watch::Receiver<Pod>,
        ctl: &mut watch::Receiver<Control>,
    ) -> Ending {
        let volumes = match self.mount_volumes(pod, pod_rx, ctl).await {
            Ok(v) => v,
            Err(end) => return end,
        };
        let starter = Starter {
            env: self.pod_env(pod, running, volumes).await,
            stop_rx: running.stop.subscribe(),
        };
        let policy =
            RestartPolicy::parse(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()));
        if let Some(e) = self
            .run_init_containers(pod, &starter, policy, running, pod_rx, ctl)
            .await
        {
            return e;
        }
        let mut rx = starter.start_containers(pod, policy, running);
        match self
            .follow_containers(pod, running, &mut rx, pod_rx, ctl)
            .await
        {
            Some(e) => {
                running.rx = Some(rx);
                e
            }
            None => wait_for_end(pod_rx, ctl).await,
        }
    }

    /// Sets up the pod's volumes, retrying every 5 s and reporting each failure; `Err` when the
    /// pod ends first.
    async fn mount_volumes(
        &self,
        pod: &Pod,
        pod_rx: &mut watch::Receiver<Pod>,
        ctl: &mut watch::Receiver<Control>,
    ) -> Result<super::volumes::Volumes, Ending> {
        loop {
            let registry = self.ctx.mount_point_registry();
            let host = super::volumes::HostVolumes {
                fs: &self.ctx.host_fs,
                registry: &registry,
            };
            match super::volumes::materialise(
                &self.ctx.client,
                pod,
                &self.dir,
                &self.ctx.cfg.node_ip.to_string(),
                &host,
            )
            .await
            {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.ctx.events.warning(
                        pod,
                        "FailedMount",
                        &format!("MountVolume.SetUp failed: {e}"),
                    );
                    if let Some(end) = wait_or_end(pod_rx, ctl, Duration::from_secs(5)).await {
                        return Err(end);
                    }
                }
            }
        }
    }

    /// What the pod's containers share: sandbox, volumes, service links.
    async fn pod_env(
        &self,
        pod: &Pod,
        running: &Running,
        volumes: super::volumes::Volumes,
    ) -> Arc<PodEnv> {
        let service_env = self.service_env().await;
        Arc::new(PodEnv {
            client: self.ctx.client.clone(),
            events: self.ctx.events.clone(),
            pod: pod.clone(),
            dir: self.dir.clone(),
            roots: self.ctx.roots.clone(),
            pause_pid: running.sandbox.pause_pid,
            pod_ip: running.sandbox.ip,
            host_ip: self.ctx.cfg.node_ip,
            volumes,
            service_env,
            mount_point_registry: self.ctx.mount_point_registry(),
        })
    }

    /// Runs the init containers one at a time to completion; `Some` when the pod ends first or
    /// an init container fails for good (restartPolicy Never), which fails the pod.
    /// Sidecars (restartPolicy Always) are not modelled.
    async fn run_init_containers(
        &mut self,
        pod: &Pod,
        starter: &Starter,
        policy: RestartPolicy,
        running: &mut Running,
        pod_rx: &mut watch::Receiver<Pod>,
        ctl: &mut watch::Receiver<Control>,
    ) -> Option<Ending> {
        let init_policy = if policy == RestartPolicy::Never {
            RestartPolicy::Never
        } else {
            RestartPolicy::OnFailure
        };
        let inits = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default();
        for (idx, c) in inits.into_iter().enumerate() {
            let (itx, mut irx) = mpsc::unbounded_channel::<Update>();
            running.tasks.push(starter.spawn(idx, c, init_policy, itx));
            if let Some(e) = self.follow_init(pod, running, &mut irx, pod_rx, ctl).await {
                return Some(e);
            }
            let view = self.view(pod, running.sandbox.ip, true, Some(running), None);
            if view.init_failed() {
                self.fail_init(pod, idx, running).await;
                return Some(wait_for_end(pod_rx, ctl).await);
            }
            if !running.init_views[idx].done {
                // Stopped while initialising.
                return Some(wait_for_end(pod_rx, ctl).await);
            }
        }
        if !running.init_views.is_empty() {
            for v in &mut running.views {
                v.state = status::State::waiting("ContainerCreating", None);
            }
        }
        None
    }

    /// Reports one init container's updates until its task ends; `Some` when the pod ends first.
    async fn follow_init(
        &mut self,
        pod: &Pod,
        running: &mut Running,
        irx: &mut mpsc::UnboundedReceiver<Update>,
        pod_rx: &mut watch::Receiver<Pod>,
        ctl: &mut watch::Receiver<Control>,
    ) -> Option<Ending> {
        loop {
            tokio::select! {
                u = irx.recv() => {
                    let u = u?; // None: every sender is gone.
                    running.init_views[u.idx] = u.view;
                    let view = self.view(pod, running.sandbox.ip, true, Some(running), None);
                    self.patch(&view).await;
                }
                e = next_ending(pod_rx, ctl) => if e.is_some() { return e },
            }
        }
    }

    /// Init container `idx` failed for good: the app containers will not run, the sandbox goes.
    async fn fail_init(&mut self, pod: &Pod, idx: usize, running: &mut Running) {
        self.ctx.events.warning(
            pod,
            "Failed",
            &format!(
                "Init container {} failed; the pod will not start",
                running.init_views[idx].name
            ),
        );
        for v in &mut running.views {
            v.done = true;
        }
        self.teardown(running).await;
        let view = self.view(pod, running.sandbox.ip, false, Some(running), None);
        self.patch(&view).await;
    }

    /// Follows the containers' updates until all their tasks end (`None`) or the pod ends:
    /// records and status patches (retried every 2 s while the last one failed, or while the API
    /// server holds conditions another writer changed), and the sandbox teardown once every
    /// container is done.
    async fn follow_containers(
        &mut self,
        pod: &Pod,
        running: &mut Running,
        rx: &mut mpsc::UnboundedReceiver<Update>,
        pod_rx: &mut watch::Receiver<Pod>,
        ctl: &mut watch::Receiver<Control>,
    ) -> Option<Ending> {
        let mut retry = tokio::time::interval(Duration::from_secs(2));
        let mut torn_down = false;
        loop {
            tokio::select! {
                u = rx.recv() => {
                    let u = u?; // None: every sender is gone.
                    self.apply_update(pod, running, u, &mut torn_down).await;
                }
                e = next_ending(pod_rx, ctl) => if e.is_some() { return e },
                _ = retry.tick() => {
                    let api = pod_rx.borrow().status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                    if self.last_sent.as_ref().is_some_and(|sent| status::overwritten(&api, sent)) {
                        tracing::info!(pod = self.pod_ref(), "pod conditions changed by another writer; sending ours again");
                        self.last_sent = None;
                    }
                    if self.last_sent.is_none() {
                        let view = self.view(pod, running.sandbox.ip, !torn_down, Some(running), None);
                        self.patch(&view).await;
                    }
                }
            }
        }
    }

    /// Takes in one container's update: record, teardown when all are done, status patch.
    async fn apply_update(
        &mut self,
        pod: &Pod,
        running: &mut Running,
        u: Update,
        torn_down: &mut bool,
    ) {
        running.views[u.idx] = u.view;
        running.pids[u.idx] = u.pid;
        self.save_record(pod, running);
        let all_done = running.views.iter().all(|v| v.done);
        if all_done && !*torn_down {
            // A finished pod gives its network back, as kubelet kills the sandbox.
            self.teardown(running).await;
            *torn_down = true;
        }
        let view = self.view(pod, running.sandbox.ip, !*torn_down, Some(running), None);
        self.patch(&view).await;
    }

    /// Stops what runs, cleans up, and for a deletion removes the API object.
    async fn finish(&mut self, (ending, running): (Ending, Option<Running>)) {
        if let Some(mut running) = running {
            let grace = match &ending {
                Ending::Delete(g) => *g,
                Ending::Gone => Duration::from_secs(2),
                Ending::Shutdown => Duration::from_secs(5),
            };
            let _ = running.stop.send(Some(grace));
            if let Some(mut rx) = running.rx.take() {
                while let Some(u) = rx.recv().await {
                    running.views[u.idx] = u.view;
                }
            }
            for t in running.tasks.drain(..) {
                let _ = t.await;
            }
            if let Ending::Delete(_) = ending {
                let pod = self.pods.get_opt(&self.name).await.ok().flatten();
                if let Some(pod) = pod {
                    let view = self.view(&pod, running.sandbox.ip, false, Some(&running), None);
                    self.patch(&view).await;
                }
            }
            self.teardown(&mut running).await;
        }
        match ending {
            // Keep logs when the stand-in stops, for a look afterwards; only the record goes.
            Ending::Shutdown => {
                let _ = std::fs::remove_file(record::record_path(&self.dir));
                let _ = std::fs::remove_file(record::sandbox_path(&self.dir));
            }
            // A deleted pod leaves nothing: logs, volumes (tokens, secrets), nginx temp files.
            Ending::Delete(_) | Ending::Gone => {
                if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(pod = self.pod_ref(), error = %e, "removing the pod directory");
                    }
                }
            }
        }
        if let Ending::Delete(_) = ending {
            self.delete_object().await;
        }
        tracing::info!(pod = self.pod_ref(), "pod worker finished");
    }

    async fn teardown(&self, running: &mut Running) {
        for attempt in 1..=3u32 {
            match self
                .ctx
                .sandbox
                .teardown(&running.spec, &mut running.sandbox)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(pod = self.pod_ref(), attempt, error = %e, "sandbox teardown failed");
                    tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
                }
            }
        }
        tracing::error!(
            pod = self.pod_ref(),
            "giving up on sandbox teardown; resources may be left behind"
        );
    }

    /// DELETE with grace 0 and a UID precondition (kubelet's status manager), retrying while the
    /// apiserver is unreachable.
    async fn delete_object(&self) {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        for attempt in 0..30u32 {
            match self.pods.delete(&self.name, &dp).await {
                Ok(_) => {
                    tracing::info!(pod = self.pod_ref(), "pod object deleted");
                    return;
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return,
                Err(e) => {
                    tracing::warn!(pod = self.pod_ref(), error = %e, "deleting the pod object failed; retrying");
                    tokio::time::sleep(Duration::from_secs((1u64 << attempt.min(4)).min(10))).await;
                }
            }
        }
    }

    fn sandbox_spec(&self, pod: &Pod) -> SandboxSpec {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let mut hostname = spec.hostname.clone().unwrap_or_else(|| self.name.clone());
        hostname.truncate(63);
        let domain = &self.ctx.cfg.cluster_domain;
        let fqdn = spec
            .subdomain
            .as_ref()
            .map(|sd| format!("{hostname}.{sd}.{}.svc.{domain}", self.namespace));
        let resolv = resolv::render_resolv_conf(&DnsInputs {
            namespace: &self.namespace,
            dns_policy: spec.dns_policy.as_deref(),
            host_network,
            dns_config: spec.dns_config.as_ref(),
            cluster_dns: self.ctx.cfg.cluster_dns,
            cluster_domain: domain,
            host_resolv_conf: &self.ctx.host_resolv_conf,
        });
        SandboxSpec {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            hostname: if host_network {
                self.ctx.cfg.node_name.clone()
            } else {
                hostname
            },
            fqdn,
            host_network,
            resolv_conf: resolv,
            capability_args: capability_args(pod),
            host_aliases: spec
                .host_aliases
                .iter()
                .flatten()
                .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
                .collect(),
        }
    }

    /// Service link variables: the pod namespace's services plus default/kubernetes.
    async fn service_env(&self) -> Vec<(String, String)> {
        let mut services: Vec<Service> = vec![];
        let ns_api: Api<Service> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        match ns_api.list(&Default::default()).await {
            Ok(l) => services.extend(l.items),
            Err(e) => {
                tracing::warn!(pod = self.pod_ref(), error = %e, "listing services for env vars")
            }
        }
        if self.namespace != "default" {
            let def: Api<Service> = Api::namespaced(self.ctx.client.clone(), "default");
            if let Ok(Some(k)) = def.get_opt("kubernetes").await {
                services.push(k);
            }
        }
        super::env::service_env(&services, &self.namespace)
    }

    fn view(
        &self,
        pod: &Pod,
        ip: Option<std::net::Ipv4Addr>,
        sandbox_ready: bool,
        running: Option<&Running>,
        msg: Option<String>,
    ) -> PodView {
        let (containers, init_containers) = match running {
            Some(r) => (r.views.clone(), r.init_views.clone()),
            None => (pending_views(pod), pending_init_views(pod)),
        };
        // A host-network pod's IP is the node's (kubelet reports hostIPs as podIPs).
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let ip = if host_network && sandbox_ready {
            Some(self.ctx.cfg.node_ip)
        } else {
            ip
        };
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| {
                k8s_openapi::jiff::Timestamp::from_second(t.0.as_second())
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            });
        PodView {
            uid: self.uid.clone(),
            sandbox_ready,
            pod_ip: ip,
            host_ip: self.ctx.cfg.node_ip,
            start_time: start_time.unwrap_or_else(|| self.ctx.start_time_for(&self.uid)),
            containers,
            init_containers,
            sandbox_message: msg,
        }
    }

    /// Sends the status if it changed since the last successful send.
    async fn patch(&mut self, view: &PodView) {
        let body = status::status_patch(view, &mut self.transitions, &status::now());
        if self.last_sent.as_ref().is_some_and(|last| *last == body) {
            return;
        }
        match self
            .pods
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {
                tracing::debug!(pod = self.pod_ref(), phase = %body["status"]["phase"], "status patched");
                self.last_sent = Some(body);
            }
            Err(e) => {
                tracing::warn!(pod = self.pod_ref(), error = %e, "patching pod status failed; will retry");
                self.last_sent = None;
            }
        }
    }

    fn save_record(&self, pod: &Pod, running: &Running) {
        let specs: &[k8s_openapi::api::core::v1::Container] =
            pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
        let containers: Vec<ContainerRecord> = specs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let image = c.image.clone().unwrap_or_default();
                ContainerRecord {
                    name: c.name.clone(),
                    pid: running.pids.get(i).copied().flatten(),
                    path_env: self.ctx.roots.path_env_for(&image),
                    image_bin_dir: self.ctx.roots.shadow_dir_for(&image),
                    image,
                }
            })
            .collect();
        let main = containers.first();
        let rec = PodRecord {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            netns: running.sandbox.netns.clone(),
            host_network: running.spec.host_network,
            ip: if running.spec.host_network {
                Some(self.ctx.cfg.node_ip)
            } else {
                running.sandbox.ip
            },
            log: self.dir.join(format!("{}.log", main.map(|c| c.name.as_str()).unwrap_or_default())),
            pid: main.and_then(|c| c.pid),
            containers: containers.clone(),
        };
        let path_env = main.map(|c| c.path_env.clone()).unwrap_or_default();
        let sb = SandboxRecord {
            id: running.sandbox.id.clone(),
            pause_pid: Some(running.sandbox.pause_pid)
                .filter(|p| *p != 0 && running.sandbox.pause.is_some()),
            pause_start: super::nsexec::start_time(running.sandbox.pause_pid),
            path_env,
            network: running.sandbox.network.as_ref().map(|n| n.name.clone()),
            net_ns_inode: running.sandbox.net_ns_inode,
            uts_ns_inode: running.sandbox.uts_ns_inode,
        };
        for r in [
            record::save(&record::sandbox_path(&self.dir), &sb),
            record::save(&record::record_path(&self.dir), &rec),
        ] {
            if let Err(e) = r {
                tracing::warn!(pod = self.pod_ref(), error = %e, "writing the pod record");
            }
        }
    }
}

/// State of a pod whose sandbox exists.
struct Running {
    sandbox: Sandbox,
    spec: SandboxSpec,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<Option<Duration>>,
    views: Vec<ContainerView>,
    init_views: Vec<ContainerView>,
    pids: Vec<Option<u32>>,
    rx: Option<mpsc::UnboundedReceiver<Update>>,
}

impl Running {
    /// A new sandbox's state: no tasks yet, every container pending.
    fn new(pod: &Pod, sandbox: Sandbox, spec: SandboxSpec) -> Running {
        let views = pending_views(pod);
        Running {
            sandbox,
            spec,
            tasks: vec![],
            stop: watch::channel(None).0,
            pids: vec![None; views.len()],
            views,
            init_views: pending_init_views(pod),
            rx: None,
        }
    }
}

/// What starting a pod's containers needs: their shared environment and the stop signal.
struct Starter {
    env: Arc<PodEnv>,
    stop_rx: watch::Receiver<Option<Duration>>,
}

impl Starter {
    /// Spawns the supervising task of container `idx`, reporting on `tx`.
    fn spawn(
        &self,
        idx: usize,
        c: Container,
        policy: RestartPolicy,
        tx: mpsc::UnboundedSender<Update>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(container::supervise(
            self.env.clone(),
            idx,
            c,
            policy,
            tx,
            self.stop_rx.clone(),
        ))
    }

    /// Spawns the supervising task of every app container; their updates come on the returned
    /// channel, which closes once all the tasks have ended.
    fn start_containers(
        &self,
        pod: &Pod,
        policy: RestartPolicy,
        running: &mut Running,
    ) -> mpsc::UnboundedReceiver<Update> {
        let (tx, rx) = mpsc::unbounded_channel::<Update>();
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        for (idx, c) in containers.into_iter().enumerate() {
            running.tasks.push(self.spawn(idx, c, policy, tx.clone()));
        }
        rx
    }
}

/// Whether the pod already reached Succeeded or Failed.
fn is_finished(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    phase == "Succeeded" || phase == "Failed"
}

fn pending_views(pod: &Pod) -> Vec<ContainerView> {
    let initializing = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.init_containers.as_ref().is_some_and(|i| !i.is_empty()));
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| {
                    let mut v = ContainerView::new(&c.name, c.image.as_deref().unwrap_or_default());
                    if initializing {
                        v.state = status::State::waiting("PodInitializing", None);
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pending_init_views(pod: &Pod) -> Vec<ContainerView> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map(|l| {
            l.iter()
                .map(|c| ContainerView::new(&c.name, c.image.as_deref().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// containerd's CNI capability args for a pod: host ports and annotations.
pub fn capability_args(pod: &Pod) -> Map<String, Value> {
    let mut caps = Map::new();
    let mappings: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| {
            json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                "hostIP": p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    if !mappings.is_empty() {
        caps.insert("portMappings".into(), Value::Array(mappings));
    }
    if let Some(a) = &pod.metadata.annotations {
        caps.insert("io.kubernetes.cri.pod-annotations".into(), json!(a));
    }
    caps
}

async fn wait_for_end(
    pod_rx: &mut watch::Receiver<Pod>,
    ctl: &mut watch::Receiver<Control>,
) -> Ending {
    loop {
        if let Some(e) = ending_of(&pod_rx.borrow(), *ctl.borrow()) {
            return e;
        }
        tokio::select! {
            r = pod_rx.changed() => if r.is_err() { return Ending::Gone },
            r = ctl.changed() => if r.is_err() { return Ending::Shutdown },
        }
    }
}

/// Waits for the next change of the pod or of the control; the ending it brings, if any.
async fn next_ending(
    pod_rx: &mut watch::Receiver<Pod>,
    ctl: &mut watch::Receiver<Control>,
) -> Option<Ending> {
    tokio::select! {
        r = pod_rx.changed() => {
            if r.is_err() {
                return Some(Ending::Gone);
            }
            let latest = pod_rx.borrow_and_update().clone();
            ending_of(&latest, *ctl.borrow())
        }
        r = ctl.changed() => {
            let c = if r.is_err() { Control::Shutdown } else { *ctl.borrow() };
            ending_of(&pod_rx.borrow(), c)
        }
    }
}

/// Sleeps unless the pod ends first.
async fn wait_or_end(
    pod_rx: &mut watch::Receiver<Pod>,
    ctl: &mut watch::Receiver<Control>,
    d: Duration,
) -> Option<Ending> {
    tokio::select! {
        _ = tokio::time::sleep(d) => ending_of(&pod_rx.borrow(), *ctl.borrow()),
        e = wait_for_end(pod_rx, ctl) => Some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    #[test]
    fn host_ports_become_port_mappings() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    ports: Some(vec![
                        ContainerPort {
                            container_port: 80,
                            host_port: Some(8080),
                            ..Default::default()
                        },
                        ContainerPort {
                            container_port: 53,
                            protocol: Some("UDP".into()),
                            host_port: Some(5353),
                            ..Default::default()
                        },
                        ContainerPort {
                            container_port: 9090,
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let caps = capability_args(&pod);
        assert_eq!(
            caps["portMappings"],
            json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": ""},
            ])
        );
        assert!(capability_args(&Pod::default()).is_empty());
    }

    #[test]
    fn deletion_grace_comes_from_the_object() {
        let mut pod = Pod::default();
        assert_eq!(grace_of(&pod), Duration::from_secs(30));
        pod.spec = Some(PodSpec {
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        });
        assert_eq!(grace_of(&pod), Duration::from_secs(5));
        pod.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(grace_of(&pod), Duration::ZERO);
        assert!(ending_of(&pod, Control::Run).is_none());
        assert!(matches!(
            ending_of(&pod, Control::Shutdown),
            Some(Ending::Shutdown)
        ));
    }
}
