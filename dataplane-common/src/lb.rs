//! Service load-balancing maps: frontends (`LB4_SERVICES`), backend slots (`LB4_SLOTS`),
//! backends (`LB4_BACKENDS`), reverse NAT (`LB4_REVNAT`), ClientIP affinity (`LB4_AFFINITY`)
//! and the socket-level maps (`LB4_SOCK_REVNAT`, `LB4_SOCK_FWD`).
//!
//! Addresses and ports are kept exactly as they appear in packet headers (network byte order,
//! fields suffixed `_be`), so the datapath uses header bytes as keys without swapping. IDs are
//! host byte order.
//!
//! How a packet finds its backend: `LB4_SERVICES[{vip, port, proto, scope}]` gives the frontend's
//! `rev_nat_id`, backend `count` and slot `generation`; a random `slot < count` gives
//! `LB4_SLOTS[{rev_nat_id, generation, slot}] = backend_id`; `LB4_BACKENDS[backend_id]` gives the
//! address. The agent writes a changed backend set under the other generation and then flips
//! the frontend entry in one map update, so a packet sees either the old set or the new one,
//! never half of each.

use core::mem::size_of;

/// IP protocol numbers used in `proto` fields.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Frontend scope: the entry used by traffic from outside the node (and the only entry when a
/// frontend has one backend set for everybody).
pub const LB4_SCOPE_EXT: u8 = 0;
/// Frontend scope: the entry used by traffic from this node's pods and host processes when it
/// differs from the external one (externalTrafficPolicy Local: outside clients get local
/// endpoints only, in-node clients every endpoint, as kube-proxy does).
pub const LB4_SCOPE_INT: u8 = 1;

/// `Lb4Service::flags`: sessionAffinity ClientIP; the timeout is `affinity_timeout_s`.
pub const LB4_SVC_F_AFFINITY: u16 = 1 << 0;
/// `Lb4Service::flags` (on the `LB4_SCOPE_EXT` entry): an `LB4_SCOPE_INT` entry exists for
/// in-node traffic.
pub const LB4_SVC_F_TWO_SCOPES: u16 = 1 << 1;
/// `Lb4Service::flags`: traffic from outside the node to a backend on another node gets its
/// source translated to `snat_addr` so the reply comes back through this node
/// (externalTrafficPolicy Cluster). Without it the client address is kept.
pub const LB4_SVC_F_SNAT_REMOTE: u16 = 1 << 2;

/// `Lb4Service::kind`, for display: what made this frontend.
pub const LB4_KIND_CLUSTER_IP: u8 = 1;
pub const LB4_KIND_NODE_PORT: u8 = 2;
pub const LB4_KIND_EXTERNAL_IP: u8 = 3;
pub const LB4_KIND_LOAD_BALANCER: u8 = 4;

/// `Lb4Backend::flags`: the endpoint runs on this node (informational; the datapath decides
/// locality from `ENDPOINTS4`).
pub const LB4_BACKEND_F_LOCAL: u8 = 1 << 0;
/// `Lb4Backend::flags`: listed but neither ready nor serving. Never chosen for new flows;
/// existing UDP flows move to another backend, existing TCP flows continue.
pub const LB4_BACKEND_F_NOT_SERVING: u8 = 1 << 1;
/// `Lb4Backend::flags`: terminating (informational).
pub const LB4_BACKEND_F_TERMINATING: u8 = 1 << 2;

/// Source address of hairpin flows (a pod reaching itself through a Service): the pod would
/// drop a packet from its own address, so the datapath translates the source to this
/// link-local address and back on the reply (Cilium uses 169.254.42.1 the same way).
pub const HAIRPIN_SNAT_ADDR: [u8; 4] = [169, 254, 42, 1];
/// Source ports the uplink path may pick when it must translate a flow's source (NodePort,
/// externalTrafficPolicy Cluster, backend on another node): above Linux's default ephemeral
/// range (32768-60999), so they do not collide with the node's own connections.
pub const SNAT_PORT_MIN: u16 = 61000;
pub const SNAT_PORT_MAX: u16 = 65535;

/// Key of `LB4_SERVICES`: one frontend (ClusterIP, NodePort on a node address, external IP or
/// load-balancer IP; port; protocol) in one scope. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lb4Key {
    /// Frontend address, network byte order.
    pub addr_be: [u8; 4],
    /// Frontend port, network byte order (the header's bytes read as a native `u16`).
    pub port_be: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    /// `LB4_SCOPE_EXT` or `LB4_SCOPE_INT`.
    pub scope: u8,
}
const _: () = assert!(size_of::<Lb4Key>() == 8);

/// Value of `LB4_SERVICES`. Written whole in one update, last when adding, first when
/// removing. 16 bytes: `rev_nat_id` 0, `count` 2, `flags` 4, `generation` 6, `kind` 7,
/// `affinity_timeout_s` 8, `snat_addr_be` 12.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4Service {
    /// This frontend's id: key of its `LB4_REVNAT` entry and of its slots; never 0.
    pub rev_nat_id: u16,
    /// Backends selectable for new flows: slots `0..count` of `generation`. 0 = refuse.
    pub count: u16,
    /// `LB4_SVC_F_*`.
    pub flags: u16,
    /// Which of the two slot generations (0 or 1) `count` refers to.
    pub generation: u8,
    /// `LB4_KIND_*`.
    pub kind: u8,
    /// sessionAffinity ClientIP timeout in seconds (with `LB4_SVC_F_AFFINITY`).
    pub affinity_timeout_s: u32,
    /// Source address for `LB4_SVC_F_SNAT_REMOTE` (a node address), network byte order.
    pub snat_addr_be: [u8; 4],
}
const _: () = assert!(size_of::<Lb4Service>() == 16);

