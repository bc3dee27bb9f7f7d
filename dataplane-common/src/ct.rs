//! `CT4`: connection tracking for translated flows (LRU hash).
//!
//! A new flow to a Service creates two entries: a `CT4_KIND_SERVICE` entry keyed by the
//! packet as the client sent it (client -> frontend), holding the chosen backend and any source
//! translation; and a `CT4_KIND_REPLY` entry keyed by the reply as it leaves the backend
//! (backend -> client, or -> the translated source), holding what reverse NAT must restore.
//! Policy entries (`CT4_KIND_POLICY_*`, see `policy`) record flows of pods that NetworkPolicy
//! tracks; their other fields are 0. Packets of other flows never create entries.

use core::mem::size_of;

/// `Ct4Key::kind`: client -> frontend, as sent by the client.
pub const CT4_KIND_SERVICE: u8 = 1;
/// `Ct4Key::kind`: backend -> client, as sent by the backend.
pub const CT4_KIND_REPLY: u8 = 2;
/// `Ct4Key::kind`: a flow a local pod sent that its egress policy let out (or that was
/// tracked while egress was not isolated), as the pod sent it after Service translation.
/// Its packets and the replies (the reversed tuple) pass without a policy lookup.
pub const CT4_KIND_POLICY_EGRESS: u8 = 3;
/// `Ct4Key::kind`: a flow a local pod's ingress policy let in, as it arrived (before reverse
/// NAT). Only the check of the same direction reads it, so a flow between two local pods is
/// judged by the sender's egress and the receiver's ingress separately.
pub const CT4_KIND_POLICY_INGRESS: u8 = 4;

/// `Ct4Value::flags`: the flow's source was translated (hairpin or uplink SNAT); the reply's
/// destination is restored to `addr_be:port_be`.
pub const CT4_F_SNAT: u16 = 1 << 0;
/// `Ct4Value::flags`: a FIN or RST was seen; the entry lives `CT4_LIFETIME_CLOSING_S`.
pub const CT4_F_CLOSING: u16 = 1 << 1;
/// `Ct4Value::flags`: a hairpin flow (client and backend are the same pod).
pub const CT4_F_HAIRPIN: u16 = 1 << 2;
/// `Ct4Value::flags`: created by the uplink path (traffic from outside the node).
pub const CT4_F_EXTERNAL: u16 = 1 << 3;

/// How long an idle entry stays valid, by protocol and state (Cilium's defaults).
pub const CT4_LIFETIME_TCP_S: u64 = 21600;
pub const CT4_LIFETIME_NONTCP_S: u64 = 60;
pub const CT4_LIFETIME_CLOSING_S: u64 = 10;
/// The idle lifetime, in seconds, of an entry with `flags` for a flow of `proto`: the one rule
/// the datapath's lookups and the agent's sweep and listing share.
#[inline(always)]
pub const fn ct4_lifetime_s(flags: u16, proto: u8) -> u64 {
    if flags & CT4_F_CLOSING != 0 {
        CT4_LIFETIME_CLOSING_S
    } else if proto == crate::lb::IPPROTO_TCP {
        CT4_LIFETIME_TCP_S
    } else {
        CT4_LIFETIME_NONTCP_S
    }
}

/// Whether an entry with `flags` for `proto`, last refreshed at `last_seen_ns`, has outlived
/// its lifetime at `now_ns` (both CLOCK_MONOTONIC, what `bpf_ktime_get_ns` returns).
#[inline(always)]
pub const fn ct4_expired(last_seen_ns: u64, flags: u16, proto: u8, now_ns: u64) -> bool {
    now_ns.wrapping_sub(last_seen_ns) > ct4_lifetime_s(flags, proto) * 1_000_000_000
}

/// `last_seen_ns` is rewritten at most this often per entry (saves a write per packet).
pub const CT4_REFRESH_NS: u64 = 1_000_000_000;

