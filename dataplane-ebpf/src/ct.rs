//! Connection tracking of translated flows in `CT4`: lookups that honour lifetimes, refresh,
//! and creation that counts a refused insert as a drop.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use dataplane_common::{
    ct::{ct4_expired, CT4_F_CLOSING, CT4_KIND_REPLY, CT4_KIND_SERVICE, CT4_REFRESH_NS},
    maps::CT4_OTHER_LAYOUT,
    Ct4Key, Ct4Value, DropReason,
};

use crate::{
    drop::drop,
    maps::{CT4, CT4_PREV},
    parse::{Ipv4Pkt, TCP_FIN, TCP_RST},
};

/// Monotonic time in nanoseconds (what `last_seen_ns` is measured in).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

/// The key of `pkt` as a flow of `kind`.
#[inline(always)]
pub fn key(pkt: &Ipv4Pkt, kind: u8) -> Ct4Key {
    Ct4Key {
        saddr_be: pkt.saddr,
        daddr_be: pkt.daddr,
        sport_be: pkt.sport_be,
        dport_be: pkt.dport_be,
        proto: pkt.proto,
        kind,
        _pad: [0; 2],
    }
}

/// The service entry of `pkt`'s flow (client -> frontend).
#[inline(always)]
pub fn service_key(pkt: &Ipv4Pkt) -> Ct4Key {
    key(pkt, CT4_KIND_SERVICE)
}

/// The reply entry `pkt` would match (backend -> client).
#[inline(always)]
pub fn reply_key(pkt: &Ipv4Pkt) -> Ct4Key {
    key(pkt, CT4_KIND_REPLY)
}

/// A live entry for `key`: its value (copied) and a pointer for [`refresh`].
#[inline(always)]
pub fn lookup(key: &Ct4Key, now: u64) -> Option<(Ct4Value, *mut Ct4Value)> {
    live(find(key)?, key.proto, now)
}

/// `key`'s entry in `CT4`; while a layout migration runs, one only the other layout's map has
/// yet (written by the build before this one, its programs still on some link) is carried over
/// first: the leading bytes both layouts share, the rest zero.
#[inline(always)]
fn find(key: &Ct4Key) -> Option<*mut Ct4Value> {
    if let Some(ptr) = CT4.get_ptr_mut(key) {
        return Some(ptr);
    }
    if !crate::config::config().ct4_migrating() {
        return None;
    }
    carry_over(key)
}

/// The other layout's entry for `key`, written into `CT4` (unless one appeared meanwhile).
#[inline(never)]
fn carry_over(key: &Ct4Key) -> Option<*mut Ct4Value> {
    const SHARED: usize = if CT4_OTHER_LAYOUT.1 < size_of::<Ct4Value>() {
        CT4_OTHER_LAYOUT.1
    } else {
        size_of::<Ct4Value>()
    };
    let other = CT4_PREV.get_ptr(key)?;
    let mut value = Ct4Value::default();
    // SAFETY: `other` points at a value of `CT4_OTHER_LAYOUT.1` bytes under the RCU read lock;
    // `value` is plain data of at least `SHARED` bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(other as *const u8, &mut value as *mut Ct4Value as *mut u8, SHARED);
    }
    // BPF_NOEXIST: a concurrent creation of the same key wins.
    let _ = CT4.insert(key, &value, 1);
    CT4.get_ptr_mut(key)
}

/// The entry at `ptr` (found in `CT4`) unless it has expired at `now`.
#[inline(always)]
fn live(ptr: *mut Ct4Value, proto: u8, now: u64) -> Option<(Ct4Value, *mut Ct4Value)> {
    // SAFETY: a value of this map, valid under the RCU read lock the program runs in.
    let value = unsafe { *ptr };
    if ct4_expired(value.last_seen_ns, value.flags, proto, now) {
        return None;
    }
    Some((value, ptr))
}

/// [`lookup`] for the per-packet path where most lookups miss (reverse NAT of every packet):
/// the clock is read only when an entry exists. Returns it with the entry.
#[inline(always)]
pub fn lookup_timed(key: &Ct4Key) -> Option<(Ct4Value, *mut Ct4Value, u64)> {
    let ptr = find(key)?;
    let now = now();
    live(ptr, key.proto, now).map(|(value, ptr)| (value, ptr, now))
}

/// Whether a packet with `tcp_flags` closes the flow of `seen`: its first FIN or RST.
#[inline(always)]
pub fn closes(seen: &Ct4Value, tcp_flags: u8) -> bool {
    tcp_flags & (TCP_FIN | TCP_RST) != 0 && seen.flags & CT4_F_CLOSING == 0
}

/// Note a packet of the flow: stamp `last_seen_ns` (at most every `CT4_REFRESH_NS`), and
/// shorten the lifetime once a TCP FIN or RST passes.
#[inline(always)]
pub fn refresh(ptr: *mut Ct4Value, seen: &Ct4Value, tcp_flags: u8, now: u64) {
    let closing = closes(seen, tcp_flags);
    if !closing && now.wrapping_sub(seen.last_seen_ns) < CT4_REFRESH_NS {
        return;
    }
    // SAFETY: as in `lookup`; a lost race with another CPU only loses one timestamp.
    unsafe {
        (*ptr).last_seen_ns = now;
        if closing {
            (*ptr).flags |= CT4_F_CLOSING;
        }
    }
}

/// Forget the entry under `key` (a closed flow's, whose tuple a connection of the kernel's now
/// uses during a handoff).
#[inline(always)]
pub fn remove(key: &Ct4Key) {
    // Absent already is as good.
    let _ = CT4.remove(key);
}

/// Write `value` under `key`. A refused insert (the LRU map full with nothing to evict) drops
/// the packet, counted as `ct_full`: translating a flow without a record would break its
/// replies.
#[inline(always)]
pub fn create(key: &Ct4Key, value: &Ct4Value) -> Result<(), i32> {
    CT4.insert(key, value, 0)
        .map_err(|_| drop(DropReason::CT_FULL))
}
