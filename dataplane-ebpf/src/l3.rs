//! The IPv4 header every program validates the same way, and the TTL hop rule.

use aya_ebpf::programs::TcContext;
use dataplane_common::DropReason;

use crate::{
    drop::drop,
    parse::{ensure, ptr_at, EthHdr, Ipv4Hdr, ETH_HLEN, ETH_P_IP, IPV4_MIN_HLEN},
};

/// What the forwarding decision needs from an IPv4 packet.
pub struct Ipv4Info {
    /// Destination address, network byte order.
    pub daddr: [u8; 4],
    pub ttl: u8,
    pub protocol: u8,
}

/// `Ok(None)` for a frame that is not IPv4 (ARP, IPv6, …: the stack's business). `Ok(Some)`
/// for a valid IPv4 header. `Err(verdict)` for a truncated or malformed frame, already counted.
/// May pull data: re-derive packet pointers afterwards.
#[inline(always)]
pub fn ipv4(ctx: &TcContext) -> Result<Option<Ipv4Info>, i32> {
    ensure(ctx, ETH_HLEN).map_err(|e| drop(e.reason(DropReason::ETH_TRUNCATED)))?;
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
    // SAFETY: bounds-checked by `ptr_at`.
    if u16::from_be(unsafe { (*eth).proto_be }) != ETH_P_IP {
        return Ok(None);
    }
    ensure(ctx, ETH_HLEN + IPV4_MIN_HLEN).map_err(|e| drop(e.reason(DropReason::IP4_TRUNCATED)))?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or_else(|| drop(DropReason::IP4_TRUNCATED))?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (version_ihl, daddr, ttl, protocol) =
        unsafe { ((*ip).version_ihl, (*ip).daddr, (*ip).ttl, (*ip).protocol) };
    if version_ihl >> 4 != 4 {
        return Err(drop(DropReason::IP4_BAD_VERSION));
    }
    let ihl = (version_ihl & 0x0f) as usize;
    if ihl < 5 {
        return Err(drop(DropReason::IP4_BAD_IHL));
    }
    // Options are not parsed, but the header must be complete.
    if (ctx.len() as usize) < ETH_HLEN + ihl * 4 {
        return Err(drop(DropReason::IP4_TRUNCATED));
    }
    Ok(Some(Ipv4Info {
        daddr,
        ttl,
        protocol,
    }))
}

/// Offset of the TTL byte and of the header checksum from the start of the frame.
const TTL_OFF: usize = ETH_HLEN + 8;
const CSUM_OFF: usize = ETH_HLEN + 10;

/// Whether a packet routed between nodes may be forwarded here: a packet that arrives with
/// TTL 1 or 0 must expire at this hop, which only the node's stack can answer (ICMP time
/// exceeded, what traceroute shows), so the caller passes it up instead.
#[inline(always)]
pub fn ttl_allows_forwarding(info: &Ipv4Info) -> bool {
    info.ttl > 1
}

/// Count this node as one routed hop: TTL - 1 with the IPv4 checksum updated incrementally.
/// The caller checked [`ttl_allows_forwarding`].
#[inline(always)]
pub fn decrement_ttl(ctx: &TcContext, info: &Ipv4Info) -> Result<(), i32> {
    let new = info.ttl - 1;
    // TTL shares a 16-bit checksum word with the protocol byte. `bpf_l3_csum_replace` with
    // size 2 takes the old and new word exactly as they lie in memory (the one's complement
    // sum does not care about byte order as long as both are read the same way).
    let old_word = u16::from_ne_bytes([info.ttl, info.protocol]) as u64;
    let new_word = u16::from_ne_bytes([new, info.protocol]) as u64;
    ctx.l3_csum_replace(CSUM_OFF, old_word, new_word, 2)
        .map_err(|_| drop(DropReason::REWRITE_FAILED))?;
    ctx.store(TTL_OFF, &new, 0)
        .map_err(|_| drop(DropReason::REWRITE_FAILED))?;
    Ok(())
}
