//! `from_pod`: tc ingress on the host side of every pod veth (traffic leaving a pod).
//!
//! ARP and anything not IPv4 -> the node's stack (TC_ACT_OK). With eBPF host routing on: IPv4
//! to a local pod (`ENDPOINTS4`) -> redirected into that pod's namespace; IPv4 to another
//! node's pod CIDR (`NODE_ROUTES4`) -> straight to that node (uplink or tunnel). Anything else
//! (the node itself, other nodes' addresses, the outside world) -> the node's stack, which
//! routes and masquerades it. Truncated or malformed IPv4 -> a counted drop.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};

use crate::{
    config::config,
    fwd::{local_endpoint, remote_node, to_local_pod, to_remote_node},
    l3::ipv4,
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
    // ARP, IPv6 and the rest go to the node's stack. ARP is rare: pods hold a permanent
    // neighbour entry for their gateway; what remains is the pod answering the node's ARP
    // for the pod address (node -> pod uses a /32 route and ordinary neighbour discovery).
    let Some(info) = ipv4(ctx)? else {
        return Ok(TC_ACT_OK as i32);
    };
    let cfg = config();
    if !cfg.bpf_host_routing() {
        return Ok(TC_ACT_OK as i32);
    }
    if let Some(ep) = local_endpoint(info.daddr) {
        if cfg.log() {
            aya_log_ebpf::debug!(ctx, "pod -> local pod {:i}, ifindex {}", info.daddr, ep.ifindex);
        }
        return to_local_pod(ctx, &info, &ep, false);
    }
    if let Some(route) = remote_node(info.daddr) {
        return to_remote_node(ctx, &info, &route, &cfg);
    }
    Ok(TC_ACT_OK as i32)
}
