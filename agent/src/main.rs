//! The `weft` binary: the node agent, the CNI plugin (when `CNI_COMMAND` is set) and the CLI.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use weft::agent::options::{self, AgentOptions};
use weft::cli::{self, Output};

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
    /// Run the node agent: datapath owner, IPAM, local socket; with --node-name (NODE_NAME) a
    /// Kubernetes controller that routes between nodes.
    #[command(args_override_self = true)]
    Agent(Box<AgentOptions>),
    /// Switch the eBPF programs' debug log lines (shown in the agent's log) on or off.
    BpfLog {
        #[arg(value_enum)]
        state: OnOff,
        #[arg(long, default_value = weft::api::DEFAULT_SOCKET, env = "WEFT_SOCKET")]
        socket: PathBuf,
    },
    /// What each eBPF program costs per run, over a window of live traffic (has the agent
    /// switch the kernel's run-time statistics on for the window).
    BpfStats {
        /// Length of the window.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value = weft::api::DEFAULT_SOCKET, env = "WEFT_SOCKET")]
        socket: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show the node's endpoints, routes and drop counters (asks the agent).
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
    /// NetworkPolicy: each local pod's isolation and allowed peers, or a trace.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Remove from this node what the agent put there (CNI config and plugin, pins, nftables
    /// table, routes, devices, IPAM store), after `kubectl delete -k deploy/`.
    Uninstall {
        #[command(flatten)]
        opts: weft::agent::options::NodePaths,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Each local pod: the policies isolating it and the peers, ports and rules they allow.
    List {
        #[arg(long, default_value = weft::api::DEFAULT_SOCKET, env = "WEFT_SOCKET")]
        socket: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Would a new connection be allowed, and by which rule? Exit status 3 when denied.
    Trace {
        /// The sender: `namespace/pod`, `pod` (namespace default) or an IPv4 address.
        #[arg(long)]
        from: String,
        /// The receiver, likewise.
        #[arg(long)]
        to: String,
        /// `PORT/PROTOCOL` (TCP, UDP, SCTP; ICMP with port 0).
        #[arg(long)]
        port: String,
        #[arg(long, default_value = weft::api::DEFAULT_SOCKET, env = "WEFT_SOCKET")]
        socket: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

fn main() {
    if std::env::var_os("CNI_COMMAND").is_some() {
        std::process::exit(weft::cni::main());
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = if args.get(1).is_some_and(|a| a == "agent") {
        let cmd = Cli::command();
        let agent = cmd.find_subcommand("agent").expect("the agent subcommand exists");
        match options::with_config_dir(agent, args, 2, |k| std::env::var(k).ok()) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("weft: {e}");
                std::process::exit(2);
            }
        }
    } else {
        args
    };
    let cli = Cli::parse_from(args);
    let result = match cli.cmd {
        Cmd::Agent(opts) => run_agent(*opts),
        Cmd::Status { socket, output } => cli::status::run(&socket, output),
        Cmd::BpfStats { seconds, socket, output } => cli::bpf_stats::run(&socket, seconds, output),
        Cmd::BpfLog { state, socket } => cli::bpf_log(&socket, matches!(state, OnOff::On)),
        Cmd::Service {
            cmd: ListCmd::List { socket, output },
        } => cli::service::run(&socket, output),
        Cmd::Ct {
            cmd: ListCmd::List { socket, output },
        } => cli::ct::run(&socket, output),
        Cmd::Policy {
            cmd: PolicyCmd::List { socket, output },
        } => cli::policy::list(&socket, output),
        Cmd::Policy {
            cmd: PolicyCmd::Trace { from, to, port, socket, output },
        } => cli::policy::trace(&socket, &from, &to, &port, output),
        Cmd::Uninstall { opts, output } => cli::uninstall::run(&opts, output),
    };
    if let Err(e) = result {
        eprintln!("weft: {e:#}");
        std::process::exit(1);
    }
}

fn run_agent(opts: AgentOptions) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // The eBPF programs' lines (target weft_dataplane::…) are debug level; they are only
            // written while `--bpf-log` / `weft bpf-log on` has them on.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,weft_dataplane=debug".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a container log is a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(weft::agent::run::run(opts))
}
