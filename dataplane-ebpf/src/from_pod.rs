//! `from_pod`: tc ingress on the host side of every pod veth (traffic leaving a pod).
//!
//! ARP and anything not IPv4 -> the node's stack (TC_ACT_OK). IPv4: the Service step
//! (`lb::service`: DNAT to a backend, or a refusal; skipped for a local pod destination), then the pod's egress policy, then delivery (`fwd::deliver`: reverse NAT
//! of replies, then a local pod's namespace), then with eBPF host routing another node's pod
//! CIDR straight to that node, and a reply reverse-NATed for an outside client out of the
//! uplink. Anything else -> the node's stack, which routes and masquerades it. Truncated or malformed IPv4 -> a counted drop.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};

use crate::{
    config::config,
    fwd::{self, Hop},
    l3,
    lb::{self, Lb, Origin},
    policy,
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
    let Some(mut pkt) = l3::ipv4(ctx)? else {
        return Ok(TC_ACT_OK as i32);
    };
    // The sending pod, before the Service step can translate the source (hairpin).
    let pod = pkt.saddr;
    // A local pod's address is never a Service frontend (ClusterIPs come from the Service
    // range; an externalIP set to a pod's address is not served to that node's pods), so pod
    // to pod traffic on the node skips the frontend lookup and delivery reuses the entry.
    let local = fwd::local_pod(pkt.daddr);
    let translated = match local {
        Some(_) => false,
        None => match lb::service(ctx, &mut pkt, Origin::Pod)? {
            Lb::NotService => false,
            Lb::Translated => true,
            Lb::Done(verdict) => return Ok(verdict),
        },
    };
    // Egress policy judges the real destination, whichever step chose the backend.
    policy::egress(ctx, &policy::Flow::of(&pkt), pod)?;
    let source = pkt.saddr;
    let cfg = config();
    // After DNAT the destination is a backend: look it up afresh.
    let known = if translated { None } else { local };
    if let Some(verdict) = fwd::deliver_to(ctx, &mut pkt, translated, Hop::Local, &cfg, known)? {
        return Ok(verdict);
    }
    if let Some(verdict) = fwd::to_node_owning(ctx, &mut pkt, &cfg)? {
        return Ok(verdict);
    }
    // A reply reverse-NATed to a frontend (a NodePort: one of this node's addresses) for a
    // client outside the cluster.
    if pkt.saddr != source {
        if let Some(verdict) = fwd::leave_translated(ctx, &mut pkt, &cfg)? {
            return Ok(verdict);
        }
    }
    Ok(TC_ACT_OK as i32)
}
