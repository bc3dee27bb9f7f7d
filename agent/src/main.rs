//! The `weft` binary: the node agent, the CNI plugin (when `CNI_COMMAND` is set) and the CLI.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ipnetwork::Ipv4Network;

use weft::agent::{server, Agent};
use weft::cli::{self, Output};
use weft::datapath::Datapath;
use weft::ipam::Store;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: Kubernetes pod networking on eBPF (agent, CNI plugin, CLI).\n\
    Run with CNI_COMMAND set, weft is the CNI plugin."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the node agent: datapath owner, IPAM, local socket.
    Agent(AgentArgs),
    /// Show the node's endpoints and drop counters (asks the agent).
    Status {
        #[arg(long, default_value = weft::api::DEFAULT_SOCKET, env = "WEFT_SOCKET")]
        socket: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Service frontends and backends in the datapath.
    Service {
        #[command(subcommand)]
        cmd: ListCmd,
    },
    /// Connection tracking of translated flows.
    Ct {
        #[command(subcommand)]
        cmd: ListCmd,
    },
}

#[derive(Subcommand)]
enum ListCmd {
    /// List them (asks the agent).
    List {
        #[arg(long, default_value = weft::api::DEFAULT_SOCKET, env = "WEFT_SOCKET")]
        socket: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(clap::Args)]
struct AgentArgs {
    /// bpffs directory for this node's pinned maps, programs and links.
    #[arg(long, default_value = "/sys/fs/bpf/weft")]
    pin_dir: PathBuf,
    /// Unix socket the CNI plugin and the CLI talk to.
    #[arg(long, default_value = weft::api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Persistent state (IPAM store under `ipam/`, optional `pod-cidr` file).
    #[arg(long, default_value = "/var/lib/weft")]
    state_dir: PathBuf,
    /// The node's pod CIDR; default: the content of `<state-dir>/pod-cidr` if present.
    #[arg(long)]
    pod_cidr: Option<Ipv4Network>,
}

fn main() {
    if std::env::var_os("CNI_COMMAND").is_some() {
        std::process::exit(weft::cni::main());
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Agent(args) => run_agent(args),
        Cmd::Status { socket, output } => cli::status::run(&socket, output),
        Cmd::Service {
            cmd: ListCmd::List { socket, output },
        } => cli::service::run(&socket, output),
        Cmd::Ct {
            cmd: ListCmd::List { socket, output },
        } => cli::ct::run(&socket, output),
    };
    if let Err(e) = result {
        eprintln!("weft: {e:#}");
        std::process::exit(1);
    }
}

fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cidr = weft::agent::config::resolve_pod_cidr(args.pod_cidr, &args.state_dir)?;
    let store = Store::open(args.state_dir.join("ipam")).context("opening the IPAM store")?;
    let pin_dir = args.pin_dir.clone();
    let handle = server::AgentHandle::spawn(move || {
        let datapath = Datapath::open(&pin_dir)
            .with_context(|| format!("opening the datapath in {}", pin_dir.display()))?;
        let mut agent = Agent::new(store, datapath, cidr);
        agent.resume().context("resuming registered endpoints")?;
        Ok(agent)
    })?;
    tracing::info!(pod_cidr = ?cidr, pin_dir = %args.pin_dir.display(), "agent started");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = server::bind(&args.socket).await?;
        server::serve(listener, args.socket.clone(), handle).await
    })
}
