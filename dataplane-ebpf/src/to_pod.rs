//! `to_pod`: tc egress on the host side of every pod veth (traffic the node's stack delivers to
//! a pod). Packets `fwd::deliver` redirects never pass here; what does is what the stack routed:
//! replies of a translated flow that left through the stack and came back de-masqueraded (a
//! Service whose backend is outside the pod network, like the API server behind `kubernetes`),
//! and everything in kernel host-routing mode. Reverse NAT, so the pod sees the Service address
//! it contacted, and the pod's ingress policy (the node's own traffic, kubelet probes, comes
//! this way); nothing else is touched.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};

use crate::{l3, nat, policy};

#[classifier]
pub fn to_pod(ctx: TcContext) -> i32 {
    match try_to_pod(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

#[inline(always)]
fn try_to_pod(ctx: &TcContext) -> Result<i32, i32> {
    let Some(mut pkt) = l3::ipv4(ctx)? else {
        return Ok(TC_ACT_OK as i32);
    };
    let arrived = policy::Flow::of(&pkt);
    nat::rev_nat(ctx, &mut pkt)?;
    policy::ingress(ctx, &arrived, pkt.daddr)?;
    Ok(TC_ACT_OK as i32)
}
