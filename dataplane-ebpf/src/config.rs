//! Reading the node-wide settings (`DP_CONFIG`).

use dataplane_common::DpConfig;

use crate::maps::DP_CONFIG;

/// The agent's settings; all-zero (no eBPF forwarding) until an agent wrote them.
#[inline(always)]
pub fn config() -> DpConfig {
    DP_CONFIG.get(0).copied().unwrap_or_default()
}