/// Key of `CT4`: a flow's 5-tuple as seen on the wire, and which direction it describes.
/// 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ct4Key {
    pub saddr_be: [u8; 4],
    pub daddr_be: [u8; 4],
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    /// `CT4_KIND_SERVICE` or `CT4_KIND_REPLY`.
    pub kind: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<Ct4Key>() == 16);

/// Value of `CT4`. 32 bytes.
///
/// Service entries: `backend_id` and `addr_be:port_be` (the backend, checked against
/// `LB4_BACKENDS` on every packet so a removed or re-used backend id is noticed),
/// `snat_addr_be:snat_port_be` (the translated source, `CT4_F_SNAT`).
/// Reply entries: `rev_nat_id` (the frontend the source becomes), `addr_be:port_be` (the
/// original client, the destination restored when `CT4_F_SNAT` is set).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ct4Value {
    /// `bpf_ktime_get_ns()` when a packet last refreshed the entry.
    pub last_seen_ns: u64,
    pub backend_id: u32,
    pub addr_be: [u8; 4],
    pub snat_addr_be: [u8; 4],
    pub port_be: u16,
    pub snat_port_be: u16,
    pub rev_nat_id: u16,
    /// `CT4_F_*`.
    pub flags: u16,
    pub _pad: [u8; 4],
    /// Only in the `layout-bump` test build: the field its layout change appends.
    #[cfg(feature = "layout-bump")]
    pub bump: u64,
}
#[cfg(not(feature = "layout-bump"))]
const _: () = assert!(size_of::<Ct4Value>() == 32);
#[cfg(feature = "layout-bump")]
const _: () = assert!(size_of::<Ct4Value>() == 40);

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` data without implicit padding (asserted); any bit pattern is valid.
unsafe impl aya::Pod for Ct4Key {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for Ct4Value {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn ct4_layout_is_stable() {
        assert_eq!(offset_of!(Ct4Key, sport_be), 8);
        assert_eq!(offset_of!(Ct4Key, proto), 12);
        assert_eq!(offset_of!(Ct4Key, kind), 13);
        assert_eq!(offset_of!(Ct4Value, backend_id), 8);
        assert_eq!(offset_of!(Ct4Value, addr_be), 12);
        assert_eq!(offset_of!(Ct4Value, snat_addr_be), 16);
        assert_eq!(offset_of!(Ct4Value, port_be), 20);
        assert_eq!(offset_of!(Ct4Value, snat_port_be), 22);
        assert_eq!(offset_of!(Ct4Value, rev_nat_id), 24);
        assert_eq!(offset_of!(Ct4Value, flags), 26);
    }

    #[test]
    fn entries_expire_one_nanosecond_after_their_lifetime() {
        const S: u64 = 1_000_000_000;
        let seen = 5 * S;
        for (flags, proto, lifetime_s) in [
            (0, crate::lb::IPPROTO_TCP, CT4_LIFETIME_TCP_S),
            (0, crate::lb::IPPROTO_UDP, CT4_LIFETIME_NONTCP_S),
            (CT4_F_CLOSING, crate::lb::IPPROTO_TCP, CT4_LIFETIME_CLOSING_S),
            (CT4_F_CLOSING | CT4_F_SNAT, crate::lb::IPPROTO_UDP, CT4_LIFETIME_CLOSING_S),
        ] {
            assert_eq!(ct4_lifetime_s(flags, proto), lifetime_s);
            let end = seen + lifetime_s * S;
            assert!(!ct4_expired(seen, flags, proto, end), "flags {flags} proto {proto}");
            assert!(ct4_expired(seen, flags, proto, end + 1), "flags {flags} proto {proto}");
        }
        // Arithmetic on a stamp moved back past zero (as a test ages an entry) still measures
        // the idle time.
        let aged = 3u64.wrapping_sub(61 * S);
        assert!(ct4_expired(aged, 0, crate::lb::IPPROTO_UDP, 3));
        assert!(!ct4_expired(aged, 0, crate::lb::IPPROTO_TCP, 3));
    }
}
