//! Typed requests and responses of the agent socket protocol.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::rows::{CtEntry, PolicyEndpointRow, ProgStatRow, ServiceRow, TraceReport};
/// The shared identifiers the protocol carries.
pub use crate::ids::{AttachmentKey, Mac, PodRef};

/// A request line: the protocol version and one operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub v: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// Operations the agent serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Allocate (or return the existing) address of an attachment. `pod_cidr` comes from the
    /// CNI config's `podCIDR`; without it the agent uses its own node pod CIDR.
    Allocate {
        key: AttachmentKey,
        pod_cidr: Option<Ipv4Network>,
        /// The pod, when the runtime said (Kubernetes runtimes always do).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod: Option<PodRef>,
    },
    /// The veth exists: record the endpoint and attach `from_pod` to the host side.
    Register {
        key: AttachmentKey,
        endpoint: EndpointSpec,
        /// How long the plugin's steps of this ADD took so far (`weft_cni_step_seconds`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<StepTime>,
    },
    /// Undo everything of an attachment: endpoint entry, tc attachment, host veth, address.
    /// Unknown attachments succeed with `ip: None`.
    Release { key: AttachmentKey },
    /// The recorded state of one attachment (for CHECK).
    Lookup { key: AttachmentKey },
    /// Release every attachment not in `valid`.
    Gc { valid: Vec<AttachmentKey> },
    /// Readiness and inventory (for CNI STATUS and `weft status`).
    Status,
    /// Switch the eBPF programs' debug log lines on or off (`weft bpf-log on|off`).
    SetBpfLog { on: bool },
    /// The Service frontends and their backends as the datapath holds them (`weft service list`).
    ServiceList,
    /// The conntrack entries of translated flows (`weft ct list`).
    CtList,
    /// This node's pods with their NetworkPolicy isolation and allowed keys
    /// (`weft policy list`).
    PolicyList,
    /// Would a new connection from `from` to `to` on `protocol`/`port` be allowed, and by
    /// which rule (`weft policy trace`)? `from`/`to`: `ns/pod`, `pod` (in `default`) or an
    /// IPv4 address.
    PolicyTrace {
        from: String,
        to: String,
        protocol: String,
        port: u16,
    },
    /// The eBPF programs' run-time statistics; `enable` switches the kernel's counting on or
    /// off first (`weft bpf-stats`).
    ProgStats {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enable: Option<bool>,
    },
}

/// A step of a CNI call, for the `weft_cni_step_seconds` histogram: the plugin's steps (sent
/// with `Register`) and the agent's (measured where they run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CniStep {
    /// Plugin: the `Allocate` request, socket round trip included.
    AllocateCall,
    /// Plugin: the veth pair created and both ends read back.
    Veth,
    /// Plugin: the pod end's address, link up, gateway neighbour and default route.
    PodSide,
    /// Plugin: the host end up and its /32 route.
    HostSide,
    /// Agent: the address allocated and the IPAM store written.
    Allocate,
    /// Agent: the ENDPOINTS entry written.
    Endpoint,
    /// Agent: `from_pod`/`to_pod` attached to the host veth.
    Attach,
    /// Agent (DEL): the ENDPOINTS entry removed.
    EndpointRemove,
    /// Agent (DEL): the host veth deleted (its filters and the pod end go with it).
    VethDelete,
    /// Agent (DEL): the address released and the IPAM store written.
    Release,
    /// A step this agent does not know (a newer plugin's); not recorded.
    #[serde(other)]
    Unknown,
}

impl CniStep {
    /// Every step, in the order a call runs them.
    pub const ALL: [CniStep; 10] = [
        Self::AllocateCall,
        Self::Veth,
        Self::PodSide,
        Self::HostSide,
        Self::Allocate,
        Self::Endpoint,
        Self::Attach,
        Self::EndpointRemove,
        Self::VethDelete,
        Self::Release,
    ];

    /// The metric's `step` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::AllocateCall => "allocate_call",
            Self::Veth => "veth",
            Self::PodSide => "pod_side",
            Self::HostSide => "host_side",
            Self::Allocate => "allocate",
            Self::Endpoint => "endpoint",
            Self::Attach => "attach",
            Self::EndpointRemove => "endpoint_remove",
            Self::VethDelete => "veth_delete",
            Self::Release => "release",
            Self::Unknown => "unknown",
        }
    }

    /// The CNI verb the step belongs to (the metric's `verb` label).
    pub fn verb(self) -> &'static str {
        match self {
            Self::EndpointRemove | Self::VethDelete | Self::Release => "del",
            _ => "add",
        }
    }
}

/// How long one step took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTime {
    pub step: CniStep,
    pub micros: u64,
}

impl StepTime {
    pub fn new(step: CniStep, took: std::time::Duration) -> Self {
        Self {
            step,
            micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// What the plugin tells the agent about a freshly made veth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub ip: Ipv4Addr,
    pub host_ifname: String,
    pub host_mac: Mac,
    pub pod_mac: Mac,
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub v: u32,
    #[serde(flatten)]
    pub response: Result<Response, ApiError>,
}

/// Successful answers, one per request kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Allocated {
        ip: Ipv4Addr,
        pod_cidr: Ipv4Network,
    },
    Registered {
        ifindex: u32,
    },
    Released {
        ip: Option<Ipv4Addr>,
    },
    Attachment {
        ip: Option<Ipv4Addr>,
        registered: bool,
    },
    GcDone {
        released: Vec<(AttachmentKey, Ipv4Addr)>,
    },
    Status(StatusReport),
    BpfLog {
        on: bool,
    },
    Services {
        services: Vec<ServiceRow>,
    },
    Conntrack {
        entries: Vec<CtEntry>,
    },
    Policies {
        endpoints: Vec<PolicyEndpointRow>,
    },
    PolicyTrace(TraceReport),
    ProgStats {
        /// Whether the kernel counts (this agent holds statistics on).
        enabled: bool,
        programs: Vec<ProgStatRow>,
    },
}

