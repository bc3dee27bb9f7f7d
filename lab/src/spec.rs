//! The lab's shape: node count, CNI and proxy choice, and the fixed addressing plan.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

/// Every network namespace the lab makes starts with this prefix (also pod namespaces).
pub const NETNS_PREFIX: &str = "wl-";
/// Namespace holding the lab switch (bridge `br0`) and the router to the outside host.
pub const SWITCH_NS: &str = "wl-switch";
/// Namespace of etcd, kube-apiserver, kube-controller-manager and kube-scheduler.
pub const CP_NS: &str = "wl-cp";
/// Namespace of the stand-in for the internet.
pub const OUTSIDE_NS: &str = "wl-outside";

/// The underlay every node and the control plane sit on.
pub const UNDERLAY: Ipv4Network = net(Ipv4Addr::new(172, 30, 0, 0), 24);
/// Address of `br0` in the switch namespace: default gateway of nodes and control plane.
pub const UNDERLAY_GW: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
/// kube-apiserver's advertise address (the `kubernetes` Service endpoint).
pub const CP_IP: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
/// The outside host's subnet, a documentation range (RFC 5737 TEST-NET-3).
pub const OUTSIDE_NET: Ipv4Network = net(Ipv4Addr::new(203, 0, 113, 0), 24);
/// The switch's address towards the outside host.
pub const OUTSIDE_GW: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The outside host.
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Pod addresses; kube-controller-manager's node-ipam hands out one /24 per node from it.
pub const CLUSTER_CIDR: Ipv4Network = net(Ipv4Addr::new(10, 200, 0, 0), 16);
pub const NODE_CIDR_MASK: u8 = 24;
/// ClusterIP range; the first address is the `kubernetes` Service.
pub const SERVICE_CIDR: Ipv4Network = net(Ipv4Addr::new(10, 32, 0, 0), 24);
pub const KUBERNETES_SVC_IP: Ipv4Addr = Ipv4Addr::new(10, 32, 0, 1);
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 32, 0, 10);
pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const APISERVER_PORT: u16 = 6443;

/// The most nodes the underlay plan leaves room for (172.30.0.11 ..= 172.30.0.250).
pub const MAX_NODES: usize = 240;

const fn net(addr: Ipv4Addr, prefix: u8) -> Ipv4Network {
    match Ipv4Network::new_checked(addr, prefix) {
        Some(n) => n,
        None => panic!("bad constant prefix"),
    }
}

/// Which CNI configuration the nodes get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    /// Reference `bridge` + `host-local` plugins, a static route per node for the other nodes.
    Bridge,
    /// weft: the agent (DaemonSet) writes its own conflist.
    Weft,
}

/// How the nodes are wired to each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// Every node on the switch's one subnet (172.30.0.0/24): nodes reach each other directly.
    #[default]
    Flat,
    /// Node N alone on 172.31.N.0/24 behind the switch acting as a router: packets for pod
    /// addresses cannot be routed natively, so pod traffic between nodes needs a tunnel.
    Routed,
}

/// How weft reaches other nodes' pods (its `routing-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    Native,
    Vxlan,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Native => "native",
            Routing::Vxlan => "vxlan",
        }
    }
}

/// kube-proxy's mode, or no kube-proxy at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proxy {
    Iptables,
    Nftables,
    None,
}

impl Proxy {
    /// The value of kube-proxy's `--proxy-mode`, if kube-proxy runs.
    pub fn kube_proxy_mode(self) -> Option<&'static str> {
        match self {
            Proxy::Iptables => Some("iptables"),
            Proxy::Nftables => Some("nftables"),
            Proxy::None => None,
        }
    }
}

/// Which NetworkPolicy engine runs beside a CNI that has none (`--cni bridge`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Netpol {
    /// None: with `--cni bridge` policies are stored but not enforced (weft enforces its own).
    #[default]
    None,
    /// kube-router's firewall controller (iptables + ipset) on every node: the reference engine
    /// the policy suite runs against; a test peer, never shipped.
    KubeRouter,
}

impl Netpol {
    /// The `--netpol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Netpol::None => "none",
            Netpol::KubeRouter => "kube-router",
        }
    }
}

/// What the user asked `up` for; saved in the state dir so later commands know the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    /// Highest node index ever created (nodes are `node-1..node-N`, minus `removed`).
    pub nodes: usize,
    pub cni: Cni,
    pub proxy: Proxy,
    #[serde(default)]
    pub topology: Topology,
    /// weft's routing mode (only with `--cni weft`).
    #[serde(default = "default_routing")]
    pub routing: Routing,
    /// The NetworkPolicy engine beside the bridge CNI (`--netpol`).
    #[serde(default)]
    pub netpol: Netpol,
    /// Node indexes removed at run time (`weft-lab node remove`).
    #[serde(default)]
    pub removed: Vec<usize>,
}

