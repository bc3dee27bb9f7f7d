//! One container: its launch (catalogue program, argv, env, mounts), its process inside the
//! pod's namespaces, readiness and liveness probing, and restarts per restartPolicy with kubelet's back-off.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;
use tokio::sync::{mpsc, watch};

use super::catalogue::{self, Program, Roots};
use super::image::LoadedImage;
use super::rootfs::ContainerRoot;
use super::events::Events;
use super::nsexec::{self, ChildSetup};
use super::probe::{self, Action, Readiness};
use super::status::{now, ContainerView, State};
use super::volumes::{self, MountPlan, Volumes};
use super::{env, nginx};

/// kubelet's container restart back-off: 10 s doubling to 5 min, reset after 10 min of running.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// What every container of a pod shares.
pub struct PodEnv {
    pub client: kube::Client,
    pub events: Events,
    pub pod: Pod,
    pub dir: PathBuf,
    pub roots: Roots,
    pub pause_pid: u32,
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Ipv4Addr,
    pub volumes: Volumes,
    pub service_env: Vec<(String, String)>,
    /// Where created mount points are noted (see `volumes::create_mount_point`).
    pub mount_point_registry: PathBuf,
}

impl PodEnv {
    fn namespace(&self) -> String {
        self.pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    fn pod_name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    /// A command that runs in the pod's namespaces (those of its sandbox process). With
    /// `running`, the pid of the container's process, a container with its own file system is
    /// entered rather than given a new one (exec probes).
    fn command(
        &self,
        launch: &Launch,
        running: Option<u32>,
    ) -> std::io::Result<(tokio::process::Command, Arc<ChildSetup>)> {
        for d in &launch.plan.mkdirs {
            volumes::create_mount_point(d, &self.mount_point_registry)?;
        }
        let ns = |kind: &str| PathBuf::from(format!("/proc/{}/ns/{kind}", self.pause_pid));
        let mut setup = ChildSetup::default()
            .enter(&ns("mnt"), libc::CLONE_NEWNS)?
            .enter(&ns("net"), libc::CLONE_NEWNET)?
            .enter(&ns("uts"), libc::CLONE_NEWUTS)?;
        setup = match (&launch.root, running) {
            (Some(root), Some(pid)) => root.join(setup, pid)?,
            (Some(root), None) => root.setup(setup.new_mount_ns(), &launch.plan.binds)?,
            (None, _) => {
                setup = setup.new_mount_ns();
                for (src, dst) in &launch.plan.binds {
                    setup = setup.bind(src, dst)?;
                }
                setup
            }
        };
        setup = setup
            .die_with_parent()
            .workdir(launch.workdir.as_deref().unwrap_or(Path::new("/")))?;
        let mut cmd = tokio::process::Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null());
        let guard = setup.install(&mut cmd);
        Ok((cmd, guard))
    }
}

/// Everything needed to start the container's process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: Program,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub plan: MountPlan,
    pub workdir: Option<PathBuf>,
    /// The container's own file system, for an image loaded from an archive.
    pub root: Option<ContainerRoot>,
}

/// Why a container cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Image(#[from] catalogue::UnknownImage),
    #[error("{0}")]
    Config(String),
}

