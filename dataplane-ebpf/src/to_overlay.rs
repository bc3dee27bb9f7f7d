//! `to_overlay`: tc egress on the VXLAN device (collect-metadata mode).
//!
//! The device encapsulates only packets that carry tunnel metadata. `from_pod` sets it for
//! pod traffic it redirects; this program sets it for everything the node's stack routes into
//! the device (the node's own traffic to remote pods, and pod traffic when eBPF host routing
//! is off), from the same `NODE_ROUTES4` entries. A packet for an address no node owns could
//! not be encapsulated: it is dropped here, counted.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use dataplane_common::DropReason;

use crate::{config::config, drop::drop, fwd::remote_node, l3::ipv4, tunnel};

#[classifier]
pub fn to_overlay(ctx: TcContext) -> i32 {
    match try_to_overlay(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

#[inline(always)]
fn try_to_overlay(ctx: &TcContext) -> Result<i32, i32> {
    let Some(pkt) = ipv4(ctx)? else {
        // The device is NOARP and carries IPv4 only; nothing else has a tunnel key.
        return Err(drop(DropReason::NO_TUNNEL_ROUTE));
    };
    match remote_node(pkt.daddr) {
        Some(route) if route.is_tunnel() => {
            tunnel::set_key(ctx, route.node_ip_be, config().vni)?;
            Ok(TC_ACT_OK as i32)
        }
        _ => Err(drop(DropReason::NO_TUNNEL_ROUTE)),
    }
}
