//! `from_pod`: tc ingress on the host side of every pod veth (traffic leaving a pod).
//!
//! ARP and anything not IPv4 -> the node's stack (TC_ACT_OK). IPv4 to a local pod (in
//! `ENDPOINTS4`) -> redirected into that pod's namespace. IPv4 to anything else -> the node's
//! stack, which routes it. Truncated or malformed IPv4 -> a counted drop.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use dataplane_common::{DropReason, Endpoint4Key};

use crate::{
    drop::drop,
    fwd::redirect_to_local_pod,
    maps::ENDPOINTS4,
    parse::{ensure, ptr_at, EthHdr, Ipv4Hdr, ETH_HLEN, ETH_P_IP, IPV4_MIN_HLEN},
};

#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    match try_from_pod(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

/// `Ok` and `Err` both carry the tc verdict; `Err` ones have already been counted.
#[inline(always)]
fn try_from_pod(ctx: &TcContext) -> Result<i32, i32> {
    ensure(ctx, ETH_HLEN).map_err(|e| drop(e.reason(DropReason::ETH_TRUNCATED)))?;
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
    // SAFETY: bounds-checked by `ptr_at`.
    let proto = u16::from_be(unsafe { (*eth).proto_be });
    if proto != ETH_P_IP {
        // ARP, IPv6 and the rest go to the node's stack. ARP is rare: pods hold a permanent
        // neighbour entry for their gateway; what remains is the pod answering the node's ARP
        // for the pod address (node -> pod uses a /32 route and ordinary neighbour discovery).
        return Ok(TC_ACT_OK as i32);
    }

    let daddr = ipv4_daddr(ctx)?;
    // SAFETY: the value is copied out at once; the agent replaces entries whole.
    let Some(ep) = (unsafe { ENDPOINTS4.get(&Endpoint4Key::new(daddr)) }).copied() else {
        return Ok(TC_ACT_OK as i32);
    };
    // `ipv4_daddr` may have pulled data, which invalidates earlier packet pointers.
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
    redirect_to_local_pod(eth, &ep)
}

/// Validate the IPv4 header after the Ethernet header and return its destination address
/// (network byte order).
#[inline(always)]
fn ipv4_daddr(ctx: &TcContext) -> Result<[u8; 4], i32> {
    ensure(ctx, ETH_HLEN + IPV4_MIN_HLEN).map_err(|e| drop(e.reason(DropReason::IP4_TRUNCATED)))?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or_else(|| drop(DropReason::IP4_TRUNCATED))?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (version_ihl, daddr) = unsafe { ((*ip).version_ihl, (*ip).daddr) };
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
    Ok(daddr)
}
