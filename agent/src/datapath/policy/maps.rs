//! The NetworkPolicy maps from user space: `IPCACHE4`, `POLICY4` and `POLICY_EP4`. Their one
//! writer is the policy reconciler, which opens the pins on its own (created by
//! [`crate::datapath::Datapath::open`]), as the routing reconciler does with `NODE_ROUTES4`.

use std::net::Ipv4Addr;
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap, Map, MapData, MapError};
use dataplane_common::maps::{IPCACHE4, POLICY4, POLICY_EP4};
use dataplane_common::policy::{
    POLICY4_BITS_ANY_PROTO, POLICY4_BITS_PROTO, POLICY_DIR_EGRESS, POLICY_DIR_INGRESS,
    POLICY_EP_F_EGRESS, POLICY_EP_F_INGRESS,
};
use dataplane_common::{Endpoint4Key, IpCache4Value, Policy4Data, Policy4Value, PolicyEp4Value};
use ipnetwork::Ipv4Network;

use crate::datapath::DatapathError;
use crate::policy::{Direction, IpIdentity, PortBlock, PortMatch, Proto, RuleKey};

/// What `POLICY_EP4` says of one local pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyEndpoint {
    /// Names the pod's current `POLICY4` entries (never 0).
    pub policy_id: u32,
    pub ingress_isolated: bool,
    pub egress_isolated: bool,
}

impl From<&PolicyEndpoint> for PolicyEp4Value {
    fn from(e: &PolicyEndpoint) -> Self {
        let mut flags = 0;
        if e.ingress_isolated {
            flags |= POLICY_EP_F_INGRESS;
        }
        if e.egress_isolated {
            flags |= POLICY_EP_F_EGRESS;
        }
        Self {
            policy_id: e.policy_id,
            flags,
        }
    }
}

fn dir_number(d: Direction) -> u8 {
    match d {
        Direction::Ingress => POLICY_DIR_INGRESS,
        Direction::Egress => POLICY_DIR_EGRESS,
    }
}

/// The `POLICY4` key of `key` under `policy_id` for direction `dir`.
pub fn rule_key(policy_id: u32, dir: Direction, key: &RuleKey) -> Key<Policy4Data> {
    let dir = dir_number(dir);
    match key.ports {
        PortMatch::AnyProto => Key::new(
            POLICY4_BITS_ANY_PROTO,
            Policy4Data::new(policy_id, dir, key.peer, 0, 0),
        ),
        PortMatch::Proto(p, block) => Key::new(
            POLICY4_BITS_PROTO + u32::from(block.bits),
            Policy4Data::new(policy_id, dir, key.peer, p.number(), block.port),
        ),
    }
}

/// The (policy id, direction, key) a raw `POLICY4` entry holds; `None` for one this build
/// would not write.
pub fn decode_rule(prefix_len: u32, data: &Policy4Data) -> Option<(u32, Direction, RuleKey)> {
    let dir = match data.dir {
        POLICY_DIR_INGRESS => Direction::Ingress,
        POLICY_DIR_EGRESS => Direction::Egress,
        _ => return None,
    };
    let peer = u32::from_be_bytes(data.peer_be);
    let ports = match prefix_len {
        POLICY4_BITS_ANY_PROTO => PortMatch::AnyProto,
        len if (POLICY4_BITS_PROTO..=POLICY4_BITS_PROTO + 16).contains(&len) => PortMatch::Proto(
            Proto::from_number(data.proto)?,
            PortBlock {
                port: u16::from_be_bytes(data.port_be),
                bits: (len - POLICY4_BITS_PROTO) as u8,
            },
        ),
        _ => return None,
    };
    Some((
        u32::from_be_bytes(data.policy_id_be),
        dir,
        RuleKey { peer, ports },
    ))
}

fn net_key(net: Ipv4Network) -> Key<[u8; 4]> {
    Key::new(u32::from(net.prefix()), net.network().octets())
}

/// Whether a map error says the key was not there (fine for a removal).
fn absent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Handles on the three pinned policy maps.
pub struct PolicyMaps {
    ipcache: LpmTrie<MapData, [u8; 4], IpCache4Value>,
    rules: LpmTrie<MapData, Policy4Data, Policy4Value>,
    endpoints: HashMap<MapData, Endpoint4Key, PolicyEp4Value>,
}

fn open_map(pin_dir: &Path, name: &'static str) -> Result<MapData, DatapathError> {
    MapData::from_pin(pin_dir.join(name)).map_err(|source| DatapathError::Map { name, source })
}

