//! Where a packet goes after the Service step: into a local pod ([`deliver`], the one way in,
//! which applies reverse NAT first so a reply always reaches its client from the Service
//! address it contacted), or to another node ([`to_remote_node`]: natively with
//! `bpf_redirect_neigh` on the uplink, or through the tunnel).

use aya_ebpf::{
    bindings::{bpf_redir_neigh, TC_ACT_OK, TC_ACT_REDIRECT},
    helpers::generated::{bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use aya_log_ebpf::debug;
use dataplane_common::{DpConfig, DropReason, Endpoint4Key, Endpoint4Value, NodeRoute4Value};

use crate::{
    drop::drop,
    l3::{decrement_ttl, ttl_allows_forwarding},
    maps::{ENDPOINTS4, NODE_ROUTES4},
    nat,
    parse::{ptr_at, EthHdr, Ipv4Pkt},
    policy, tunnel,
};

const AF_INET: u32 = 2;

/// How a packet reached this node's delivery step.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// From a pod of this node: no routed hop (TTL untouched; the packet cannot loop and it
    /// spares a checksum update and an expiry path).
    Local,
    /// From another node (uplink or tunnel): this node is a routed hop.
    Routed,
}

/// The node whose pod CIDR covers `daddr`, if any.
#[inline(always)]
pub fn remote_node(daddr: [u8; 4]) -> Option<NodeRoute4Value> {
    NODE_ROUTES4
        .get(aya_ebpf::maps::lpm_trie::Key::new(32, daddr))
        .copied()
}

/// The local pod at `addr`, if any.
#[inline(always)]
pub fn local_pod(addr: [u8; 4]) -> Option<Endpoint4Value> {
    // SAFETY: the value is copied out at once; the agent replaces entries whole.
    (unsafe { ENDPOINTS4.get(&Endpoint4Key::new(addr)) }).copied()
}

/// Reverse NAT (unless `translated`: the packet was just translated forward, or reverse NAT
/// already ran), then, with eBPF host routing on and a local pod as destination, deliver it
/// there if the pod's ingress policy lets it in.
///
/// `Ok(Some(verdict))`: delivered, or handed to the stack (a routed packet about to expire).
/// `Ok(None)`: not delivered here; the packet (possibly reverse-NATed, so `pkt.daddr` is where
/// it must go now) is the caller's to forward. `Err`: a counted drop.
#[inline(always)]
pub fn deliver(
    ctx: &TcContext,
    pkt: &mut Ipv4Pkt,
    translated: bool,
    hop: Hop,
    cfg: &DpConfig,
) -> Result<Option<i32>, i32> {
    deliver_to(ctx, pkt, translated, hop, cfg, None)
}

/// [`deliver`] when the caller already looked up `pkt.daddr` and found the local pod `known`.
/// Reverse NAT keeps a local pod destination (only a reply to a source-translated flow has
/// its destination rewritten, and that destination is a translation address, not a pod), so
/// the entry stays the one to deliver to.
#[inline(always)]
pub fn deliver_to(
    ctx: &TcContext,
    pkt: &mut Ipv4Pkt,
    translated: bool,
    hop: Hop,
    cfg: &DpConfig,
    known: Option<Endpoint4Value>,
) -> Result<Option<i32>, i32> {
    // Policy keys the flow as it arrived: a reply matches its flow before reverse NAT.
    let arrived = policy::Flow::of(pkt);
    if !translated {
        nat::rev_nat(ctx, pkt)?;
    }
    if !cfg.bpf_host_routing() {
        return Ok(None);
    }
    let Some(ep) = known.or_else(|| local_pod(pkt.daddr)) else {
        return Ok(None);
    };
    if hop == Hop::Routed {
        if !ttl_allows_forwarding(pkt) {
            if cfg.log() {
                debug!(ctx, "ttl {} to {:i} expires here: to the stack", pkt.ttl, pkt.daddr);
            }
            return Ok(Some(TC_ACT_OK as i32));
        }
        decrement_ttl(ctx, pkt)?;
    }
    policy::ingress(ctx, &arrived, pkt.daddr)?;
    if cfg.log() {
        debug!(ctx, "to local pod {:i}, ifindex {}", pkt.daddr, ep.ifindex);
    }
    // Rewrites and resizes invalidate earlier packet pointers: take the header afresh.
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
    redirect_to_local_pod(eth, &ep).map(Some)
}

/// Deliver the frame at `eth` to the local pod `ep`.
///
/// `bpf_redirect_peer` switches the skb straight into the destination pod's network namespace
/// (ingress of the peer of `ep.ifindex`), without a pass through the node's routing, netfilter
/// or backlog queue, so it works with `ip_forward=0` in the node.
#[inline(always)]
fn redirect_to_local_pod(eth: *mut EthHdr, ep: &Endpoint4Value) -> Result<i32, i32> {
    // SAFETY: `eth` was bounds-checked against data_end by the caller (`ptr_at`) after the last
    // call that can move packet data.
    unsafe {
        (*eth).dst = ep.pod_mac;
        (*eth).src = ep.host_mac;
    }
    // SAFETY: plain helper call; flags must be 0.
    let verdict = unsafe { bpf_redirect_peer(ep.ifindex, 0) } as i32;
    redirected(verdict)
}

/// With eBPF host routing on, send a packet for another node's pod CIDR to that node; `None`
/// when no node owns `pkt.daddr` (or routing is the kernel's): the caller hands it to the stack.
#[inline(always)]
pub fn to_node_owning(ctx: &TcContext, pkt: &mut Ipv4Pkt, cfg: &DpConfig) -> Result<Option<i32>, i32> {
    if !cfg.bpf_host_routing() {
        return Ok(None);
    }
    match remote_node(pkt.daddr) {
        Some(route) => to_remote_node(ctx, pkt, &route, cfg).map(Some),
        None => Ok(None),
    }
}

/// Send a packet to the node that owns its destination: this node is a routed hop (TTL - 1,
/// expiring packets go to the stack), then natively out of the uplink with the node as next
/// hop (the kernel's neighbour table fills in the MAC addresses), or into the tunnel.
#[inline(always)]
fn to_remote_node(
    ctx: &TcContext,
    pkt: &mut Ipv4Pkt,
    route: &NodeRoute4Value,
    cfg: &DpConfig,
) -> Result<i32, i32> {
    if !ttl_allows_forwarding(pkt) {
        if cfg.log() {
            debug!(ctx, "ttl {} to {:i} expires here: to the stack", pkt.ttl, pkt.daddr);
        }
        return Ok(TC_ACT_OK as i32);
    }
    if cfg.log() {
        if route.is_tunnel() {
            debug!(ctx, "to {:i}: tunnel to node {:i}", pkt.daddr, route.node_ip_be);
        } else {
            debug!(ctx, "to {:i}: natively to node {:i}", pkt.daddr, route.node_ip_be);
        }
    }
    decrement_ttl(ctx, pkt)?;
    if route.is_tunnel() {
        tunnel::set_key(ctx, route.node_ip_be, cfg.vni)?;
        // SAFETY: plain helper call; flags 0 = egress of the VXLAN device.
        let verdict = unsafe { bpf_redirect(cfg.vxlan_ifindex, 0) } as i32;
        return redirected(verdict);
    }
    let mut nh = bpf_redir_neigh {
        nh_family: AF_INET,
        __bindgen_anon_1: aya_ebpf::bindings::bpf_redir_neigh__bindgen_ty_1 {
            ipv4_nh: u32::from_ne_bytes(route.node_ip_be),
        },
    };
    // SAFETY: `nh` lives for the call; its size is passed; flags must be 0.
    let verdict = unsafe {
        bpf_redirect_neigh(
            route.ifindex,
            &mut nh,
            core::mem::size_of::<bpf_redir_neigh>() as i32,
            0,
        )
    } as i32;
    redirected(verdict)
}

/// A packet whose source this node translated (a reply reverse-NATed to a NodePort, or a
/// request source-translated to a node address) and that is not for a local pod: to the node
/// that owns its destination, else out of the uplink along the node's routes
/// (`bpf_redirect_neigh` with no next hop does the route lookup). In either routing mode:
/// handing it to the stack would lose it, since the stack drops a forwarded packet whose source
/// is one of its own addresses as a martian. `None` for a local pod (the stack delivers it in
/// kernel routing mode) or without a known uplink (the stack then tries).
#[inline(always)]
pub fn leave_translated(ctx: &TcContext, pkt: &mut Ipv4Pkt, cfg: &DpConfig) -> Result<Option<i32>, i32> {
    if local_pod(pkt.daddr).is_some() {
        return Ok(None);
    }
    if let Some(route) = remote_node(pkt.daddr) {
        return to_remote_node(ctx, pkt, &route, cfg).map(Some);
    }
    to_uplink(ctx, pkt, cfg)
}

/// Out of the uplink for [`leave_translated`].
#[inline(always)]
fn to_uplink(ctx: &TcContext, pkt: &mut Ipv4Pkt, cfg: &DpConfig) -> Result<Option<i32>, i32> {
    if cfg.uplink_ifindex == 0 {
        return Ok(None);
    }
    if !ttl_allows_forwarding(pkt) {
        return Ok(Some(TC_ACT_OK as i32));
    }
    if cfg.log() {
        debug!(ctx, "translated {:i} -> {:i}: out of the uplink", pkt.saddr, pkt.daddr);
    }
    decrement_ttl(ctx, pkt)?;
    // SAFETY: plain helper call; no next-hop parameters (a route lookup), flags must be 0.
    let verdict = unsafe { bpf_redirect_neigh(cfg.uplink_ifindex, core::ptr::null_mut(), 0, 0) } as i32;
    redirected(verdict).map(Some)
}

#[inline(always)]
fn redirected(verdict: i32) -> Result<i32, i32> {
    if verdict == TC_ACT_REDIRECT as i32 {
        Ok(verdict)
    } else {
        Err(drop(DropReason::REDIRECT_FAILED))
    }
}
