//! `weft agent` settings: flags, then environment, then a config directory, then defaults.
//!
//! The config directory is the ConfigMap-as-volume convention Cilium uses: one file per
//! setting, named like the long flag (`routing-mode`, `cluster-cidr`, …), holding its value.
//! A flag on the command line wins over its environment variable, which wins over the file.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, FromArgMatches};
use ipnetwork::Ipv4Network;

/// How packets reach other nodes' pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    /// Nodes share a network: packets go out of the uplink with the node as next hop.
    Native,
    /// Nodes on different networks: packets are encapsulated in VXLAN (UDP 8472).
    Vxlan,
}

/// Where forwarding decisions happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostRouting {
    /// In eBPF: packets are redirected between pods, uplink and tunnel without the node's
    /// stack (fastest; netfilter does not see pod-to-pod traffic).
    Bpf,
    /// By the node's stack, with the routes weft keeps: what a node that runs kube-proxy
    /// needs, because kube-proxy's NAT lives in netfilter.
    Kernel,
}

/// Where the agent puts things on its node: the agent's flags, and `weft uninstall`'s, which
/// removes them.
#[derive(Debug, Clone, clap::Args)]
pub struct NodePaths {
    /// bpffs directory for this node's pinned maps, programs and links.
    #[arg(long, env = "WEFT_PIN_DIR", default_value = "/sys/fs/bpf/weft")]
    pub pin_dir: PathBuf,
    /// Unix socket the CNI plugin and the CLI talk to.
    #[arg(long, env = "WEFT_SOCKET", default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Persistent state (IPAM store under `ipam/`, optional `pod-cidr` file).
    #[arg(long, env = "WEFT_STATE_DIR", default_value = "/var/lib/weft")]
    pub state_dir: PathBuf,
    /// Where the CNI plugin binary goes.
    #[arg(long, env = "WEFT_CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// Where the CNI configuration goes.
    #[arg(long, env = "WEFT_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// File name of the CNI configuration (lowest name wins at the runtime).
    #[arg(long, env = "WEFT_CNI_CONF_NAME", default_value = "05-weft.conflist")]
    pub cni_conf_name: String,
}

/// Settings of `weft agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentOptions {
    /// Directory of settings files, one per flag (a mounted ConfigMap).
    #[arg(long, env = "WEFT_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// This node's name (the downward API's `spec.nodeName`). With it the agent is a
    /// Kubernetes controller; without it, a standalone node agent (`--pod-cidr` required).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// kubeconfig to reach the API server; default: the pod's service account.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The API server's URL, used instead of the `kubernetes` Service's ClusterIP (which
    /// weft itself will provide), e.g. https://172.30.0.2:6443.
    #[arg(long, env = "WEFT_API_SERVER")]
    pub api_server: Option<String>,
    /// Where the agent keeps things on the node (pins, socket, state, CNI files).
    #[command(flatten)]
    pub paths: NodePaths,
    /// The node's pod CIDR, overriding `Node.spec.podCIDR` (default: the Node's, else the
    /// content of `<state-dir>/pod-cidr`).
    #[arg(long, env = "WEFT_POD_CIDR")]
    pub pod_cidr: Option<Ipv4Network>,
    /// How packets reach other nodes.
    #[arg(long, env = "WEFT_ROUTING_MODE", value_enum, default_value_t = RoutingMode::Native)]
    pub routing_mode: RoutingMode,
    /// Where forwarding happens (`kernel` when kube-proxy runs on the node).
    #[arg(long, env = "WEFT_HOST_ROUTING", value_enum, default_value_t = HostRouting::Bpf)]
    pub host_routing: HostRouting,
    /// The cluster's pod network; pod traffic to anything outside it (and outside every
    /// node's address) is masqueraded. Default: the union of the Nodes' pod CIDRs.
    #[arg(long, env = "WEFT_CLUSTER_CIDR")]
    pub cluster_cidr: Option<Ipv4Network>,
    /// Translate Services (ClusterIP, NodePort, external and load-balancer IPs) in eBPF, so the
    /// cluster runs without kube-proxy. Off when kube-proxy runs on the nodes.
    #[arg(long, env = "WEFT_KUBE_PROXY_REPLACEMENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub kube_proxy_replacement: bool,
    /// A switch between kube-proxy and weft is under way on this node: connections the other
    /// one translated keep their translation (the kernel's conntrack keeps kube-proxy's, weft's
    /// `CT4` keeps weft's) while new ones go to weft (`kube-proxy-replacement: true`) or to
    /// kube-proxy (`false`). Needs `host-routing: kernel`. Turn it off once `weft status` shows
    /// `handed_to_kernel` no longer rising (no connection of the other's left).
    #[arg(long, env = "WEFT_KUBE_PROXY_HANDOFF", default_value_t = false, action = clap::ArgAction::Set)]
    pub kube_proxy_handoff: bool,
    /// The node's cgroup v2 root, where the socket-level load balancing attaches (every process
    /// of the node, pods included, connects through it). Default: /sys/fs/cgroup, or
    /// /sys/fs/cgroup/unified on a hybrid (cgroup v1 + v2) machine.
    #[arg(long, env = "WEFT_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// Masquerade pod egress to the node's address.
    #[arg(long, env = "WEFT_MASQUERADE", default_value_t = true, action = clap::ArgAction::Set)]
    pub masquerade: bool,
    /// MTU of pod interfaces; default: the uplink's, minus 50 in VXLAN mode.
    #[arg(long, env = "WEFT_MTU")]
    pub mtu: Option<u32>,
    /// The node's uplink; default: the interface holding the Node's InternalIP.
    #[arg(long, env = "WEFT_UPLINK")]
    pub uplink: Option<String>,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "WEFT_METRICS_ADDR", default_value = "0.0.0.0:9965")]
    pub metrics_addr: SocketAddr,
    /// Install the `weft` binary and the CNI configuration once the datapath is ready
    /// (default: on when running as a Kubernetes controller).
    #[arg(long, env = "WEFT_INSTALL_CNI", action = clap::ArgAction::Set)]
    pub install_cni: Option<bool>,
    /// Emit the eBPF programs' debug log lines (aya-log) into this log; `weft bpf-log on|off`
    /// switches it at runtime.
    #[arg(long, env = "WEFT_BPF_LOG", default_value_t = false, action = clap::ArgAction::Set)]
    pub bpf_log: bool,
}