/// Key of `LB4_SLOTS`. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lb4SlotKey {
    pub rev_nat_id: u16,
    /// `0..count`.
    pub slot: u16,
    /// 0 or 1, see [`Lb4Service::generation`].
    pub generation: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<Lb4SlotKey>() == 8);

/// Value of `LB4_SLOTS`: the backend in that slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4Slot {
    pub backend_id: u32,
}
const _: () = assert!(size_of::<Lb4Slot>() == 4);

/// Value of `LB4_BACKENDS` (key: backend id, `u32`, never 0). One entry per distinct
/// (address, port, protocol), shared by every frontend that uses it. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4Backend {
    pub addr_be: [u8; 4],
    pub port_be: u16,
    pub proto: u8,
    /// `LB4_BACKEND_F_*`.
    pub flags: u8,
}
const _: () = assert!(size_of::<Lb4Backend>() == 8);

/// Value of `LB4_REVNAT` (key: `rev_nat_id`, `u16`): the frontend a reply's source is
/// rewritten to. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4RevNat {
    pub addr_be: [u8; 4],
    pub port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<Lb4RevNat>() == 8);

/// Key of `LB4_AFFINITY`: one client of one frontend. The packet path identifies the client
/// by address (`netns_cookie` 0), the socket hooks by network namespace (`client_addr_be` 0:
/// the source address is not known yet at `connect()`). 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lb4AffinityKey {
    pub netns_cookie: u64,
    pub client_addr_be: [u8; 4],
    pub rev_nat_id: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<Lb4AffinityKey>() == 16);

/// Value of `LB4_AFFINITY`. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4Affinity {
    /// `bpf_ktime_get_ns()` of the last new flow of this client to this frontend.
    pub last_used_ns: u64,
    pub backend_id: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Lb4Affinity>() == 16);

/// Key of `LB4_SOCK_REVNAT`: a socket the socket hooks connected (or sent) to a backend, and
/// that backend. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lb4SockKey {
    /// `bpf_get_socket_cookie()`.
    pub cookie: u64,
    pub addr_be: [u8; 4],
    pub port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<Lb4SockKey>() == 16);

/// Value of `LB4_SOCK_REVNAT`: the Service address `getpeername()`/`recvmsg()` report instead
/// of the backend's. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4SockRevNat {
    pub addr_be: [u8; 4],
    pub port_be: u16,
    pub rev_nat_id: u16,
}
const _: () = assert!(size_of::<Lb4SockRevNat>() == 8);

/// Value of `LB4_SOCK_FWD` (key: [`Lb4SockKey`] with the *Service* address and port): the
/// backend a socket's datagrams to that Service go to, so an unconnected UDP socket keeps one
/// backend per Service as a conntrack entry keeps a flow's (a new choice only when that
/// backend is gone or stopped serving). 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4SockFwd {
    pub backend_id: u32,
    pub addr_be: [u8; 4],
    pub port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<Lb4SockFwd>() == 12);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain `#[repr(C)]` data without implicit padding (sizes asserted above); every
    // bit pattern is a valid value.
    unsafe impl aya::Pod for Lb4Key {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4Service {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4SlotKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4Slot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4Backend {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4RevNat {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4AffinityKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4Affinity {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4SockKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4SockRevNat {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Lb4SockFwd {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of};

    #[test]
    fn lb4_service_layout_is_stable() {
        assert_eq!(offset_of!(Lb4Service, rev_nat_id), 0);
        assert_eq!(offset_of!(Lb4Service, count), 2);
        assert_eq!(offset_of!(Lb4Service, flags), 4);
        assert_eq!(offset_of!(Lb4Service, generation), 6);
        assert_eq!(offset_of!(Lb4Service, kind), 7);
        assert_eq!(offset_of!(Lb4Service, affinity_timeout_s), 8);
        assert_eq!(offset_of!(Lb4Service, snat_addr_be), 12);
        assert_eq!(align_of::<Lb4Service>(), 4);
    }

    #[test]
    fn keys_have_no_implicit_padding() {
        // Hash keys are compared bytewise by the kernel: implicit padding would make two equal
        // keys differ. Every byte is a named field (sizes are the sums of the fields).
        assert_eq!(size_of::<Lb4Key>(), 4 + 2 + 1 + 1);
        assert_eq!(size_of::<Lb4SlotKey>(), 2 + 2 + 1 + 3);
        assert_eq!(size_of::<Lb4AffinityKey>(), 8 + 4 + 2 + 2);
        assert_eq!(size_of::<Lb4SockKey>(), 8 + 4 + 2 + 2);
        assert_eq!(offset_of!(Lb4AffinityKey, client_addr_be), 8);
        assert_eq!(offset_of!(Lb4SockKey, addr_be), 8);
    }

    #[test]
    fn lb4_key_port_is_the_header_bytes() {
        let key = Lb4Key {
            addr_be: [10, 32, 0, 10],
            port_be: 53u16.to_be(),
            proto: IPPROTO_UDP,
            scope: LB4_SCOPE_EXT,
        };
        // SAFETY: Lb4Key is repr(C), 8 bytes, no padding.
        let bytes: [u8; 8] = unsafe { core::mem::transmute(key) };
        assert_eq!(bytes, [10, 32, 0, 10, 0, 53, 17, 0]);
    }

    #[test]
    fn snat_port_range_is_above_the_default_ephemeral_range() {
        const { assert!(SNAT_PORT_MIN > 60999 && SNAT_PORT_MIN < SNAT_PORT_MAX) };
    }
}
