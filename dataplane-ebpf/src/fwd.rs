//! Delivery to local pods. [`deliver`] is the one way into a local pod: every program that
//! hands a packet to a pod on this node calls it, so reverse NAT is always applied first and a
//! reply always reaches its client from the Service address it contacted.

use aya_ebpf::{
    bindings::TC_ACT_REDIRECT, helpers::generated::bpf_redirect_peer, programs::TcContext,
};
use dataplane_common::{DropReason, Endpoint4Key, Endpoint4Value};

use crate::{
    drop::drop,
    maps::ENDPOINTS4,
    nat,
    parse::{ptr_at, EthHdr, Ipv4Pkt},
};

/// Reverse NAT (unless `translated`: the packet was just translated forward, or reverse NAT
/// already ran), then, if the destination is a local pod, deliver it there.
///
/// `Ok(Some(verdict))`: delivered. `Ok(None)`: the destination is not a local pod; the packet
/// (possibly reverse-NATed, so `pkt.daddr` is where it must go now) is the caller's to
/// forward. `Err`: a counted drop.
#[inline(always)]
pub fn deliver(ctx: &TcContext, pkt: &mut Ipv4Pkt, translated: bool) -> Result<Option<i32>, i32> {
    if !translated {
        nat::rev_nat(ctx, pkt)?;
    }
    // SAFETY: the value is copied out at once; the agent replaces entries whole.
    let Some(ep) = (unsafe { ENDPOINTS4.get(&Endpoint4Key::new(pkt.daddr)) }).copied() else {
        return Ok(None);
    };
    // Rewrites and resizes invalidate earlier packet pointers: take the header afresh.
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
    redirect_to_local_pod(eth, &ep).map(Some)
}

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
fn redirect_to_local_pod(eth: *mut EthHdr, ep: &Endpoint4Value) -> Result<i32, i32> {
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
