//! What the datapath should hold for NetworkPolicy, in user-space terms: the address →
//! identity table and, per local endpoint and direction, whether it is isolated and which
//! {peer identity, protocol, port block} keys are allowed, each with the rules that allow it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::identity::{LabelSet, ANY};
use super::objects::{ObjectName, Proto};
use super::ports::PortBlock;

/// Traffic direction as seen from a local endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        })
    }
}

/// What the address table says of one address: the identity of its labels (a pod's, or
/// `WORLD`/`HOST`) and the identity of the longest policy prefix holding it (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpIdentity {
    pub label: u32,
    pub prefix: u32,
}

/// The protocol and ports part of a rule key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortMatch {
    /// Every protocol (a rule without `ports`).
    AnyProto,
    /// One protocol, ports in the block (`bits` 0: every port).
    Proto(Proto, PortBlock),
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AnyProto => f.write_str("any"),
            Self::Proto(p, b) if b.bits == 0 => write!(f, "{p} *"),
            Self::Proto(p, b) if b.bits == 16 => write!(f, "{p} {}", b.port),
            Self::Proto(p, b) => write!(f, "{p} {}-{}", b.port, b.last()),
        }
    }
}

/// One allowed key: a peer identity (`ANY` for every peer) and what it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleKey {
    pub peer: u32,
    pub ports: PortMatch,
}

/// Which rule of which policy allows a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    pub policy: ObjectName,
    pub direction: Direction,
    pub index: usize,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]", self.policy, self.direction, self.index)
    }
}

/// One direction of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionPolicy {
    /// The policies that select the endpoint for this direction; empty: not isolated.
    pub isolated_by: Vec<ObjectName>,
    pub allow: BTreeMap<RuleKey, Vec<RuleRef>>,
}

impl DirectionPolicy {
    pub fn isolated(&self) -> bool {
        !self.isolated_by.is_empty()
    }

    /// The key that allows `proto`/`port` from or to `peer`, as the datapath looks it up:
    /// the peer's label identity, then its prefix identity, then `ANY`; within each, the
    /// longest protocol/port match.
    pub fn lookup(&self, peer: IpIdentity, proto: u8, port: u16) -> Option<(&RuleKey, &[RuleRef])> {
        let proto = Proto::from_number(proto);
        let ids = [
            Some(peer.label),
            (peer.prefix != 0).then_some(peer.prefix),
            Some(ANY),
        ];
        ids.into_iter().flatten().find_map(|id| {
            let specific = proto.into_iter().flat_map(|p| {
                (0..=16u8).rev().map(move |bits| {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u16::MAX << (16 - bits)
                    };
                    PortMatch::Proto(
                        p,
                        PortBlock {
                            port: port & mask,
                            bits,
                        },
                    )
                })
            });
            specific
                .chain([PortMatch::AnyProto])
                .find_map(|ports| self.allow.get_key_value(&RuleKey { peer: id, ports }))
                .map(|(k, v)| (k, v.as_slice()))
        })
    }
}

/// The policy state of one local endpoint (a pod with a pod address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPolicy {
    pub pod: ObjectName,
    pub ip: Ipv4Addr,
    pub identity: u32,
    pub ingress: DirectionPolicy,
    pub egress: DirectionPolicy,
}

impl EndpointPolicy {
    pub fn direction(&self, d: Direction) -> &DirectionPolicy {
        match d {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Everything the translation decided.
#[derive(Debug, Clone, Default)]
pub struct PolicyState {
    /// Label identities in use, for display.
    pub identities: BTreeMap<u32, LabelSet>,
    /// Prefix identities in use.
    pub prefixes: BTreeMap<u32, Ipv4Network>,
    /// The address table: pod /32s, this node's addresses, every policy prefix. An address
    /// it does not hold is `WORLD` with no prefix.
    pub ipcache: BTreeMap<Ipv4Network, IpIdentity>,
    /// The selected endpoints, by address.
    pub endpoints: BTreeMap<Ipv4Addr, EndpointPolicy>,
    /// Policy parts that match nothing, and why.
    pub problems: Vec<(ObjectName, String)>,
}

impl PolicyState {
    /// What the address table answers for `ip` (longest prefix).
    pub fn identify(&self, ip: Ipv4Addr) -> IpIdentity {
        self.ipcache
            .iter()
            .filter(|(net, _)| net.contains(ip))
            .max_by_key(|(net, _)| net.prefix())
            .map(|(_, id)| *id)
            .unwrap_or(IpIdentity {
                label: super::identity::WORLD,
                prefix: 0,
            })
    }
}
