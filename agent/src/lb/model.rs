//! What the datapath should hold for Services, in user-space terms (no ids, no byte order):
//! frontends, their backends and flags. The translation produces it; the datapath reconciler
//! consumes it.

use std::fmt;
use std::net::Ipv4Addr;

/// `namespace/name` of a Kubernetes Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// L4 protocols the datapath translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }

    /// From an IP protocol number.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Self::Tcp),
            17 => Some(Self::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        })
    }
}

/// Which clients a frontend entry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Traffic from outside the node, and everybody when the frontend has one entry.
    External,
    /// Traffic from this node's pods and processes, when it gets other backends than outside
    /// clients (externalTrafficPolicy Local).
    Internal,
}

/// An address, port and protocol clients connect to, in one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub scope: Scope,
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.addr, self.port, self.protocol)?;
        if self.scope == Scope::Internal {
            f.write_str(" (in-node)")?;
        }
        Ok(())
    }
}

/// What made a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrontendKind {
    ClusterIp,
    NodePort,
    ExternalIp,
    LoadBalancer,
}

impl fmt::Display for FrontendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClusterIp => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::ExternalIp => "ExternalIP",
            Self::LoadBalancer => "LoadBalancer",
        })
    }
}

/// Whether a backend takes new flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendState {
    /// Chosen for new flows.
    Active,
    /// Serving but terminating while ready endpoints exist (KEP-1669): no new flows, existing
    /// ones continue.
    Draining,
    /// Listed but neither ready nor serving: no new flows; existing UDP flows move elsewhere,
    /// existing TCP flows continue.
    NotServing,
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::NotServing => "not-serving",
        })
    }
}

/// One endpoint address and port behind a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub state: BackendState,
    /// The endpoint is terminating (an `Active` one is then the KEP-1669 fallback).
    pub terminating: bool,
    /// On this node.
    pub local: bool,
}

/// Everything the datapath needs for one frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendSpec {
    pub frontend: Frontend,
    pub kind: FrontendKind,
    /// The Service port's name ("" when unnamed).
    pub port_name: String,
    /// Sorted by address and port; only `Active` ones take new flows.
    pub backends: Vec<Backend>,
    /// sessionAffinity ClientIP and its timeout.
    pub affinity_timeout_s: Option<u32>,
    /// An `Internal` entry exists beside this `External` one.
    pub two_scopes: bool,
    /// Outside clients of a remote backend get this source address (externalTrafficPolicy
    /// Cluster on NodePort/externalIP/load-balancer frontends).
    pub snat_remote: Option<Ipv4Addr>,
}

impl FrontendSpec {
    /// Backends that take new flows, in order.
    pub fn active(&self) -> impl Iterator<Item = &Backend> {
        self.backends
            .iter()
            .filter(|b| b.state == BackendState::Active)
    }
}

/// Something of a Service the translation did not turn into frontends, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub what: String,
    pub why: String,
}

/// The desired datapath state of one Kubernetes Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: ServiceName,
    /// Sorted by frontend.
    pub frontends: Vec<FrontendSpec>,
    pub skipped: Vec<Skipped>,
}
