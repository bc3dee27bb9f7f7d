//! The routing reconciler: the single writer of `NODE_ROUTES4` and of weft's kernel routes.
//! Each pass computes the desired routes from the Nodes and writes only the difference, so a
//! restarted agent converges from whatever an earlier one left.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use tracing::{info, warn};

use super::desired::{desired, Peer, Problem};
use super::table::{KernelRoute, RouteTable};
use crate::agent::options::RoutingMode;
use crate::datapath::{DatapathError, NodeHop, NodeRoutes};
use crate::k8s::node::NodeInfo;

/// The node's interface towards the other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    pub ifindex: u32,
    /// The node's own address on it (its InternalIP).
    pub ip: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("NODE_ROUTES4: {0}")]
    Map(#[from] DatapathError),
    #[error("kernel routes: {0}")]
    Table(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The datapath side of node routes (the pinned LPM map; a fake in unit tests).
pub trait HopMap {
    fn list(&self) -> Result<Vec<(Ipv4Network, NodeHop)>, DatapathError>;
    fn upsert(&mut self, cidr: Ipv4Network, hop: &NodeHop) -> Result<(), DatapathError>;
    fn remove(&mut self, cidr: Ipv4Network) -> Result<(), DatapathError>;
}

impl HopMap for NodeRoutes {
    fn list(&self) -> Result<Vec<(Ipv4Network, NodeHop)>, DatapathError> {
        NodeRoutes::list(self)
    }
    fn upsert(&mut self, cidr: Ipv4Network, hop: &NodeHop) -> Result<(), DatapathError> {
        NodeRoutes::upsert(self, cidr, hop)
    }
    fn remove(&mut self, cidr: Ipv4Network) -> Result<(), DatapathError> {
        NodeRoutes::remove(self, cidr)
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Routes in place after the pass.
    pub routes: usize,
    /// Map entries and kernel routes written (added or changed).
    pub written: usize,
    /// Map entries and kernel routes removed.
    pub removed: usize,
    pub problems: Vec<Problem>,
}

/// Owns `NODE_ROUTES4` and weft's kernel routes for one node.
pub struct Reconciler<M, T> {
    me: String,
    mode: RoutingMode,
    uplink: Uplink,
    /// The VXLAN device's ifindex (VXLAN mode).
    vxlan_ifindex: Option<u32>,
    map: M,
    table: T,
    /// The routes of the last successful pass, for status.
    current: BTreeMap<Ipv4Network, Peer>,
}

impl<M: HopMap, T: RouteTable> Reconciler<M, T> {
    pub fn new(
        me: String,
        mode: RoutingMode,
        uplink: Uplink,
        vxlan_ifindex: Option<u32>,
        map: M,
        table: T,
    ) -> Self {
        Self {
            me,
            mode,
            uplink,
            vxlan_ifindex,
            map,
            table,
            current: BTreeMap::new(),
        }
    }

    /// The routes in place after the last successful pass.
    pub fn routes(&self) -> &BTreeMap<Ipv4Network, Peer> {
        &self.current
    }

    fn hop(&self, peer: &Peer) -> NodeHop {
        match self.mode {
            RoutingMode::Native => NodeHop::Native {
                node_ip: peer.ip,
                uplink_ifindex: self.uplink.ifindex,
            },
            RoutingMode::Vxlan => NodeHop::Tunnel { node_ip: peer.ip },
        }
    }

    /// The kernel route for the node's own traffic: natively via the node; in VXLAN mode a
    /// device route into the tunnel (to_overlay sets the key), sourced from this node.
    fn kernel_route(&self, cidr: Ipv4Network, peer: &Peer) -> KernelRoute {
        match (self.mode, self.vxlan_ifindex) {
            (RoutingMode::Vxlan, Some(vxlan)) => KernelRoute {
                dst: cidr,
                via: None,
                oif: vxlan,
                src: Some(self.uplink.ip),
            },
            _ => KernelRoute {
                dst: cidr,
                via: Some(peer.ip),
                oif: self.uplink.ifindex,
                src: None,
            },
        }
    }

    /// One pass: make the map and the kernel match the Nodes.
    pub async fn reconcile(&mut self, nodes: &[NodeInfo]) -> Result<Outcome, RoutingError> {
        let (want, problems) = desired(nodes, &self.me);
        for p in &problems {
            warn!(?p, "node not routed");
        }
        let mut out = Outcome {
            routes: want.len(),
            problems,
            ..Outcome::default()
        };

        // Datapath first for additions (new nodes are reachable by pods at once) ...
        let have: BTreeMap<Ipv4Network, NodeHop> = self.map.list()?.into_iter().collect();
        for (cidr, peer) in &want {
            let hop = self.hop(peer);
            if have.get(cidr) != Some(&hop) {
                self.map.upsert(*cidr, &hop)?;
                info!(%cidr, node = %peer.node, ip = %peer.ip, "node route written");
                out.written += 1;
            }
        }
        for cidr in have.keys().filter(|c| !want.contains_key(c)) {
            self.map.remove(*cidr)?;
            info!(%cidr, "node route removed");
            out.removed += 1;
        }

        // ... then the kernel's table, for the node's own traffic and traceroute.
        let table_err = |e: T::Error| RoutingError::Table(Box::new(e));
        let have_k = self.table.list().await.map_err(table_err)?;
        let want_k: Vec<KernelRoute> = want.iter().map(|(c, p)| self.kernel_route(*c, p)).collect();
        for r in &want_k {
            if !have_k.contains(r) {
                self.table.replace(r).await.map_err(table_err)?;
                out.written += 1;
            }
        }
        for r in have_k.iter().filter(|r| !want_k.iter().any(|w| w.dst == r.dst)) {
            self.table.delete(r).await.map_err(table_err)?;
            out.removed += 1;
        }
        self.current = want;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeMap(BTreeMap<Ipv4Network, NodeHop>, usize);
    impl HopMap for FakeMap {
        fn list(&self) -> Result<Vec<(Ipv4Network, NodeHop)>, DatapathError> {
            Ok(self.0.iter().map(|(c, h)| (*c, *h)).collect())
        }
        fn upsert(&mut self, cidr: Ipv4Network, hop: &NodeHop) -> Result<(), DatapathError> {
            self.1 += 1;
            self.0.insert(cidr, *hop);
            Ok(())
        }
        fn remove(&mut self, cidr: Ipv4Network) -> Result<(), DatapathError> {
            self.1 += 1;
            self.0.remove(&cidr);
            Ok(())
        }
    }

    #[derive(Default)]
    struct FakeTable(Vec<KernelRoute>, usize);
    impl RouteTable for FakeTable {
        type Error = std::io::Error;
        async fn list(&mut self) -> Result<Vec<KernelRoute>, Self::Error> {
            Ok(self.0.clone())
        }
        async fn replace(&mut self, r: &KernelRoute) -> Result<(), Self::Error> {
            self.1 += 1;
            self.0.retain(|x| x.dst != r.dst);
            self.0.push(r.clone());
            Ok(())
        }
        async fn delete(&mut self, r: &KernelRoute) -> Result<(), Self::Error> {
            self.1 += 1;
            self.0.retain(|x| x.dst != r.dst);
            Ok(())
        }
    }

    fn node(name: &str, cidr: &str, ip: [u8; 4]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            pod_cidrs: vec![cidr.parse().unwrap()],
            internal_ip: Some(ip.into()),
        }
    }

    fn uplink() -> Uplink {
        Uplink {
            name: "eth0".into(),
            ifindex: 2,
            ip: Ipv4Addr::new(172, 30, 0, 11),
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn native_mode_routes_via_the_node_and_converges_on_changes() {
        let mut r = Reconciler::new(
            "node-1".into(),
            RoutingMode::Native,
            uplink(),
            None,
            FakeMap::default(),
            FakeTable::default(),
        );
        let mut nodes = vec![
            node("node-1", "10.200.1.0/24", [172, 30, 0, 11]),
            node("node-2", "10.200.2.0/24", [172, 30, 0, 12]),
            node("node-3", "10.200.3.0/24", [172, 30, 0, 13]),
        ];
        let out = run(r.reconcile(&nodes)).unwrap();
        assert_eq!((out.routes, out.written, out.removed), (2, 4, 0));
        assert_eq!(
            r.table.0[0],
            KernelRoute {
                dst: "10.200.2.0/24".parse().unwrap(),
                via: Some(Ipv4Addr::new(172, 30, 0, 12)),
                oif: 2,
                src: None
            }
        );
        assert_eq!(
            r.map.0[&"10.200.3.0/24".parse().unwrap()],
            NodeHop::Native { node_ip: Ipv4Addr::new(172, 30, 0, 13), uplink_ifindex: 2 }
        );

        // Nothing changed: nothing written.
        let (map_ops, table_ops) = (r.map.1, r.table.1);
        let out = run(r.reconcile(&nodes)).unwrap();
        assert_eq!((out.written, out.removed), (0, 0));
        assert_eq!((r.map.1, r.table.1), (map_ops, table_ops));

        // node-3 leaves, node-2 moves to another address.
        nodes.pop();
        nodes[1].internal_ip = Some(Ipv4Addr::new(172, 30, 0, 22));
        let out = run(r.reconcile(&nodes)).unwrap();
        assert_eq!((out.routes, out.written, out.removed), (1, 2, 2));
        assert_eq!(r.map.0.len(), 1);
        assert_eq!(r.table.0.len(), 1);
        assert_eq!(r.table.0[0].via, Some(Ipv4Addr::new(172, 30, 0, 22)));
        assert_eq!(r.routes().len(), 1);
    }

    #[test]
    fn vxlan_mode_tunnels_and_routes_the_node_through_the_device() {
        let mut r = Reconciler::new(
            "node-1".into(),
            RoutingMode::Vxlan,
            uplink(),
            Some(9),
            FakeMap::default(),
            FakeTable::default(),
        );
        let nodes = vec![node("node-2", "10.200.2.0/24", [172, 31, 2, 12])];
        run(r.reconcile(&nodes)).unwrap();
        assert_eq!(
            r.map.0.values().next().unwrap(),
            &NodeHop::Tunnel { node_ip: Ipv4Addr::new(172, 31, 2, 12) }
        );
        assert_eq!(
            r.table.0,
            vec![KernelRoute {
                dst: "10.200.2.0/24".parse().unwrap(),
                via: None,
                oif: 9,
                src: Some(Ipv4Addr::new(172, 30, 0, 11)),
            }]
        );
    }

    #[test]
    fn leftovers_of_an_earlier_agent_are_removed_on_the_first_pass() {
        let mut map = FakeMap::default();
        map.0.insert(
            "10.200.9.0/24".parse().unwrap(),
            NodeHop::Tunnel { node_ip: Ipv4Addr::new(1, 2, 3, 4) },
        );
        let table = FakeTable(
            vec![KernelRoute {
                dst: "10.200.9.0/24".parse().unwrap(),
                via: Some(Ipv4Addr::new(1, 2, 3, 4)),
                oif: 2,
                src: None,
            }],
            0,
        );
        let mut r = Reconciler::new("node-1".into(), RoutingMode::Native, uplink(), None, map, table);
        let out = run(r.reconcile(&[])).unwrap();
        assert_eq!((out.routes, out.removed), (0, 2));
        assert!(r.map.0.is_empty() && r.table.0.is_empty());
    }
}
