//! Drop reasons: stable, append-only numbers shared by the datapath, the metrics and the CLI.
//!
//! A reason's number is its index in the per-CPU `DROP_STATS` array. Never renumber or reuse a
//! number; add new reasons at the end and to [`DropReason::ALL`].

use core::mem::size_of;

/// Why the datapath dropped a packet. A `u32` newtype rather than an enum so an unknown number
/// read back from a pinned map (written by a newer datapath) is still representable.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropReason(pub u32);
const _: () = assert!(size_of::<DropReason>() == 4);

impl DropReason {
    // 0 is reserved so that a zeroed value never names a real reason.
    /// Frame shorter than an Ethernet header (14 bytes).
    pub const ETH_TRUNCATED: Self = Self(1);
    /// EtherType IPv4 but fewer than 20 bytes of IPv4 header, or fewer than `ihl * 4`.
    pub const IP4_TRUNCATED: Self = Self(2);
    /// IPv4 header length field below 5 (20 bytes).
    pub const IP4_BAD_IHL: Self = Self(3);
    /// EtherType IPv4 but the version nibble is not 4.
    pub const IP4_BAD_VERSION: Self = Self(4);
    /// `bpf_redirect_peer` refused the redirect (returned something other than TC_ACT_REDIRECT).
    pub const REDIRECT_FAILED: Self = Self(5);
    /// Long enough, but `bpf_skb_pull_data` could not make the headers readable (no memory).
    pub const PULL_FAILED: Self = Self(6);
    /// `CT4` refused a new entry (the LRU map is full and nothing could be evicted): the new
    /// Service flow is dropped rather than translated without a record of it.
    pub const CT_FULL: Self = Self(7);
    /// A frontend's count names a slot `LB4_SLOTS` does not hold (maps inconsistent).
    pub const LB_SLOT_MISSING: Self = Self(8);
    /// A slot names a backend `LB4_BACKENDS` does not hold (maps inconsistent).
    pub const LB_BACKEND_MISSING: Self = Self(9);
    /// A new flow to a Service with no selectable backend. The packet is answered (TCP RST,
    /// else ICMP port unreachable) and counted here.
    pub const SERVICE_NO_BACKEND: Self = Self(10);
    /// TCP or UDP whose header is cut short (ports or TCP flags missing).
    pub const L4_TRUNCATED: Self = Self(11);
    /// Rewriting the packet failed (a store, checksum or resize helper returned an error).
    pub const REWRITE_FAILED: Self = Self(12);
    /// No free source port for a flow whose source must be translated.
    pub const SNAT_NO_PORT: Self = Self(13);
    /// An IPv4 fragment addressed to a Service frontend (fragments are not translated).
    pub const FRAG_TO_SERVICE: Self = Self(14);
    /// A reply whose conntrack entry names a frontend `LB4_REVNAT` no longer holds.
    pub const REVNAT_MISSING: Self = Self(15);
    /// A packet routed into the VXLAN device for an address no node's pod CIDR covers (the
    /// device would drop it for want of a tunnel key).
    pub const NO_TUNNEL_ROUTE: Self = Self(16);
    /// `bpf_skb_set_tunnel_key` failed.
    pub const TUNNEL_KEY_FAILED: Self = Self(17);
    /// A new flow into a local pod that its NetworkPolicies isolate for ingress and that no
    /// rule allows.
    pub const POLICY_DENIED_INGRESS: Self = Self(18);
    /// A new flow out of a local pod that its NetworkPolicies isolate for egress and that no
    /// rule allows.
    pub const POLICY_DENIED_EGRESS: Self = Self(19);