impl PolicyMaps {
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let err = |name| move |source| DatapathError::Map { name, source };
        Ok(Self {
            ipcache: LpmTrie::try_from(Map::LpmTrie(open_map(pin_dir, IPCACHE4)?))
                .map_err(err(IPCACHE4))?,
            rules: LpmTrie::try_from(Map::LpmTrie(open_map(pin_dir, POLICY4)?))
                .map_err(err(POLICY4))?,
            endpoints: HashMap::try_from(Map::HashMap(open_map(pin_dir, POLICY_EP4)?))
                .map_err(err(POLICY_EP4))?,
        })
    }

    /// Write the identities of `net` (one atomic update).
    pub fn set_identity(&mut self, net: Ipv4Network, id: IpIdentity) -> Result<(), DatapathError> {
        let value = IpCache4Value {
            label: id.label,
            prefix: id.prefix,
        };
        self.ipcache
            .insert(&net_key(net), value, 0)
            .map_err(|source| DatapathError::Map {
                name: IPCACHE4,
                source,
            })
    }

    /// Forget `net`; absent is fine.
    pub fn remove_identity(&mut self, net: Ipv4Network) -> Result<(), DatapathError> {
        match self.ipcache.remove(&net_key(net)) {
            Err(e) if !absent(&e) => Err(DatapathError::Map {
                name: IPCACHE4,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every `IPCACHE4` entry.
    pub fn identities(&self) -> Result<Vec<(Ipv4Network, IpIdentity)>, DatapathError> {
        let err = |source| DatapathError::Map {
            name: IPCACHE4,
            source,
        };
        let mut out = Vec::new();
        for item in self.ipcache.iter() {
            let (k, v) = item.map_err(err)?;
            let Ok(net) = Ipv4Network::new(Ipv4Addr::from(k.data()), k.prefix_len() as u8) else {
                continue;
            };
            out.push((
                net,
                IpIdentity {
                    label: v.label,
                    prefix: v.prefix,
                },
            ));
        }
        Ok(out)
    }

    /// Allow `key` for endpoints whose policy id is `policy_id`, in direction `dir`.
    pub fn insert_rule(
        &mut self,
        policy_id: u32,
        dir: Direction,
        key: &RuleKey,
    ) -> Result<(), DatapathError> {
        self.rules
            .insert(&rule_key(policy_id, dir, key), Policy4Value::default(), 0)
            .map_err(|source| DatapathError::Map {
                name: POLICY4,
                source,
            })
    }

    /// Remove an allow entry; absent is fine.
    pub fn remove_rule(
        &mut self,
        policy_id: u32,
        dir: Direction,
        key: &RuleKey,
    ) -> Result<(), DatapathError> {
        match self.rules.remove(&rule_key(policy_id, dir, key)) {
            Err(e) if !absent(&e) => Err(DatapathError::Map {
                name: POLICY4,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every `POLICY4` key with its prefix length, raw (for the reconciler's resume and
    /// clean-up, and for tests).
    pub fn raw_rules(&self) -> Result<Vec<(u32, Policy4Data)>, DatapathError> {
        let err = |source| DatapathError::Map {
            name: POLICY4,
            source,
        };
        self.rules
            .keys()
            .map(|k| k.map(|k| (k.prefix_len(), k.data())).map_err(err))
            .collect()
    }

    /// Remove a raw `POLICY4` key; absent is fine.
    pub fn remove_raw_rule(
        &mut self,
        prefix_len: u32,
        data: Policy4Data,
    ) -> Result<(), DatapathError> {
        match self.rules.remove(&Key::new(prefix_len, data)) {
            Err(e) if !absent(&e) => Err(DatapathError::Map {
                name: POLICY4,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Point local pod `ip` at its entries and isolation (one atomic update).
    pub fn set_endpoint(&mut self, ip: Ipv4Addr, ep: &PolicyEndpoint) -> Result<(), DatapathError> {
        self.endpoints
            .insert(Endpoint4Key::new(ip.octets()), PolicyEp4Value::from(ep), 0)
            .map_err(|source| DatapathError::Map {
                name: POLICY_EP4,
                source,
            })
    }

    /// Stop tracking local pod `ip`; absent is fine.
    pub fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), DatapathError> {
        match self.endpoints.remove(&Endpoint4Key::new(ip.octets())) {
            Err(e) if !absent(&e) => Err(DatapathError::Map {
                name: POLICY_EP4,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every `POLICY_EP4` entry.
    pub fn endpoints(&self) -> Result<Vec<(Ipv4Addr, PolicyEndpoint)>, DatapathError> {
        let err = |source| DatapathError::Map {
            name: POLICY_EP4,
            source,
        };
        let mut out = Vec::new();
        for item in self.endpoints.iter() {
            let (k, v) = item.map_err(err)?;
            out.push((
                Ipv4Addr::from(k.addr_be),
                PolicyEndpoint {
                    policy_id: v.policy_id,
                    ingress_isolated: v.flags & POLICY_EP_F_INGRESS != 0,
                    egress_isolated: v.flags & POLICY_EP_F_EGRESS != 0,
                },
            ));
        }
        out.sort_by_key(|(ip, _)| *ip);
        Ok(out)
    }
}
