//! Service path counters (not drops): stable, append-only numbers, the index in the per-CPU
//! `LB4_STATS` array, like [`crate::DropReason`] for `DROP_STATS`.

use core::mem::size_of;

/// One Service path counter.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LbCounter(pub u32);
const _: () = assert!(size_of::<LbCounter>() == 4);

impl LbCounter {
    // 0 is reserved.
    /// New flows to a frontend that got a backend (conntrack entries created).
    pub const NEW_FLOWS: Self = Self(1);
    /// TCP segments without SYN to a frontend that found no conntrack entry: an established
    /// connection whose entry was evicted (a full `CT4`) or outlived. Such a segment gets a
    /// backend afresh (often a different one, which answers with a reset).
    pub const CT_MISS_ESTABLISHED: Self = Self(2);
    /// New flows that went to the client's ClientIP-affinity backend.
    pub const AFFINITY_HITS: Self = Self(3);
    /// Reply entries written again for a flow whose service entry lives on without one (a SYN
    /// that meets it, or its forward traffic within a second): without it the backend's answers
    /// would get no reverse NAT. Lost halves come from a conntrack sweep racing a new flow on
    /// the same tuple, or from eviction of a full `CT4`.
    pub const REPLY_RESTORED: Self = Self(4);
    /// Packets to a frontend left to the node's stack during a switch from or to kube-proxy
    /// (`DP_F_HANDOFF`, `DP_F_KERNEL_NEW_FLOWS`): segments of connections kube-proxy translated,
    /// or new connections while kube-proxy takes them. Once it stops rising, no connection of
    /// kube-proxy's is left on the node.
    pub const HANDED_TO_KERNEL: Self = Self(5);

    /// Every defined counter, in number order.
    pub const ALL: &'static [Self] = &[
        Self::NEW_FLOWS,
        Self::CT_MISS_ESTABLISHED,
        Self::AFFINITY_HITS,
        Self::REPLY_RESTORED,
        Self::HANDED_TO_KERNEL,
    ];

    /// Stable name for metrics and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NEW_FLOWS => "new_flows",
            Self::CT_MISS_ESTABLISHED => "ct_miss_established",
            Self::AFFINITY_HITS => "affinity_hits",
            Self::REPLY_RESTORED => "reply_restored",
            Self::HANDED_TO_KERNEL => "handed_to_kernel",
            _ => "unknown",
        }
    }

    pub const fn index(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::LB4_STATS_MAX_ENTRIES;

    #[test]
    fn counters_are_stable_unique_and_fit() {
        assert_eq!(LbCounter::NEW_FLOWS.0, 1);
        assert_eq!(LbCounter::CT_MISS_ESTABLISHED.0, 2);
        assert_eq!(LbCounter::AFFINITY_HITS.0, 3);
        assert_eq!(LbCounter::REPLY_RESTORED.0, 4);
        assert_eq!(LbCounter::HANDED_TO_KERNEL.0, 5);
        for w in LbCounter::ALL.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
        for c in LbCounter::ALL {
            assert!(c.0 > 0 && c.0 < LB4_STATS_MAX_ENTRIES);
            assert_ne!(c.name(), "unknown");
        }
    }
}