/// Readiness and inventory of the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub pod_cidr: Option<Ipv4Network>,
    pub allocated: usize,
    pub capacity: usize,
    pub attachments: Vec<AttachmentInfo>,
    pub endpoints: Vec<EndpointInfo>,
    pub drops: Vec<(String, u64)>,
    /// Service path counters (`new_flows`, `ct_miss_established`, `affinity_hits`,
    /// `reply_restored`): not drops, signs of how the datapath's conntrack fares.
    #[serde(default)]
    pub service_counters: Vec<(String, u64)>,
    /// This node's name, when the agent runs as a Kubernetes controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Routes to other nodes' pod CIDRs, as the routing reconciler last programmed them.
    #[serde(default)]
    pub routes: Vec<RouteInfo>,
    /// How the datapath forwards: `host_routing` (`bpf`, `kernel`) and `handoff` (`none`,
    /// `takeover`: weft takes new Service connections and leaves kube-proxy's to the kernel,
    /// `release`: kube-proxy takes new ones, weft keeps its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<ForwardingInfo>,
}

/// The datapath's node-wide forwarding settings, as the programs read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardingInfo {
    pub host_routing: String,
    pub handoff: String,
}

/// One route to another node's pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    pub pod_cidr: Ipv4Network,
    pub node: String,
    pub node_ip: Ipv4Addr,
    /// `native` (via the uplink) or `vxlan`.
    pub via: String,
}

/// One IPAM allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    pub key: AttachmentKey,
    pub ip: Ipv4Addr,
}

/// One ENDPOINTS entry as the datapath holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointInfo {
    pub ip: Ipv4Addr,
    pub ifindex: u32,
    pub host_mac: Mac,
    pub pod_mac: Mac,
    /// Which `from_pod` program the pod's host veth runs.
    #[serde(default)]
    pub program: LinkProgram,
}

/// Which `from_pod` program an endpoint's host veth runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkProgram {
    /// This agent's program.
    Current,
    /// An earlier agent's program (still forwarding; this agent has not switched it yet).
    Previous,
    /// Nothing attached: the pod's traffic is not forwarded by weft.
    #[default]
    Missing,
}

/// An error the agent reports; `kind` lets the plugin map it to a CNI error code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {msg}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub msg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request's protocol version is not spoken by this agent.
    UnsupportedVersion,
    /// The request line could not be decoded.
    BadRequest,
    /// Neither the request nor the agent knows a pod CIDR.
    NoPodCidr,
    /// The pod CIDR asked for differs from the one the store holds allocations in.
    CidrMismatch,
    /// No free address left.
    Exhausted,
    /// The store could not be read or written.
    Store,
    /// The kernel side (maps, tc attachment, links) failed.
    Datapath,
    /// The agent cannot answer this yet (NetworkPolicy not running: no Kubernetes, or no pass
    /// done yet).
    Unavailable,
}

impl ApiError {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_round_trips_with_version_and_op_tag() {
        let req = RequestEnvelope {
            v: 1,
            request: Request::Allocate {
                key: AttachmentKey {
                    container_id: "abc".into(),
                    ifname: "eth0".into(),
                },
                pod_cidr: Some("10.200.1.0/24".parse().unwrap()),
                pod: None,
            },
        };
        let line = serde_json::to_string(&req).unwrap();
        assert!(
            line.contains(r#""v":1"#) && line.contains(r#""op":"allocate""#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<RequestEnvelope>(&line).unwrap(), req);
    }

    #[test]
    fn response_wire_format_is_the_documented_one() {
        let ok = ResponseEnvelope {
            v: 1,
            response: Ok(Response::Released { ip: None }),
        };
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"v":1,"Ok":{"kind":"released","ip":null}}"#
        );
        let err = ResponseEnvelope {
            v: 1,
            response: Err(ApiError::new(ErrorKind::NoPodCidr, "x")),
        };
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"v":1,"Err":{"kind":"no_pod_cidr","msg":"x"}}"#
        );
    }

    #[test]
    fn error_response_round_trips() {
        let resp = ResponseEnvelope {
            v: 1,
            response: Err(ApiError::new(ErrorKind::Exhausted, "no address left")),
        };
        let line = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            serde_json::from_str::<ResponseEnvelope>(&line).unwrap(),
            resp
        );
    }

    #[test]
    fn mac_parses_and_prints_and_rejects_garbage() {
        let m: Mac = "0a:1b:2c:3d:4e:5f".parse().unwrap();
        assert_eq!(m.0, [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]);
        assert_eq!(m.to_string(), "0a:1b:2c:3d:4e:5f");
        for bad in [
            "",
            "0a:1b:2c:3d:4e",
            "0a:1b:2c:3d:4e:5f:60",
            "zz:1b:2c:3d:4e:5f",
            "a:1b:2c:3d:4e:5f",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} accepted");
        }
    }
}
