//! `from_netdev`: tc ingress on the node's uplink (traffic from other nodes and the outside).
//!
//! The uplink's Service step first (`lb::netdev`: reverse NAT of replies, NodePort / external
//! IP / load-balancer IP DNAT), then delivery into a local pod (this node is a routed hop) of
//! translated packets and of other nodes' pods' traffic,
//! or, for a NodePort whose backend is elsewhere, on to the node that owns it; a reply
//! reverse-NATed for an outside client straight back out. Everything else goes to the node's
//! stack.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};

use crate::{
    config::config,
    fwd::{self, Hop},
    l3,
    lb::{self, Lb},
};

#[classifier]
pub fn from_netdev(ctx: TcContext) -> i32 {
    match try_from_netdev(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

#[inline(always)]
fn try_from_netdev(ctx: &TcContext) -> Result<i32, i32> {
    let Some(mut pkt) = l3::ipv4(ctx)? else {
        return Ok(TC_ACT_OK as i32);
    };
    let source = pkt.saddr;
    let translated = match lb::netdev(ctx, &mut pkt)? {
        Lb::NotService => false,
        Lb::Translated => true,
        Lb::Done(verdict) => return Ok(verdict),
    };
    // Untranslated traffic from outside the pod network (a host on the underlay with a route
    // to the pod CIDRs, such as the API server's pod proxy, or another node) goes through the
    // node's stack: its conntrack must see the connection open, or the pod's first reply
    // would look like a new outbound flow to the egress masquerade and leave with the node's
    // address. Only other nodes' pods are delivered here directly.
    if !translated && fwd::remote_node(source).is_none() {
        return Ok(TC_ACT_OK as i32);
    }
    let cfg = config();
    // `lb::netdev` has already tried reverse NAT: `deliver` need not look up `CT4` again.
    if let Some(verdict) = fwd::deliver(ctx, &mut pkt, true, Hop::Routed, &cfg)? {
        return Ok(verdict);
    }
    if translated {
        if let Some(verdict) = fwd::to_node_owning(ctx, &mut pkt, &cfg)? {
            return Ok(verdict);
        }
        // A remote backend's reply reverse-NATed to this node's NodePort, on its way back to
        // the outside client (or a request whose source became this node's address, to a
        // backend outside the pod network).
        if pkt.saddr != source {
            if let Some(verdict) = fwd::leave_translated(ctx, &mut pkt, &cfg)? {
                return Ok(verdict);
            }
        }
    }
    Ok(TC_ACT_OK as i32)
}
