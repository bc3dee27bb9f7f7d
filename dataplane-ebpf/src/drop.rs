//! Counted drops: every `TC_ACT_SHOT` goes through [`drop`], so no drop is silent.

use aya_ebpf::bindings::TC_ACT_SHOT;
use dataplane_common::DropReason;

use crate::maps::DROP_STATS;

/// Count one drop for `reason` on this CPU and return the verdict that drops the packet.
#[inline(always)]
pub fn drop(reason: DropReason) -> i32 {
    if let Some(count) = DROP_STATS.get_ptr_mut(reason.index()) {
        // SAFETY: a per-CPU slot of this program's own map; tc programs run with migration
        // disabled, so no other writer touches this CPU's slot concurrently.
        unsafe { *count += 1 };
    }
    TC_ACT_SHOT as i32
}