impl AgentOptions {
    /// Whether the agent runs as a Kubernetes controller.
    pub fn kubernetes(&self) -> bool {
        self.node_name.is_some()
    }

    pub fn install_cni(&self) -> bool {
        self.install_cni.unwrap_or(self.kubernetes())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("reading the config directory {path}: {source}")]
    ConfigDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {reason}")]
    ConfigFile { path: PathBuf, reason: String },
}

/// Command-line arguments with the config directory's settings spliced in: for every file in
/// the directory that names a flag, `--flag=value` goes right after the subcommand, unless
/// the flag's environment variable is set (env beats file). Flags the user typed come later
/// and win (the command must use `args_override_self`).
///
/// `cmd` is the subcommand's `clap::Command` (to look up flag names and env vars);
/// `args` the full argv; `prefix_len` how many leading args precede the options (program
/// name and subcommand).
pub fn with_config_dir(
    cmd: &clap::Command,
    args: Vec<OsString>,
    prefix_len: usize,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<OsString>, OptionsError> {
    let dir = config_dir_arg(&args[prefix_len.min(args.len())..])
        .or_else(|| env("WEFT_CONFIG_DIR").map(PathBuf::from));
    let Some(dir) = dir else { return Ok(args) };
    let injected = config_dir_flags(cmd, &dir, &env)?;
    let mut out: Vec<OsString> = args[..prefix_len.min(args.len())].to_vec();
    out.extend(injected);
    out.extend(args[prefix_len.min(args.len())..].iter().cloned());
    Ok(out)
}

fn config_dir_arg(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        if let Some(v) = a.strip_prefix("--config-dir=") {
            return Some(PathBuf::from(v));
        }
        if a == "--config-dir" {
            return it.next().map(PathBuf::from);
        }
    }
    None
}

