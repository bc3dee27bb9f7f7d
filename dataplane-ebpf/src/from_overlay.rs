//! `from_overlay`: tc ingress on the VXLAN device (decapsulated traffic from other nodes).
//!
//! The inner frame is handled like one arriving on the uplink: local pods get it straight,
//! the rest goes to the node's stack. The inner Ethernet destination is whatever the sending
//! node's pod addressed (its own gateway), not this device's MAC, so the stack would see a
//! frame for another host and drop it: what goes up is marked as addressed to this host.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use dataplane_common::DropReason;

use crate::{drop::drop, fwd::from_other_node};

/// `skb->pkt_type` for "to us" (linux/if_packet.h PACKET_HOST).
const PACKET_HOST: u32 = 0;

#[classifier]
pub fn from_overlay(ctx: TcContext) -> i32 {
    match from_other_node(&ctx) {
        Ok(verdict) if verdict == TC_ACT_OK as i32 => match ctx.change_type(PACKET_HOST) {
            Ok(()) => verdict,
            Err(_) => drop(DropReason::REWRITE_FAILED),
        },
        Ok(verdict) | Err(verdict) => verdict,
    }
}