    /// Every defined reason, in number order.
    pub const ALL: &'static [Self] = &[
        Self::ETH_TRUNCATED,
        Self::IP4_TRUNCATED,
        Self::IP4_BAD_IHL,
        Self::IP4_BAD_VERSION,
        Self::REDIRECT_FAILED,
        Self::PULL_FAILED,
        Self::CT_FULL,
        Self::LB_SLOT_MISSING,
        Self::LB_BACKEND_MISSING,
        Self::SERVICE_NO_BACKEND,
        Self::L4_TRUNCATED,
        Self::REWRITE_FAILED,
        Self::SNAT_NO_PORT,
        Self::FRAG_TO_SERVICE,
        Self::REVNAT_MISSING,
        Self::NO_TUNNEL_ROUTE,
        Self::TUNNEL_KEY_FAILED,
        Self::POLICY_DENIED_INGRESS,
        Self::POLICY_DENIED_EGRESS,
    ];

    /// The stable name used in metrics labels and CLI output (`snake_case`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::ETH_TRUNCATED => "eth_truncated",
            Self::IP4_TRUNCATED => "ip4_truncated",
            Self::IP4_BAD_IHL => "ip4_bad_ihl",
            Self::IP4_BAD_VERSION => "ip4_bad_version",
            Self::REDIRECT_FAILED => "redirect_failed",
            Self::PULL_FAILED => "pull_failed",
            Self::CT_FULL => "ct_full",
            Self::LB_SLOT_MISSING => "lb_slot_missing",
            Self::LB_BACKEND_MISSING => "lb_backend_missing",
            Self::SERVICE_NO_BACKEND => "service_no_backend",
            Self::L4_TRUNCATED => "l4_truncated",
            Self::REWRITE_FAILED => "rewrite_failed",
            Self::SNAT_NO_PORT => "snat_no_port",
            Self::FRAG_TO_SERVICE => "frag_to_service",
            Self::REVNAT_MISSING => "revnat_missing",
            Self::NO_TUNNEL_ROUTE => "no_tunnel_route",
            Self::TUNNEL_KEY_FAILED => "tunnel_key_failed",
            Self::POLICY_DENIED_INGRESS => "policy_denied_ingress",
            Self::POLICY_DENIED_EGRESS => "policy_denied_egress",
            _ => "unknown",
        }
    }

    /// Index into `DROP_STATS`.
    pub const fn index(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::DROP_STATS_MAX_ENTRIES;

    #[test]
    fn every_reason_fits_in_drop_stats_and_is_not_zero() {
        for r in DropReason::ALL {
            assert!(
                r.0 > 0 && r.0 < DROP_STATS_MAX_ENTRIES,
                "{r:?} out of range"
            );
        }
    }

    #[test]
    fn reasons_are_unique_ordered_and_named() {
        for w in DropReason::ALL.windows(2) {
            assert!(
                w[0].0 < w[1].0,
                "ALL must be in number order without duplicates"
            );
        }
        for (i, a) in DropReason::ALL.iter().enumerate() {
            assert_ne!(a.name(), "unknown", "{a:?} has no name");
            for b in &DropReason::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
        assert_eq!(DropReason(999).name(), "unknown");
    }

    #[test]
    fn numbers_are_stable() {
        // Pinned maps and dashboards depend on these numbers: changing one is a bug.
        assert_eq!(DropReason::ETH_TRUNCATED.0, 1);
        assert_eq!(DropReason::IP4_TRUNCATED.0, 2);
        assert_eq!(DropReason::IP4_BAD_IHL.0, 3);
        assert_eq!(DropReason::IP4_BAD_VERSION.0, 4);
        assert_eq!(DropReason::REDIRECT_FAILED.0, 5);
        assert_eq!(DropReason::PULL_FAILED.0, 6);
        assert_eq!(DropReason::CT_FULL.0, 7);
        assert_eq!(DropReason::LB_SLOT_MISSING.0, 8);
        assert_eq!(DropReason::LB_BACKEND_MISSING.0, 9);
        assert_eq!(DropReason::SERVICE_NO_BACKEND.0, 10);
        assert_eq!(DropReason::L4_TRUNCATED.0, 11);
        assert_eq!(DropReason::POLICY_DENIED_INGRESS.0, 18);
        assert_eq!(DropReason::POLICY_DENIED_EGRESS.0, 19);
        assert_eq!(DropReason::REWRITE_FAILED.0, 12);
        assert_eq!(DropReason::SNAT_NO_PORT.0, 13);
        assert_eq!(DropReason::FRAG_TO_SERVICE.0, 14);
        assert_eq!(DropReason::REVNAT_MISSING.0, 15);
        assert_eq!(DropReason::NO_TUNNEL_ROUTE.0, 16);
        assert_eq!(DropReason::TUNNEL_KEY_FAILED.0, 17);
    }
}