/// Builds the launch of a container (kubelet's generateContainerConfig).
pub async fn prepare(p: &PodEnv, c: &Container) -> Result<Launch, PrepareError> {
    let image = c.image.clone().unwrap_or_default();
    if let Some(loaded) = p.roots.loaded_image(&image) {
        return prepare_loaded(p, c, loaded).await;
    }
    let program = catalogue::lookup(&image)?;
    let cfg = |e: String| PrepareError::Config(e);
    let base = vec![("PATH".to_string(), program.path_env(&p.roots))];
    let envs = container_env(p, c, base).await.map_err(cfg)?;
    let expand = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| env::expand(s, &envs)).collect()
    };
    let mut argv = program
        .argv(&expand(&c.command), &expand(&c.args), &p.roots)
        .map_err(|e| cfg(e.to_string()))?;
    program.fix_pause_args(&mut argv);
    if program == Program::Nginx {
        let prefix = p.dir.join(format!("{}-nginx", c.name));
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"] {
            std::fs::create_dir_all(prefix.join(sub))
                .map_err(|e| cfg(format!("nginx prefix: {e}")))?;
        }
        let ports: Vec<u16> = c
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .map(|p| p.container_port as u16)
            .collect();
        std::fs::write(prefix.join("nginx.conf"), nginx::render(&prefix, &ports))
            .map_err(|e| cfg(format!("nginx.conf: {e}")))?;
        argv = nginx::argv(argv, &prefix);
    }
    let plan = volumes::plan_mounts(
        c.volume_mounts.as_deref().unwrap_or_default(),
        &p.volumes,
        |path| path.exists(),
    )
    .map_err(|e| cfg(e.to_string()))?;
    let argv: Vec<String> = argv
        .iter()
        .map(|a| volumes::rewrite_arg(a, &plan.rewrites))
        .collect();
    let workdir = c
        .working_dir
        .as_deref()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .or_else(|| program.workdir(&p.roots));
    Ok(Launch {
        program,
        argv,
        env: envs,
        plan,
        workdir,
        root: None,
    })
}

/// The launch of a container whose image was loaded from an archive: the image's ENTRYPOINT,
/// CMD, Env and WorkingDir, its programs found in its own file system, every volume mounted
/// at its mountPath inside that file system.
async fn prepare_loaded(p: &PodEnv, c: &Container, image: &LoadedImage) -> Result<Launch, PrepareError> {
    let cfg = |e: String| PrepareError::Config(e);
    let mut base = image.env.clone();
    if !base.iter().any(|(k, _)| k == "PATH") {
        base.push(("PATH".into(), image.path_env()));
    }
    let envs = container_env(p, c, base).await.map_err(cfg)?;
    let expand = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| env::expand(s, &envs)).collect()
    };
    let argv = image.argv(&expand(&c.command), &expand(&c.args)).map_err(|e| cfg(e.to_string()))?;
    // Mount points are made inside the container's own file system: every mount is a bind.
    let plan = volumes::plan_mounts(c.volume_mounts.as_deref().unwrap_or_default(), &p.volumes, |_| true)
        .map_err(|e| cfg(e.to_string()))?;
    let workdir = c.working_dir.clone().or_else(|| image.workdir.clone()).map(PathBuf::from);
    Ok(Launch {
        program: Program::Loaded,
        argv,
        env: envs,
        plan,
        workdir,
        root: Some(ContainerRoot { image: image.rootfs.clone(), dir: p.dir.join(format!("{}-root", c.name)) }),
    })
}

/// The container's environment over `base` (its image's: PATH at least).
async fn container_env(
    p: &PodEnv,
    c: &Container,
    base: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let ns = p.namespace();
    let mut out: Vec<(String, String)> = base;
    out.extend([
        (
            "HOSTNAME".into(),
            p.pod
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| p.pod_name()),
        ),
        ("HOME".into(), "/root".into()),
    ]);
    let links = p
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    out.extend(
        p.service_env
            .iter()
            .filter(|(k, _)| links || k.starts_with("KUBERNETES_"))
            .cloned(),
    );
    let pod_ip = p.pod_ip.map(|ip| ip.to_string());
    let host_ip = p.host_ip.to_string();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let api: Api<ConfigMap> = Api::namespaced(p.client.clone(), &ns);
            match api.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(cm) => out.extend(
                    cm.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (format!("{prefix}{k}"), v)),
                ),
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            let api: Api<Secret> = Api::namespaced(p.client.clone(), &ns);
            match api.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(s) => out.extend(s.data.unwrap_or_default().into_iter().map(|(k, v)| {
                    (
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v.0).into_owned(),
                    )
                })),
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            env::expand(v, &out)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                env::field_ref(&p.pod, &f.field_path, pod_ip.as_deref(), &host_ip).ok_or_else(
                    || format!("env {}: unsupported fieldRef {:?}", e.name, f.field_path),
                )?
            } else if let Some(k) = &from.config_map_key_ref {
                let api: Api<ConfigMap> = Api::namespaced(p.client.clone(), &ns);
                let cm = api.get_opt(&k.name).await.map_err(|x| x.to_string())?;
                match cm
                    .and_then(|cm| cm.data)
                    .and_then(|d| d.get(&k.key).cloned())
                {
                    Some(v) => v,
                    None if k.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "env {}: configmap {:?} key {:?} not found",
                            e.name, k.name, k.key
                        ))
                    }
                }
            } else if let Some(k) = &from.secret_key_ref {
                let api: Api<Secret> = Api::namespaced(p.client.clone(), &ns);
                let s = api.get_opt(&k.name).await.map_err(|x| x.to_string())?;
                match s.and_then(|s| s.data).and_then(|d| d.get(&k.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if k.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "env {}: secret {:?} key {:?} not found",
                            e.name, k.name, k.key
                        ))
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        out.push((e.name.clone(), value));
    }
    Ok(out)
}

