//! `weft-lab`: builds upstream Kubernetes parts, brings up the lab topology and control plane,
//! and runs the per-node kubelet stand-in.


use weft_lab::{conformance, down, kubectl, kubelet, nodeops, podcmd, preflight, shellenv, spec, status, up, upstream};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use weft_lab::spec::{Cni, LabSpec, Netpol, Proxy, Routing, Topology};
use weft_lab::state::StateDir;

#[derive(Parser)]
#[command(name = "weft-lab", about = "A real Kubernetes cluster on one machine, nodes as network namespaces")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring the lab up: switch, control plane, nodes, the CNI (weft's DaemonSet), kube-proxy
    /// if asked for, CoreDNS.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Pod networking: weft (the default) or the reference bridge plugin (the baseline).
        #[arg(long, value_enum, default_value_t = Cni::Weft)]
        cni: Cni,
        /// kube-proxy's mode, or none (the default: weft replaces it).
        #[arg(long, value_enum, default_value_t = Proxy::None)]
        proxy: Proxy,
        /// flat: all nodes on one subnet; routed: each node on its own subnet behind the
        /// switch as a router (needs --cni weft --routing vxlan).
        #[arg(long, value_enum, default_value_t = Topology::Flat)]
        topology: Topology,
        /// weft's routing mode (default: native on a flat topology, vxlan on a routed one).
        #[arg(long, value_enum)]
        routing: Option<Routing>,
        /// A NetworkPolicy engine beside --cni bridge: kube-router's firewall controller on
        /// every node, the reference the policy suite runs against (default: none).
        #[arg(long, value_enum, default_value_t = Netpol::None)]
        netpol: Netpol,
        /// An image archive (OCI, as `cargo xtask image` writes) to load onto every node, as
        /// `kind load image-archive` does; repeatable. With --cni weft, weft's own image comes
        /// from target/image/ unless one of these holds it.
        #[arg(long = "image", value_name = "ARCHIVE")]
        images: Vec<std::path::PathBuf>,
        /// On failure leave the half-made lab up for inspection (`down` removes it).
        #[arg(long)]
        keep_on_failure: bool,
    },
    /// Nodes, pod CIDRs, pods and their IPs, services and their endpoints.
    Status {
        /// `table` or `json`.
        #[arg(short = 'o', long = "output", default_value = "table")]
        output: OutputFormat,
    },
    /// Shell lines for plain `kubectl` against the lab: `eval "$(weft-lab env)"` sets
    /// KUBECONFIG to the admin kubeconfig and puts the lab's kubectl first on PATH.
    Env,
    /// kubectl with the lab's admin kubeconfig (runs inside the lab's network).
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a command inside a pod without the API server (a shortcut for `kubectl exec`):
    /// `exec NS/POD [-c CONTAINER] -- CMD…`.
    Exec {
        pod: String,
        /// The container (default: the pod's first).
        #[arg(short, long)]
        container: Option<String>,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print a pod's log.
    Logs { pod: String },
    /// Run a command on a lab host, as ssh would: `node-exec node-1 -- ip route`
    /// (hosts: node-N, cp, outside, switch).
    NodeExec {
        host: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Add a node (`node add`) or remove one (`node remove node-N`) while the lab runs.
    Node {
        #[command(subcommand)]
        op: NodeOp,
    },
    /// Stop or start kube-apiserver while the rest of the lab runs.
    Apiserver {
        #[arg(value_enum)]
        op: ApiserverOp,
    },
    /// Restart, stop or start one node's kube-proxy. `restart` and `start` return once it
    /// answers /healthz (after its first full sync); `stop` also removes its rules
    /// (`kube-proxy --cleanup`), as a switch to weft's Services does.
    KubeProxy {
        #[arg(value_enum)]
        op: KubeProxyOp,
        node: String,
        /// `start` only: iptables or nftables (default: the lab's `--proxy`).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Remove everything the lab made (works on a half-up lab too).
    Down,
    /// Build (or check) the upstream binaries without starting a lab.
    Build(upstream::BuildArgs),
    /// Run Kubernetes' e2e network conformance tests against the running lab.
    Conformance(conformance::Args),
    /// Run one node's kubelet stand-in (started by `up` inside the node's namespace).
    #[command(hide = true)]
    Kubelet {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeOp {
    /// Add the next node (its kubelet, kube-proxy and, with weft, its agent).
    Add,
    /// Remove a node: its pods stop, its Node object and namespace go.
    Remove { name: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ApiserverOp {
    Stop,
    Start,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KubeProxyOp {
    Restart,
    Stop,
    Start,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weft-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    let state = StateDir::from_env();
    match cmd {
        Cmd::Up { nodes, cni, proxy, topology, routing, netpol, images, keep_on_failure } => {
            let spec = LabSpec::new(nodes, cni, proxy)?.with_network(topology, routing)?.with_netpol(netpol)?;
            up::run(&state, spec, &images, keep_on_failure)?
        }
        Cmd::Status { output } => {
            let rec = state.load_record()?;
            status::print(&state, &rec, matches!(output, OutputFormat::Json))?;
        }
        Cmd::Env => shellenv::print(&state)?,
        Cmd::Kubectl { args } => {
            preflight::require_root()?;
            let rec = state.load_record()?;
            let status = kubectl::command(&state, &rec).args(&args).status().context("running kubectl")?;
            return Ok(exit_code(status));
        }
        Cmd::Exec { pod, container, cmd } => {
            preflight::require_root()?;
            let rec = state.load_record()?;
            return Ok(exit_code(podcmd::exec(&state, &rec, &pod, container.as_deref(), &cmd)?));
        }
        Cmd::NodeExec { host, cmd } => {
            preflight::require_root()?;
            let rec = state.load_record()?;
            let netns = spec::host_netns(&rec.spec, &host)?;
            let status = podcmd::on_host(&state, &rec, &host, &netns, &cmd)?
                .status()
                .context("running the command")?;
            return Ok(exit_code(status));
        }
        Cmd::Node { op } => {
            preflight::require_root()?;
            match op {
                NodeOp::Add => {
                    nodeops::add(&state)?;
                }
                NodeOp::Remove { name } => nodeops::remove(&state, &name)?,
            }
        }
        Cmd::Apiserver { op } => {
            preflight::require_root()?;
            match op {
                ApiserverOp::Stop => nodeops::apiserver_stop(&state)?,
                ApiserverOp::Start => nodeops::apiserver_start(&state)?,
            }
        }
        Cmd::KubeProxy { op, node, mode } => {
            preflight::require_root()?;
            match (op, mode.as_deref()) {
                (KubeProxyOp::Start, Some(m)) if !["iptables", "nftables"].contains(&m) => {
                    anyhow::bail!("--mode {m}: iptables or nftables")
                }
                (KubeProxyOp::Start, mode) => nodeops::kube_proxy_start(&state, &node, mode)?,
                (_, Some(_)) => anyhow::bail!("--mode is for `kube-proxy start`"),
                (KubeProxyOp::Restart, None) => nodeops::kube_proxy_restart(&state, &node)?,
                (KubeProxyOp::Stop, None) => nodeops::kube_proxy_stop(&state, &node)?,
            }
        }
        Cmd::Logs { pod } => {
            let rec = state.load_record()?;
            podcmd::logs(&state, &rec, &pod)?;
        }
        Cmd::Down => {
            preflight::require_root()?;
            down::run(&state)?;
        }
        Cmd::Build(args) => upstream::build_cmd(&args)?,
        Cmd::Conformance(args) => {
            if !conformance::run(&state, &args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Kubelet { config } => {
            let text = std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?;
            let cfg: kubelet::Config = serde_json::from_slice(&text)
                .with_context(|| format!("parsing kubelet config {}", config.display()))?;
            tokio::runtime::Runtime::new()?.block_on(kubelet::run(cfg))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The child's exit code, or 128+signal as shells report it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
