//! `weft policy trace`: would a packet from one address to another be allowed, and by which
//! rule? Answered from the translation's state with the lookups the datapath makes.

use std::fmt;
use std::net::Ipv4Addr;

use super::identity::HOST;
use super::model::{Direction, PolicyState, RuleKey, RuleRef};
use super::objects::ObjectName;

/// The answer for one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// That end is not a selected pod, or no policy isolates it in this direction.
    NotIsolated,
    /// From this node's own addresses into its pods: always allowed.
    FromNode,
    Allowed {
        key: RuleKey,
        rules: Vec<RuleRef>,
    },
    /// Isolated and no rule allows it.
    Denied {
        isolated_by: Vec<ObjectName>,
    },
}

impl Verdict {
    pub fn allows(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotIsolated => f.write_str("allowed (not isolated)"),
            Self::FromNode => f.write_str("allowed (from the node itself)"),
            Self::Allowed { rules, .. } => {
                let r: Vec<String> = rules.iter().map(ToString::to_string).collect();
                write!(f, "allowed by {}", r.join(", "))
            }
            Self::Denied { isolated_by } => {
                let p: Vec<String> = isolated_by.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "denied (isolated by {}; no rule allows it)",
                    p.join(", ")
                )
            }
        }
    }
}

/// Both halves of a trace: the sender's egress, the receiver's ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub egress: Verdict,
    pub ingress: Verdict,
}

impl Trace {
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

/// Trace a new connection `src -> dst` to `proto`/`port` (an IP protocol number).
pub fn trace(state: &PolicyState, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, port: u16) -> Trace {
    let judge = |at: Ipv4Addr, peer: Ipv4Addr, dir: Direction| {
        let Some(ep) = state.endpoints.get(&at) else {
            return Verdict::NotIsolated;
        };
        let d = ep.direction(dir);
        if !d.isolated() {
            return Verdict::NotIsolated;
        }
        let peer = state.identify(peer);
        if dir == Direction::Ingress && peer.label == HOST {
            return Verdict::FromNode;
        }
        match d.lookup(peer, proto, port) {
            Some((key, rules)) => Verdict::Allowed {
                key: *key,
                rules: rules.to_vec(),
            },
            None => Verdict::Denied {
                isolated_by: d.isolated_by.clone(),
            },
        }
    };
    Trace {
        egress: judge(src, dst, Direction::Egress),
        ingress: judge(dst, src, Direction::Ingress),
    }
}