fn default_routing() -> Routing {
    Routing::Native
}

/// Bad `up` arguments.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("--nodes must be between 1 and {MAX_NODES}, got {0}")]
    NodeCount(usize),
    #[error("no lab host {host:?}: hosts are node-1..node-{nodes}, cp, outside, switch")]
    UnknownHost { host: String, nodes: usize },
    #[error("--netpol kube-router is the reference engine beside --cni bridge; weft enforces \
             NetworkPolicy itself")]
    NetpolNeedsBridge,
    #[error("--topology routed puts nodes on different subnets: pod traffic between them needs \
             --cni weft --routing vxlan")]
    RoutedNeedsTunnel,
}

/// One node of the lab: its names and underlay address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// 1-based index.
    pub index: usize,
    /// Kubernetes Node name, e.g. `node-1`.
    pub name: String,
    /// Network namespace, e.g. `wl-node-1`.
    pub netns: String,
    /// Address on the underlay, e.g. 172.30.0.11.
    pub ip: Ipv4Addr,
    /// The node's subnet (the shared 172.30.0.0/24, or its own 172.31.N.0/24 when routed).
    pub subnet: Ipv4Network,
    /// Its default gateway (the switch).
    pub gateway: Ipv4Addr,
    /// Prefix of this node's pod network namespaces, e.g. `wl-n1-`.
    pub pod_netns_prefix: String,
}

impl LabSpec {
    pub fn new(nodes: usize, cni: Cni, proxy: Proxy) -> Result<Self, SpecError> {
        if nodes == 0 || nodes > MAX_NODES {
            return Err(SpecError::NodeCount(nodes));
        }
        Ok(Self {
            nodes,
            cni,
            proxy,
            topology: Topology::Flat,
            routing: Routing::Native,
            netpol: Netpol::None,
            removed: vec![],
        })
    }

    /// The NetworkPolicy engine; one of its own only beside the bridge CNI.
    pub fn with_netpol(mut self, netpol: Netpol) -> Result<Self, SpecError> {
        if netpol != Netpol::None && self.cni != Cni::Bridge {
            return Err(SpecError::NetpolNeedsBridge);
        }
        self.netpol = netpol;
        Ok(self)
    }

    /// Topology and weft routing mode; a routed topology needs weft's tunnel.
    pub fn with_network(mut self, topology: Topology, routing: Option<Routing>) -> Result<Self, SpecError> {
        let routing = routing.unwrap_or(match topology {
            Topology::Flat => Routing::Native,
            Topology::Routed => Routing::Vxlan,
        });
        if topology == Topology::Routed && (self.cni != Cni::Weft || routing != Routing::Vxlan) {
            return Err(SpecError::RoutedNeedsTunnel);
        }
        self.topology = topology;
        self.routing = routing;
        Ok(self)
    }

    /// The nodes that exist now.
    pub fn node_plans(&self) -> Vec<NodePlan> {
        (1..=self.nodes)
            .filter(|i| !self.removed.contains(i))
            .map(|i| node_plan_in(i, self.topology))
            .collect()
    }
}

/// Node `index` on the flat underlay.
pub fn node_plan(index: usize) -> NodePlan {
    node_plan_in(index, Topology::Flat)
}

/// Node `index` in `topology`.
pub fn node_plan_in(index: usize, topology: Topology) -> NodePlan {
    let (ip, subnet, gateway) = match topology {
        Topology::Flat => {
            let last = u8::try_from(10 + index).expect("index bounded by MAX_NODES");
            (Ipv4Addr::new(172, 30, 0, last), UNDERLAY, UNDERLAY_GW)
        }
        Topology::Routed => {
            let third = u8::try_from(index).expect("index bounded by MAX_NODES");
            (
                Ipv4Addr::new(172, 31, third, 10),
                net(Ipv4Addr::new(172, 31, third, 0), 24),
                Ipv4Addr::new(172, 31, third, 1),
            )
        }
    };
    NodePlan {
        index,
        name: format!("node-{index}"),
        netns: format!("{NETNS_PREFIX}node-{index}"),
        ip,
        subnet,
        gateway,
        pod_netns_prefix: format!("{NETNS_PREFIX}n{index}-"),
    }
}