/// `--flag=value` for every settings file in `dir` (sorted by name). Hidden files (a mounted
/// ConfigMap's `..data` links) are skipped; a file naming no flag is an error, so a typo in
/// a ConfigMap key is not silently ignored.
fn config_dir_flags(
    cmd: &clap::Command,
    dir: &Path,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<OsString>, OptionsError> {
    let read_err = |source| OptionsError::ConfigDir {
        path: dir.to_owned(),
        source,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if name == "config-dir" {
            return Err(OptionsError::ConfigFile {
                path,
                reason: "a config directory cannot name another".into(),
            });
        }
        let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(name.as_str())) else {
            return Err(OptionsError::ConfigFile {
                path,
                reason: format!("`{name}` is not a setting of `weft agent`"),
            });
        };
        let env_set = arg
            .get_env()
            .and_then(|e| e.to_str())
            .is_some_and(|e| env(e).is_some());
        if env_set {
            continue;
        }
        let value = std::fs::read_to_string(&path).map_err(|source| OptionsError::ConfigDir {
            path: path.clone(),
            source,
        })?;
        out.push(OsString::from(format!("--{name}={}", value.trim())));
    }
    Ok(out)
}

/// Parse `weft agent` options alone (tests; the binary parses them as its subcommand).
pub fn parse(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<AgentOptions, Box<dyn std::error::Error>> {
    let cmd = AgentOptions::augment_args(clap::Command::new("agent")).args_override_self(true);
    let args = with_config_dir(&cmd, args, 1, env)?;
    let matches = cmd.try_get_matches_from(args)?;
    Ok(AgentOptions::from_arg_matches(&matches)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str, files: &[(&str, &str)]) -> Self {
            let p = std::env::temp_dir().join(format!("weft-opts-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            for (k, v) in files {
                std::fs::write(p.join(k), v).unwrap();
            }
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("agent").chain(a.iter().copied()).map(OsString::from).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_are_a_standalone_native_bpf_agent() {
        let o = parse(args(&[]), no_env).unwrap();
        assert!(!o.kubernetes());
        assert!(!o.install_cni());
        assert_eq!(o.routing_mode, RoutingMode::Native);
        assert_eq!(o.host_routing, HostRouting::Bpf);
        assert!(o.masquerade);
        assert_eq!(o.paths.pin_dir, PathBuf::from("/sys/fs/bpf/weft"));
        assert_eq!(o.paths.cni_conf_name, "05-weft.conflist");
    }

    #[test]
    fn config_dir_files_fill_settings_and_flags_win() {
        let d = Dir::new("files", &[
            ("routing-mode", "vxlan\n"),
            ("cluster-cidr", "10.200.0.0/16"),
            ("node-name", "node-1"),
            ("mtu", "1400"),
            ("..data", "ignored: a ConfigMap volume's own link"),
        ]);
        let dir = d.0.to_str().unwrap();
        let o = parse(args(&["--config-dir", dir, "--mtu=1300"]), no_env).unwrap();
        assert_eq!(o.routing_mode, RoutingMode::Vxlan);
        assert_eq!(o.cluster_cidr, Some("10.200.0.0/16".parse().unwrap()));
        assert_eq!(o.node_name.as_deref(), Some("node-1"));
        assert!(o.kubernetes() && o.install_cni(), "a node name makes it a controller");
        assert_eq!(o.mtu, Some(1300), "the typed flag beats the file");
    }

    #[test]
    fn an_environment_variable_beats_the_file() {
        let d = Dir::new("env", &[("routing-mode", "vxlan")]);
        let dir = d.0.to_str().unwrap();
        let env = |k: &str| (k == "WEFT_ROUTING_MODE").then(|| "native".to_owned());
        let cmd = AgentOptions::augment_args(clap::Command::new("agent"));
        let spliced = with_config_dir(&cmd, args(&["--config-dir", dir]), 1, env).unwrap();
        assert!(
            !spliced.iter().any(|a| a.to_string_lossy().starts_with("--routing-mode")),
            "{spliced:?}"
        );
    }

    #[test]
    fn unknown_or_bad_config_files_are_errors_naming_the_file() {
        let d = Dir::new("typo", &[("routing-mod", "vxlan")]);
        let e = parse(args(&["--config-dir", d.0.to_str().unwrap()]), no_env).unwrap_err();
        assert!(e.to_string().contains("routing-mod"), "{e}");
        let d = Dir::new("bad", &[("routing-mode", "carrier-pigeon")]);
        let e = parse(args(&["--config-dir", d.0.to_str().unwrap()]), no_env).unwrap_err();
        assert!(e.to_string().contains("carrier-pigeon"), "{e}");
    }
}
