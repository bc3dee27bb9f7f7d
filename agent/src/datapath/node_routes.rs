//! `NODE_ROUTES4`: other nodes' pod CIDRs and how to reach them. Its one writer is the
//! routing reconciler, which opens the pinned map on its own (the owner thread never writes it).

use std::net::Ipv4Addr;
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData};
use dataplane_common::maps::NODE_ROUTES4;
use dataplane_common::node::NODE_ROUTE_F_TUNNEL;
use dataplane_common::NodeRoute4Value;
use ipnetwork::Ipv4Network;

use super::DatapathError;

/// How the datapath reaches another node's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeHop {
    /// Natively: out of the uplink (ifindex) with the node's address as next hop.
    Native { node_ip: Ipv4Addr, uplink_ifindex: u32 },
    /// Through the VXLAN device, tunnel remote = the node's address.
    Tunnel { node_ip: Ipv4Addr },
}

impl NodeHop {
    pub fn node_ip(&self) -> Ipv4Addr {
        match *self {
            NodeHop::Native { node_ip, .. } | NodeHop::Tunnel { node_ip } => node_ip,
        }
    }
}

impl From<&NodeHop> for NodeRoute4Value {
    fn from(h: &NodeHop) -> Self {
        match *h {
            NodeHop::Native {
                node_ip,
                uplink_ifindex,
            } => NodeRoute4Value {
                node_ip_be: node_ip.octets(),
                ifindex: uplink_ifindex,
                flags: 0,
            },
            NodeHop::Tunnel { node_ip } => NodeRoute4Value {
                node_ip_be: node_ip.octets(),
                ifindex: 0,
                flags: NODE_ROUTE_F_TUNNEL,
            },
        }
    }
}

impl From<&NodeRoute4Value> for NodeHop {
    fn from(v: &NodeRoute4Value) -> Self {
        let node_ip = Ipv4Addr::from(v.node_ip_be);
        if v.is_tunnel() {
            NodeHop::Tunnel { node_ip }
        } else {
            NodeHop::Native {
                node_ip,
                uplink_ifindex: v.ifindex,
            }
        }
    }
}

fn map_err(source: aya::maps::MapError) -> DatapathError {
    DatapathError::Map {
        name: NODE_ROUTES4,
        source,
    }
}

fn key(cidr: Ipv4Network) -> Key<[u8; 4]> {
    Key::new(u32::from(cidr.prefix()), cidr.network().octets())
}

/// Handle on the pinned `NODE_ROUTES4` (created by [`super::Datapath::open`]).
pub struct NodeRoutes {
    map: LpmTrie<MapData, [u8; 4], NodeRoute4Value>,
}

impl NodeRoutes {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let data = MapData::from_pin(pin_dir.join(NODE_ROUTES4)).map_err(map_err)?;
        let map = LpmTrie::try_from(Map::LpmTrie(data)).map_err(map_err)?;
        Ok(Self { map })
    }

    /// Insert or replace the route for `cidr` (one atomic update).
    pub fn upsert(&mut self, cidr: Ipv4Network, hop: &NodeHop) -> Result<(), DatapathError> {
        self.map
            .insert(&key(cidr), NodeRoute4Value::from(hop), 0)
            .map_err(map_err)
    }

    /// Remove the route for `cidr`; absent is fine.
    pub fn remove(&mut self, cidr: Ipv4Network) -> Result<(), DatapathError> {
        match self.map.remove(&key(cidr)) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(source) => Err(map_err(source)),
        }
    }

    /// Every route in the map.
    pub fn list(&self) -> Result<Vec<(Ipv4Network, NodeHop)>, DatapathError> {
        let mut out = Vec::new();
        for item in self.map.iter() {
            let (k, v) = item.map_err(map_err)?;
            let cidr = Ipv4Network::new(Ipv4Addr::from(k.data()), k.prefix_len() as u8)
                .map_err(|_| map_err(aya::maps::MapError::KeyNotFound))?;
            out.push((cidr, NodeHop::from(&v)));
        }
        out.sort();
        Ok(out)
    }
}
