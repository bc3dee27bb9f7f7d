//! `from_pod`: tc ingress on the host side of every pod veth (traffic leaving a pod).
//!
//! ARP and anything not IPv4 -> the node's stack (TC_ACT_OK). IPv4: the Service step
//! (`lb::service`: DNAT to a backend, or a refusal), then delivery (`fwd::deliver`: reverse NAT
//! of replies, then a local pod's namespace). Anything else -> the node's stack, which routes
//! it. Truncated or malformed IPv4 -> a counted drop.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use dataplane_common::DropReason;

use crate::{
    drop::drop,
    fwd,
    lb::{self, Lb, Origin},
    parse::{self, ensure, ptr_at, EthHdr, ETH_HLEN, ETH_P_IP},
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

    let mut pkt = parse::ipv4(ctx)?;
    let translated = match lb::service(ctx, &mut pkt, Origin::Pod)? {
        Lb::NotService => false,
        Lb::Translated => true,
        Lb::Done(verdict) => return Ok(verdict),
    };
    if let Some(verdict) = fwd::deliver(ctx, &mut pkt, translated)? {
        return Ok(verdict);
    }
    Ok(TC_ACT_OK as i32)
}
