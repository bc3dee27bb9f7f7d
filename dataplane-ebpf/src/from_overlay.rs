//! `from_overlay`: tc ingress on the VXLAN device (decapsulated traffic from other nodes).
//!
//! Replies are reverse-NATed and local pods get their packets straight (this node is a routed
//! hop); the rest goes to the node's stack. The inner Ethernet destination is whatever the
//! sending node's pod addressed (its own gateway), not this device's MAC, so the stack would
//! see a frame for another host and drop it: what goes up is marked as addressed to this host.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use dataplane_common::DropReason;

use crate::{
    config::config,
    drop::drop,
    fwd::{self, Hop},
    l3,
};

/// `skb->pkt_type` for "to us" (linux/if_packet.h PACKET_HOST).
const PACKET_HOST: u32 = 0;

#[classifier]
pub fn from_overlay(ctx: TcContext) -> i32 {
    match try_from_overlay(&ctx) {
        Ok(verdict) if verdict == TC_ACT_OK as i32 => match ctx.change_type(PACKET_HOST) {
            Ok(()) => verdict,
            Err(_) => drop(DropReason::REWRITE_FAILED),
        },
        Ok(verdict) | Err(verdict) => verdict,
    }
}

#[inline(always)]
fn try_from_overlay(ctx: &TcContext) -> Result<i32, i32> {
    let Some(mut pkt) = l3::ipv4(ctx)? else {
        return Ok(TC_ACT_OK as i32);
    };
    let cfg = config();
    match fwd::deliver(ctx, &mut pkt, false, Hop::Routed, &cfg)? {
        Some(verdict) => Ok(verdict),
        None => Ok(TC_ACT_OK as i32),
    }
}
