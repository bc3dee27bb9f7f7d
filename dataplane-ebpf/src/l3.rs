//! The IPv4 entry every program shares (EtherType check, then `parse::ipv4`), and the TTL
//! rule of a routed hop.

use aya_ebpf::programs::TcContext;
use dataplane_common::DropReason;

use crate::{
    drop::drop,
    parse::{self, ensure, ptr_at, EthHdr, Ipv4Pkt, ETH_HLEN, ETH_P_IP},
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

/// Offset of the TTL byte and of the header checksum from the start of the frame.
const TTL_OFF: usize = ETH_HLEN + 8;
const CSUM_OFF: usize = ETH_HLEN + 10;

/// Whether a packet routed between nodes may be forwarded here: a packet that arrives with
/// TTL 1 or 0 must expire at this hop, which only the node's stack can answer (ICMP time
/// exceeded, what traceroute shows), so the caller passes it up instead.
#[inline(always)]
pub fn ttl_allows_forwarding(pkt: &Ipv4Pkt) -> bool {
    pkt.ttl > 1
}

/// Count this node as one routed hop: TTL - 1 with the IPv4 checksum updated incrementally.
/// The caller checked [`ttl_allows_forwarding`].
#[inline(always)]
pub fn decrement_ttl(ctx: &TcContext, pkt: &mut Ipv4Pkt) -> Result<(), i32> {
    let new = pkt.ttl - 1;
    // TTL shares a 16-bit checksum word with the protocol byte. `bpf_l3_csum_replace` with
    // size 2 takes the old and new word exactly as they lie in memory (the one's complement
    // sum does not care about byte order as long as both are read the same way).
    let old_word = u16::from_ne_bytes([pkt.ttl, pkt.proto]) as u64;
    let new_word = u16::from_ne_bytes([new, pkt.proto]) as u64;
    ctx.l3_csum_replace(CSUM_OFF, old_word, new_word, 2)
        .map_err(|_| drop(DropReason::REWRITE_FAILED))?;
    ctx.store(TTL_OFF, &new, 0)
        .map_err(|_| drop(DropReason::REWRITE_FAILED))?;
    pkt.ttl = new;
    Ok(())
}
