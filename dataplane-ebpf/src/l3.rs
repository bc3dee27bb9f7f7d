//! The IPv4 entry every program shares (EtherType check, then `parse::ipv4`), and the TTL
//! rule of a routed hop.

use aya_ebpf::programs::TcContext;
use dataplane_common::DropReason;

use crate::{
    drop::drop,
    parse::{self, ensure, ptr_at, EthHdr, Ipv4Hdr, Ipv4Pkt, ETH_HLEN, ETH_P_IP},
};

/// `Ok(None)` for a frame that is not IPv4 (ARP, IPv6, …: the stack's business). `Ok(Some)`
/// for a valid IPv4 packet. `Err(verdict)` for a truncated or malformed frame, already counted.
/// May pull data: re-derive packet pointers afterwards.
#[inline(always)]
pub fn ipv4(ctx: &TcContext) -> Result<Option<Ipv4Pkt>, i32> {
    ensure(ctx, ETH_HLEN).map_err(|e| drop(e.reason(DropReason::ETH_TRUNCATED)))?;
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
    // SAFETY: bounds-checked by `ptr_at`.
    if u16::from_be(unsafe { (*eth).proto_be }) != ETH_P_IP {
        return Ok(None);
    }
    parse::ipv4(ctx).map(Some)
}

/// Whether a packet routed between nodes may be forwarded here: a packet that arrives with
/// TTL 1 or 0 must expire at this hop, which only the node's stack can answer (ICMP time
/// exceeded, what traceroute shows), so the caller passes it up instead.
#[inline(always)]
pub fn ttl_allows_forwarding(pkt: &Ipv4Pkt) -> bool {
    pkt.ttl > 1
}

/// Count this node as one routed hop: TTL - 1 with the IPv4 checksum updated incrementally.
/// The caller checked [`ttl_allows_forwarding`].
///
/// Written in place through the packet pointer, as the kernel's `ip_decrease_ttl` does, rather
/// than with the `bpf_l3_csum_replace` and `bpf_skb_store_bytes` helpers: this runs for every
/// packet between nodes, and the two helper calls cost more than the arithmetic.
#[inline(always)]
pub fn decrement_ttl(ctx: &TcContext, pkt: &mut Ipv4Pkt) -> Result<(), i32> {
    // Rewrites and resizes invalidate earlier packet pointers: take the header afresh.
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or_else(|| drop(DropReason::REWRITE_FAILED))?;
    // SAFETY: bounds-checked by `ptr_at` after the last call that can move packet data.
    unsafe {
        // TTL is the high byte of its 16-bit checksum word: the word drops by 0x0100, so the
        // one's complement checksum rises by 0x0100 (in network order), with the end-around
        // carry. The field is handled in memory order throughout, like the kernel's.
        let check = (*ip).check_be as u32 + u16::to_be(0x0100) as u32;
        (*ip).check_be = (check + (check >= 0xffff) as u32) as u16;
        (*ip).ttl -= 1;
    }
    pkt.ttl -= 1;
    Ok(())
}
