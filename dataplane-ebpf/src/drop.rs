//! Counted drops: every `TC_ACT_SHOT` goes through [`drop`], so no drop is silent.

use aya_ebpf::bindings::TC_ACT_SHOT;
use dataplane_common::{DropReason, LbCounter};

use crate::maps::{DROP_STATS, LB4_STATS};

/// Count one drop for `reason` on this CPU and return the verdict that drops the packet.
#[inline(always)]
pub fn drop(reason: DropReason) -> i32 {
    count(reason);
    TC_ACT_SHOT as i32
}

/// Count one packet for `reason` without deciding its verdict (a refused packet is answered,
/// a socket hook returns its own code).
#[inline(always)]
pub fn count(reason: DropReason) {
    if let Some(count) = DROP_STATS.get_ptr_mut(reason.index()) {
        // SAFETY: a per-CPU slot of this program's own map; tc and cgroup programs run with
        // migration disabled, so no other writer touches this CPU's slot concurrently.
        unsafe { *count += 1 };
    }
}

/// Count one event of the Service path (not a drop).
#[inline(always)]
pub fn stat(counter: LbCounter) {
    if let Some(count) = LB4_STATS.get_ptr_mut(counter.index()) {
        // SAFETY: as in `count`.
        unsafe { *count += 1 };
    }
}
