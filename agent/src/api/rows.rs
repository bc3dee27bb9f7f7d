//! The rows the listing requests answer with (`weft service list`, `weft ct list`, `weft
//! policy list|trace`, `weft bpf-stats`): plain data the datapath and the policy task fill in, so the protocol
//! depends on neither.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// One `LB4_SERVICES` entry with its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// rev_nat_id.
    pub id: u16,
    pub address: Ipv4Addr,
    pub port: u16,
    pub protocol: String,
    /// `external`, or `in-node` for the second entry of an externalTrafficPolicy Local frontend.
    pub scope: String,
    /// ClusterIP, NodePort, ExternalIP, LoadBalancer.
    pub kind: String,
    /// `namespace/name` of the owning Service, when this agent programmed it.
    pub service: Option<String>,
    pub port_name: Option<String>,
    /// `affinity=<s>`, `two-scopes`, `snat-remote=<addr>`.
    pub flags: Vec<String>,
    /// Slot generation in use.
    pub generation: u8,
    /// The backends of the slots, in slot order.
    pub backends: Vec<BackendRow>,
}

/// One backend of a frontend's slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRow {
    pub id: u32,
    pub slot: u16,
    /// `None` when the slot names a backend `LB4_BACKENDS` does not hold (inconsistent maps).
    pub address: Option<Ipv4Addr>,
    pub port: u16,
    /// `local`, `terminating`, `not-serving`.
    pub flags: Vec<String>,
}

/// One conntrack entry in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEntry {
    /// `service` (client -> frontend, as sent), `reply` (backend -> client, as sent), or
    /// `policy-egress` / `policy-ingress` (a flow NetworkPolicy let out of or into a local pod).
    pub kind: String,
    pub protocol: String,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// Service entries: the backend; reply entries: the original client.
    pub nat_addr: Ipv4Addr,
    pub nat_port: u16,
    /// Service entries with a translated source: that source.
    pub snat: Option<(Ipv4Addr, u16)>,
    pub backend_id: u32,
    pub rev_nat_id: u16,
    /// `snat`, `closing`, `hairpin`, `external`.
    pub flags: Vec<String>,
    /// Seconds since a packet last refreshed it.
    pub idle_s: u64,
    /// Seconds until it expires unless refreshed (0: expired, until the sweep or a reuse).
    pub expires_in_s: u64,
}

/// One local pod as NetworkPolicy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEndpointRow {
    /// `namespace/name`.
    pub pod: String,
    pub ip: Ipv4Addr,
    pub ingress: PolicyDirectionRow,
    pub egress: PolicyDirectionRow,
}

/// One direction of a pod: the policies isolating it (none: not isolated) and what they allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDirectionRow {
    pub isolated_by: Vec<String>,
    pub allow: Vec<PolicyRuleRow>,
}

/// One allowed key: the peer (`any`, an identity with its labels, or a prefix), the protocol
/// and ports, and the rules (`ns/policy ingress[i]`) that allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRuleRow {
    pub peer: String,
    pub ports: String,
    pub rules: Vec<String>,
}

/// The answer of `weft policy trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReport {
    pub from: String,
    pub to: String,
    pub protocol: String,
    pub port: u16,
    /// The sender's egress verdict in words, and the receiver's ingress verdict.
    pub egress: String,
    pub ingress: String,
    pub allowed: bool,
}

/// One eBPF program's run-time statistics as the kernel counts them (`weft bpf-stats`):
/// totals since the program was loaded, counted only while statistics are on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgStatRow {
    pub program: String,
    /// The kernel's program id.
    pub id: u32,
    pub runs: u64,
    pub run_ns: u64,
}