/// The network namespace of a lab host named as a user would: `node-N`, `cp`, `outside`,
/// `switch`.
pub fn host_netns(spec: &LabSpec, host: &str) -> Result<String, SpecError> {
    match host {
        "cp" | "control-plane" => Ok(CP_NS.into()),
        "outside" => Ok(OUTSIDE_NS.into()),
        "switch" => Ok(SWITCH_NS.into()),
        _ => spec
            .node_plans()
            .into_iter()
            .find(|n| n.name == host)
            .map(|n| n.netns)
            .ok_or_else(|| SpecError::UnknownHost { host: host.into(), nodes: spec.nodes }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_follow_the_plan_and_stay_on_the_underlay() {
        let spec = LabSpec::new(3, Cni::Bridge, Proxy::Iptables).unwrap();
        let plans = spec.node_plans();
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[0].name, "node-1");
        assert_eq!(plans[0].netns, "wl-node-1");
        assert_eq!(plans[2].ip, Ipv4Addr::new(172, 30, 0, 13));
        assert_eq!(plans[1].pod_netns_prefix, "wl-n2-");
        let last = node_plan(MAX_NODES);
        assert!(UNDERLAY.contains(last.ip) && last.ip != UNDERLAY.broadcast());
    }

    #[test]
    fn routed_nodes_get_their_own_subnet_and_need_the_tunnel() {
        let spec = LabSpec::new(2, Cni::Weft, Proxy::None)
            .unwrap()
            .with_network(Topology::Routed, None)
            .unwrap();
        assert_eq!(spec.routing, Routing::Vxlan);
        let p = &spec.node_plans()[1];
        assert_eq!((p.ip, p.gateway), (Ipv4Addr::new(172, 31, 2, 10), Ipv4Addr::new(172, 31, 2, 1)));
        assert!(p.subnet.contains(p.ip) && !UNDERLAY.contains(p.ip));
        let bridge = LabSpec::new(2, Cni::Bridge, Proxy::None).unwrap();
        assert_eq!(bridge.with_network(Topology::Routed, None), Err(SpecError::RoutedNeedsTunnel));
        let native = LabSpec::new(2, Cni::Weft, Proxy::None).unwrap();
        assert_eq!(
            native.with_network(Topology::Routed, Some(Routing::Native)),
            Err(SpecError::RoutedNeedsTunnel)
        );
    }

    #[test]
    fn kube_router_runs_only_beside_the_bridge_cni() {
        let bridge = LabSpec::new(2, Cni::Bridge, Proxy::Iptables).unwrap();
        assert_eq!(bridge.with_netpol(Netpol::KubeRouter).unwrap().netpol, Netpol::KubeRouter);
        let weft = LabSpec::new(2, Cni::Weft, Proxy::None).unwrap();
        assert_eq!(weft.clone().with_netpol(Netpol::KubeRouter), Err(SpecError::NetpolNeedsBridge));
        assert_eq!(weft.with_netpol(Netpol::None).unwrap().netpol, Netpol::None);
        // A lab recorded before --netpol existed has none.
        let old = r#"{"nodes":1,"cni":"bridge","proxy":"iptables"}"#;
        assert_eq!(serde_json::from_str::<LabSpec>(old).unwrap().netpol, Netpol::None);
    }

    #[test]
    fn removed_nodes_are_gone_from_the_plan() {
        let mut spec = LabSpec::new(4, Cni::Weft, Proxy::None).unwrap();
        spec.removed.push(2);
        let names: Vec<_> = spec.node_plans().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["node-1", "node-3", "node-4"]);
    }

    #[test]
    fn hosts_resolve_to_their_namespaces() {
        let spec = LabSpec::new(2, Cni::Bridge, Proxy::None).unwrap();
        assert_eq!(host_netns(&spec, "node-2").unwrap(), "wl-node-2");
        assert_eq!(host_netns(&spec, "cp").unwrap(), "wl-cp");
        assert_eq!(host_netns(&spec, "outside").unwrap(), "wl-outside");
        let e = host_netns(&spec, "node-3").unwrap_err();
        assert!(e.to_string().contains("node-1..node-2"), "{e}");
    }

    #[test]
    fn node_count_out_of_range_is_refused() {
        assert_eq!(LabSpec::new(0, Cni::Bridge, Proxy::None), Err(SpecError::NodeCount(0)));
        assert!(LabSpec::new(MAX_NODES + 1, Cni::Weft, Proxy::None).is_err());
    }

    #[test]
    fn the_service_range_holds_the_kubernetes_and_dns_addresses() {
        assert!(SERVICE_CIDR.contains(KUBERNETES_SVC_IP));
        assert!(SERVICE_CIDR.contains(CLUSTER_DNS));
        assert!(!CLUSTER_CIDR.contains(CP_IP) && UNDERLAY.contains(CP_IP));
        assert_eq!(Proxy::None.kube_proxy_mode(), None);
        assert_eq!(Proxy::Nftables.kube_proxy_mode(), Some("nftables"));
    }
}
