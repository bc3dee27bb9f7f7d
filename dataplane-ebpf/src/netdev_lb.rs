//! `netdev_lb`: a test entry point for the uplink's Service path, run only through
//! `BPF_PROG_TEST_RUN` (never attached). It is what the node uplink's `from_netdev` does
//! before its own forwarding: `lb::netdev` (reverse NAT of replies, NodePort/externalIP DNAT),
//! then `fwd::deliver` into a local pod; anything else is left to the stack (`TC_ACT_OK`),
//! where `from_netdev` forwards to another node instead.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use dataplane_common::DropReason;

use crate::{
    drop::drop,
    fwd,
    lb::{self, Lb},
    parse::{self, ensure, ptr_at, EthHdr, ETH_HLEN, ETH_P_IP},
};

#[classifier]
pub fn netdev_lb(ctx: TcContext) -> i32 {
    match try_netdev_lb(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

#[inline(always)]
fn try_netdev_lb(ctx: &TcContext) -> Result<i32, i32> {
    ensure(ctx, ETH_HLEN).map_err(|e| drop(e.reason(DropReason::ETH_TRUNCATED)))?;
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
    // SAFETY: bounds-checked by `ptr_at`.
    if u16::from_be(unsafe { (*eth).proto_be }) != ETH_P_IP {
        return Ok(TC_ACT_OK as i32);
    }
    let mut pkt = parse::ipv4(ctx)?;
    let translated = match lb::netdev(ctx, &mut pkt)? {
        Lb::NotService => false,
        Lb::Translated => true,
        Lb::Done(verdict) => return Ok(verdict),
    };
    let cfg = crate::config::config();
    if let Some(verdict) = fwd::deliver(ctx, &mut pkt, translated, fwd::Hop::Local, &cfg)? {
        return Ok(verdict);
    }
    Ok(TC_ACT_OK as i32)
}