/// What a container task tells its pod worker.
#[derive(Debug, Clone)]
pub struct Update {
    pub idx: usize,
    pub view: ContainerView,
    pub pid: Option<u32>,
}

/// How a container should be restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: Option<&str>) -> RestartPolicy {
        match s {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// Back-off before the `n`-th restart (n = 1 is the first): kubelet restarts at once the first
/// time, then waits 10 s, 20 s, … up to 5 min.
pub fn backoff(restarts_so_far: u32) -> Duration {
    if restarts_so_far == 0 {
        return Duration::ZERO;
    }
    let shift = (restarts_so_far - 1).min(16);
    (BACKOFF_START * 2u32.pow(shift)).min(BACKOFF_MAX)
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The supervising task of one container; returns when the container is done for good or
/// when `stop` carries a grace period.
pub async fn supervise(
    p: Arc<PodEnv>,
    idx: usize,
    c: Container,
    policy: RestartPolicy,
    tx: mpsc::UnboundedSender<Update>,
    stop: watch::Receiver<Option<Duration>>,
) {
    let image = c.image.clone().unwrap_or_default();
    let mut s = Supervisor {
        view: ContainerView::new(&c.name, &image),
        log_path: p.dir.join(format!("{}.log", c.name)),
        image,
        crashes: 0,
        p,
        idx,
        c,
        policy,
        tx,
        stop,
    };
    loop {
        if s.stop.borrow().is_some() {
            break;
        }
        match s.run_instance().await {
            Next::Again => continue,
            Next::Stopped => break,
            Next::Finished => return,
        }
    }
    s.finish_stopped();
}

/// What the supervising loop does after one attempt at running the container.
enum Next {
    /// Start (or try) again.
    Again,
    /// A stop arrived while the container was not running.
    Stopped,
    /// The container is done for good and its final status was sent.
    Finished,
}

/// One container's supervision: what it runs, what the pod worker last heard, its crashes.
struct Supervisor {
    p: Arc<PodEnv>,
    idx: usize,
    c: Container,
    policy: RestartPolicy,
    tx: mpsc::UnboundedSender<Update>,
    stop: watch::Receiver<Option<Duration>>,
    image: String,
    view: ContainerView,
    log_path: PathBuf,
    /// Crashes since the back-off was last reset.
    crashes: u32,
}

/// When an instance of the container started.
struct Started {
    pid: u32,
    at: String,
    instant: Instant,
}

impl Supervisor {
    /// Sends the current view to the pod worker.
    fn send(&self, pid: Option<u32>) {
        let _ = self.tx.send(Update {
            idx: self.idx,
            view: self.view.clone(),
            pid,
        });
    }

    /// `Again` after `d`, or `Stopped` when a stop arrives first.
    async fn retry_after(&mut self, d: Duration) -> Next {
        if wait_or_stop(&mut self.stop, d).await {
            Next::Stopped
        } else {
            Next::Again
        }
    }

    /// One container instance, from its launch to its exit and the restart decision.
    async fn run_instance(&mut self) -> Next {
        let launch = match self.prepare_launch().await {
            Ok(l) => l,
            Err(next) => return next,
        };
        self.note_pulled(&launch);
        let log = match self.open_log().await {
            Ok(f) => f,
            Err(next) => return next,
        };
        let mut child = match self.spawn(&launch, log).await {
            Ok(ch) => ch,
            Err(next) => return next,
        };
        let started = self.mark_started(child.id().unwrap_or_default(), &launch);
        let exit = self.wait_exit(&mut child, started.pid, &launch).await;
        let (code, stopping) = self.end_instance(exit, &mut child, started.pid).await;
        self.after_exit(code, stopping, started).await
    }

    /// Builds the launch; an image or config error is reported and says what comes next.
    async fn prepare_launch(&mut self) -> Result<Launch, Next> {
        match prepare(&self.p, &self.c).await {
            Ok(l) => Ok(l),
            Err(PrepareError::Image(e)) => Err(self.image_pull_failed(e).await),
            Err(PrepareError::Config(msg)) => {
                self.view.state = State::waiting("CreateContainerConfigError", Some(msg.clone()));
                self.send(None);
                self.p
                    .events
                    .warning(&self.p.pod, "Failed", &format!("Error: {msg}"));
                Err(self.retry_after(BACKOFF_START).await)
            }
        }
    }

    /// An image the catalogue lacks: ErrImagePull, then ImagePullBackOff until stopped.
    async fn image_pull_failed(&mut self, e: catalogue::UnknownImage) -> Next {
        let (p, image) = (&self.p, &self.image);
        self.view.state = State::waiting("ErrImagePull", Some(e.to_string()));
        self.send(None);
        p.events.warning(
            &p.pod,
            "Failed",
            &format!("Failed to pull image {image:?}: {e}"),
        );
        p.events.warning(&p.pod, "Failed", "Error: ErrImagePull");
        if wait_or_stop(&mut self.stop, BACKOFF_START).await {
            return Next::Stopped;
        }
        self.view.state = State::waiting(
            "ImagePullBackOff",
            Some(format!("Back-off pulling image {image:?}: {e}")),
        );
        self.send(None);
        p.events.normal(
            &p.pod,
            "BackOff",
            &format!("Back-off pulling image {image:?}"),
        );
        let _ = self.stop.wait_for(Option::is_some).await;
        Next::Stopped
    }

    /// The Pulled event, for the first instance only.
    fn note_pulled(&self, launch: &Launch) {
        if self.crashes == 0 && self.view.restart_count == 0 {
            self.p.events.normal(
                &self.p.pod,
                "Pulled",
                &format!(
                    "Container image {:?} already present on machine (lab catalogue: {:?})",
                    self.image, launch.program
                ),
            );
        }
    }

    /// Opens this instance's fresh log; the last one stays for `kubectl logs -p`.
    async fn open_log(&mut self) -> Result<std::fs::File, Next> {
        if self.log_path.exists() {
            let previous = self.p.dir.join(format!("{}.previous.log", self.c.name));
            let _ = std::fs::rename(&self.log_path, previous);
        }
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path);
        match opened {
            Ok(f) => Ok(f),
            Err(e) => {
                self.view.state = State::waiting(
                    "RunContainerError",
                    Some(format!("opening {}: {e}", self.log_path.display())),
                );
                self.send(None);
                Err(self.retry_after(BACKOFF_START).await)
            }
        }
    }

    /// Spawns the process in the pod's namespaces, its output to `log`; a failure counts as a
    /// crash and backs off.
    async fn spawn(
        &mut self,
        launch: &Launch,
        log: std::fs::File,
    ) -> Result<tokio::process::Child, Next> {
        let spawned = self.p.command(launch, None).and_then(|(mut cmd, guard)| {
            cmd.stdout(log.try_clone()?).stderr(log);
            let child = cmd.spawn();
            drop(guard);
            child
        });
        match spawned {
            Ok(ch) => Ok(ch),
            Err(e) => {
                let msg = format!("failed to start {:?}: {e}", launch.argv);
                self.view.state = State::waiting("RunContainerError", Some(msg.clone()));
                self.send(None);
                self.p
                    .events
                    .warning(&self.p.pod, "Failed", &format!("Error: {msg}"));
                self.crashes += 1;
                Err(self.retry_after(backoff(self.crashes)).await)
            }
        }
    }

    /// Reports the instance running (Created and Started events).
    fn mark_started(&mut self, pid: u32, launch: &Launch) -> Started {
        let (p, c) = (&self.p, &self.c);
        // restartCount counts containers created after the first, as kubelet computes it.
        if self.view.last_terminated.is_some() {
            self.view.restart_count += 1;
        }
        let started = Started {
            pid,
            at: now(),
            instant: Instant::now(),
        };
        self.view.container_id = Some(super::sandbox::new_id());
        self.view.state = State::Running {
            started_at: started.at.clone(),
        };
        self.view.ready = c.readiness_probe.is_none();
        self.send(Some(pid));
        p.events
            .normal(&p.pod, "Created", &format!("Created container {}", c.name));
        p.events
            .normal(&p.pod, "Started", &format!("Started container {}", c.name));
        tracing::info!(pod = %format!("{}/{}", p.namespace(), p.pod_name()), container = c.name, pid, argv = ?launch.argv, "container started");
        started
    }

    /// Waits for the process to exit, a stop, or a failed liveness probe, reporting readiness
    /// changes meanwhile.
    async fn wait_exit(
        &mut self,
        child: &mut tokio::process::Child,
        pid: u32,
        launch: &Launch,
    ) -> Exit {
        let mut probes = Probes::new(&self.c);
        loop {
            let next = probes.next();
            let probe_sleep = async {
                match next {
                    Some((_, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = child.wait() => return Exit::Exited(status),
                _ = self.stop.changed() => {
                    if let Some(grace) = *self.stop.borrow() {
                        return Exit::Stop(grace);
                    }
                }
                _ = probe_sleep => {
                    let i = next.expect("a probe is scheduled").0;
                    match probes.run_due(i, &self.p, &self.c, launch, pid).await {
                        ProbeOutcome::Ready(ready) => {
                            self.view.ready = ready;
                            self.send(Some(pid));
                        }
                        ProbeOutcome::Unhealthy => return Exit::Unhealthy,
                        ProbeOutcome::Unchanged => {}
                    }
                }
            }
        }
    }

    /// Ends the instance for `exit`: its exit code, and whether the pod is stopping it.
    async fn end_instance(
        &self,
        exit: Exit,
        child: &mut tokio::process::Child,
        pid: u32,
    ) -> (i32, bool) {
        let (p, c) = (&self.p, &self.c);
        match exit {
            Exit::Exited(status) => {
                // The runtime kills whatever the main process left behind in the container.
                nsexec::kill_group(pid, libc::SIGKILL);
                (status.map(exit_code).unwrap_or(-1), false)
            }
            Exit::Stop(grace) => {
                p.events
                    .normal(&p.pod, "Killing", &format!("Stopping container {}", c.name));
                (terminate(child, pid, grace).await, true)
            }
            Exit::Unhealthy => {
                p.events.normal(
                    &p.pod,
                    "Killing",
                    &format!(
                        "Container {} failed liveness probe, will be restarted",
                        c.name
                    ),
                );
                (terminate(child, pid, pod_grace(&p.pod)).await, false)
            }
        }
    }

    /// After an exit with `code`: the final status when the container is not restarted, else
    /// the back-off before the next instance.
    async fn after_exit(&mut self, code: i32, stopping: bool, started: Started) -> Next {
        let terminated = terminated_state(code, started.at);
        tracing::info!(pod = %format!("{}/{}", self.p.namespace(), self.p.pod_name()), container = self.c.name, code, "container exited");
        self.view.ready = false;
        if stopping || !self.policy.restarts(code) {
            self.view.state = terminated;
            self.view.done = true;
            self.send(None);
            return Next::Finished;
        }
        if started.instant.elapsed() >= BACKOFF_RESET {
            self.crashes = 0;
        }
        let wait = backoff(self.crashes);
        self.crashes += 1;
        self.view.last_terminated = Some(terminated);
        if wait.is_zero() {
            return Next::Again;
        }
        self.crash_loop_back_off(wait).await
    }

    /// Reports CrashLoopBackOff and waits `wait` before the restart.
    async fn crash_loop_back_off(&mut self, wait: Duration) -> Next {
        let (p, c) = (&self.p, &self.c);
        self.view.state = State::waiting(
            "CrashLoopBackOff",
            Some(format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                wait.as_secs(),
                c.name,
                p.pod_name(),
                p.namespace(),
                p.pod.metadata.uid.clone().unwrap_or_default()
            )),
        );
        self.send(None);
        p.events.warning(
            &p.pod,
            "BackOff",
            &format!("Back-off restarting failed container {}", c.name),
        );
        self.retry_after(wait).await
    }

    /// The final status when stopped while not running.
    fn finish_stopped(&mut self) {
        if !matches!(self.view.state, State::Terminated { .. }) {
            self.view.state = State::Terminated {
                exit_code: 0,
                reason: "Completed".into(),
                message: None,
                started_at: now(),
                finished_at: now(),
            };
        }
        self.view.done = true;
        self.view.ready = false;
        self.send(None);
    }
}

/// A terminated state with `code`, finishing now.
fn terminated_state(code: i32, started_at: String) -> State {
    State::Terminated {
        exit_code: code,
        reason: if code == 0 {
            "Completed".into()
        } else {
            "Error".into()
        },
        message: None,
        started_at,
        finished_at: now(),
    }
}

/// One probe on its own schedule.
struct ScheduledProbe {
    kind: ProbeKind,
    spec: k8s_openapi::api::core::v1::Probe,
    state: Readiness,
    /// Probes run so far.
    index: u64,
    /// When the next one is due.
    at: tokio::time::Instant,
}

/// What a probe run changed.
enum ProbeOutcome {
    Unchanged,
    /// Readiness flipped to this.
    Ready(bool),
    /// Liveness flipped to failing.
    Unhealthy,
}

/// A container's probes: readiness starts "not ready", liveness "healthy"; each runs on its
/// own schedule.
struct Probes(Vec<ScheduledProbe>);

impl Probes {
    /// The container's probes, each first due after its initial delay.
    fn new(c: &Container) -> Probes {
        let probes = [
            (ProbeKind::Readiness, c.readiness_probe.clone()),
            (ProbeKind::Liveness, c.liveness_probe.clone()),
        ]
        .into_iter()
        .filter_map(|(kind, spec)| {
            let spec = spec?;
            let timing = probe::Timing::from_probe(&spec);
            let state = match kind {
                ProbeKind::Readiness => Readiness::new(timing),
                ProbeKind::Liveness => Readiness::healthy(timing),
            };
            let at = tokio::time::Instant::now() + state.delay_before(0);
            Some(ScheduledProbe {
                kind,
                spec,
                state,
                index: 0,
                at,
            })
        })
        .collect();
        Probes(probes)
    }

    /// The probe due first, and when.
    fn next(&self) -> Option<(usize, tokio::time::Instant)> {
        self.0
            .iter()
            .enumerate()
            .min_by_key(|(_, pr)| pr.at)
            .map(|(i, pr)| (i, pr.at))
    }

    /// Runs probe `i` (reporting a failure as Unhealthy), records its result and schedules
    /// the next run.
    async fn run_due(
        &mut self,
        i: usize,
        p: &PodEnv,
        c: &Container,
        launch: &Launch,
        pid: u32,
    ) -> ProbeOutcome {
        let pr = &mut self.0[i];
        let result = run_probe(p, c, &pr.spec, launch, pid, pr.state.timing.timeout).await;
        if let Err(why) = &result {
            let kind = pr.kind;
            p.events.warning(
                &p.pod,
                "Unhealthy",
                &format!("{kind:?} probe failed: {why}"),
            );
        }
        let flipped = pr.state.record(result.is_ok());
        pr.index += 1;
        pr.at = tokio::time::Instant::now() + pr.state.delay_before(pr.index);
        match pr.kind {
            ProbeKind::Readiness if flipped => ProbeOutcome::Ready(pr.state.ready()),
            ProbeKind::Liveness if flipped && !pr.state.ready() => ProbeOutcome::Unhealthy,
            _ => ProbeOutcome::Unchanged,
        }
    }
}

/// Which probe a schedule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeKind {
    Readiness,
    Liveness,
}

/// Why a running container's supervision ended.
enum Exit {
    Exited(std::io::Result<std::process::ExitStatus>),
    Stop(Duration),
    Unhealthy,
}

/// The pod's terminationGracePeriodSeconds (default 30 s).
fn pod_grace(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

/// Sleeps for `d` unless a stop arrives first (true = stop).
async fn wait_or_stop(stop: &mut watch::Receiver<Option<Duration>>, d: Duration) -> bool {
    let slept = tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(Option::is_some) => false,
    };
    !slept || stop.borrow().is_some()
}

/// SIGTERM to the container's process group, SIGKILL after the grace period.
async fn terminate(child: &mut tokio::process::Child, pid: u32, grace: Duration) -> i32 {
    nsexec::kill_group(pid, libc::SIGTERM);
    let code = match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => exit_code(status),
        _ => {
            nsexec::kill_group(pid, libc::SIGKILL);
            child.wait().await.map(exit_code).unwrap_or(137)
        }
    };
    nsexec::kill_group(pid, libc::SIGKILL);
    code
}

async fn run_probe(
    p: &PodEnv,
    c: &Container,
    spec: &k8s_openapi::api::core::v1::Probe,
    launch: &Launch,
    pid: u32,
    timeout: Duration,
) -> Result<(), String> {
    let target: IpAddr = IpAddr::V4(p.pod_ip.unwrap_or(p.host_ip));
    match probe::action(spec, c, target) {
        Ok(Action::Tcp { addr }) => probe::tcp(addr, timeout).await,
        Ok(Action::Http {
            addr,
            host_header,
            path,
            headers,
            https,
        }) => probe::http(addr, &host_header, &path, &headers, https, timeout).await,
        Ok(Action::Exec { command }) => {
            let Some(first) = command.first() else {
                return Err("exec probe has no command".into());
            };
            let mut l = launch.clone();
            l.argv = command.clone();
            let first = std::slice::from_ref(first);
            let found = match p.roots.loaded_image(c.image.as_deref().unwrap_or_default()) {
                Some(image) => image.argv(first, &[]),
                None => launch.program.argv(first, &[], &p.roots),
            };
            l.argv[0] = found.map(|a| a[0].clone()).unwrap_or_else(|_| first[0].clone());
            // A container with its own file system is entered (its process `pid`), not remade.
            let (mut cmd, guard) = p.command(&l, Some(pid)).map_err(|e| e.to_string())?;
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let child = cmd.spawn();
            drop(guard);
            let mut child = child.map_err(|e| format!("exec {command:?}: {e}"))?;
            match tokio::time::timeout(timeout, child.wait()).await {
                Ok(Ok(s)) if s.success() => Ok(()),
                Ok(Ok(s)) => Err(format!("command {command:?} exited with {}", exit_code(s))),
                Ok(Err(e)) => Err(format!("command {command:?}: {e}")),
                Err(_) => {
                    if let Some(pid) = child.id() {
                        nsexec::kill_group(pid, libc::SIGKILL);
                    }
                    Err(format!("command {command:?} timed out"))
                }
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy() {
        assert!(RestartPolicy::parse(None).restarts(0));
        assert!(RestartPolicy::parse(Some("OnFailure")).restarts(1));
        assert!(!RestartPolicy::parse(Some("OnFailure")).restarts(0));
        assert!(!RestartPolicy::parse(Some("Never")).restarts(1));
    }

    #[test]
    fn backoff_is_immediate_then_doubles_to_five_minutes() {
        let got: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(100), BACKOFF_MAX);
    }
}
