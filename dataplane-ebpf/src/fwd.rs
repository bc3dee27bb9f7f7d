//! Forwarding to a local pod: rewrite Ethernet addresses and hand the packet to the peer of the
//! destination's host-side veth.

use aya_ebpf::{bindings::TC_ACT_REDIRECT, helpers::generated::bpf_redirect_peer};
use dataplane_common::{DropReason, Endpoint4Value};

use crate::{drop::drop, parse::EthHdr};

/// Deliver the frame at `eth` to the local pod `ep`.
///
/// `bpf_redirect_peer` switches the skb straight into the destination pod's network namespace
/// (ingress of the peer of `ep.ifindex`), without a pass through the node's routing, netfilter
/// or backlog queue, so it works with `ip_forward=0` in the node.
///
/// TTL is deliberately not decremented: from the pods' point of view the node is one /32
/// gateway hop, but the packet cannot loop (its destination is a local pod, where it ends), and
/// leaving it avoids an IPv4 checksum update and a TTL-expiry path that would need ICMP
/// generation. Revisit if traceroute between same-node pods must show the node.
#[inline(always)]
pub fn redirect_to_local_pod(eth: *mut EthHdr, ep: &Endpoint4Value) -> Result<i32, i32> {
    // SAFETY: `eth` was bounds-checked against data_end by the caller (`ptr_at`) after the last
    // call that can move packet data.
    unsafe {
        (*eth).dst = ep.pod_mac;
        (*eth).src = ep.host_mac;
    }
    // SAFETY: plain helper call; flags must be 0.
    let verdict = unsafe { bpf_redirect_peer(ep.ifindex, 0) } as i32;
    if verdict == TC_ACT_REDIRECT as i32 {
        Ok(verdict)
    } else {
        Err(drop(DropReason::REDIRECT_FAILED))
    }
}
