//! Forwarding decisions shared by every program: into a local pod (`bpf_redirect_peer`), to
//! another node natively (`bpf_redirect_neigh` on the uplink) or through the tunnel.

use aya_ebpf::{
    bindings::{bpf_redir_neigh, TC_ACT_OK, TC_ACT_REDIRECT},
    helpers::generated::{bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use aya_log_ebpf::debug;
use dataplane_common::{DpConfig, DropReason, Endpoint4Key, Endpoint4Value, NodeRoute4Value};

use crate::{
    config::config,
    drop::drop,
    l3::{decrement_ttl, ipv4, ttl_allows_forwarding, Ipv4Info},
    maps::{ENDPOINTS4, NODE_ROUTES4},
    parse::{ptr_at, EthHdr},
    tunnel,
};

const AF_INET: u32 = 2;

/// The local pod that owns `daddr`, if any.
#[inline(always)]
pub fn local_endpoint(daddr: [u8; 4]) -> Option<Endpoint4Value> {
    // SAFETY: the value is copied out at once; the agent replaces entries whole.
    unsafe { ENDPOINTS4.get(&Endpoint4Key::new(daddr)) }.copied()
}

/// The node whose pod CIDR covers `daddr`, if any.
#[inline(always)]
pub fn remote_node(daddr: [u8; 4]) -> Option<NodeRoute4Value> {
    NODE_ROUTES4
        .get(aya_ebpf::maps::lpm_trie::Key::new(32, daddr))
        .copied()
}

/// A packet that came from another node (uplink or tunnel): a local pod gets it straight,
/// anything else goes to the node's stack.
#[inline(always)]
pub fn from_other_node(ctx: &TcContext) -> Result<i32, i32> {
    let Some(info) = ipv4(ctx)? else {
        return Ok(TC_ACT_OK as i32);
    };
    let cfg = config();
    if !cfg.bpf_host_routing() {
        return Ok(TC_ACT_OK as i32);
    }
    match local_endpoint(info.daddr) {
        Some(ep) => {
            if cfg.log() {
                debug!(ctx, "from another node: {:i} -> local pod, ifindex {}", info.daddr, ep.ifindex);
            }
            to_local_pod(ctx, &info, &ep, true)
        }
        None => Ok(TC_ACT_OK as i32),
    }
}

/// Deliver to the local pod `ep`. `routed`: the packet came from another node, so this node
/// counts as a hop (TTL - 1; a packet about to expire goes to the stack, which answers it).
///
/// Same-node pod-to-pod traffic is not `routed`: TTL stays (no loop is possible, the
/// destination is a pod here, and it spares a checksum update and an expiry path).
#[inline(always)]
pub fn to_local_pod(
    ctx: &TcContext,
    info: &Ipv4Info,
    ep: &Endpoint4Value,
    routed: bool,
) -> Result<i32, i32> {
    if routed {
        if !ttl_allows_forwarding(info) {
            if config().log() {
                debug!(ctx, "ttl {} to {:i} expires here: to the stack", info.ttl, info.daddr);
            }
            return Ok(TC_ACT_OK as i32);
        }
        decrement_ttl(ctx, info)?;
    }
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
    redirect_to_local_pod(eth, ep)
}

/// Rewrite the Ethernet addresses for the pod and hand the frame to the peer of its host-side
/// veth.
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
    if verdict == TC_ACT_REDIRECT as i32 {
        Ok(verdict)
    } else {
        Err(drop(DropReason::REDIRECT_FAILED))
    }
}

/// Send a pod's packet to the node that owns its destination: this node is a routed hop (TTL
/// - 1, expiring packets go to the stack), then natively out of the uplink with the node as
/// next hop (the kernel's neighbour table fills in the MAC addresses), or into the tunnel.
#[inline(always)]
pub fn to_remote_node(
    ctx: &TcContext,
    info: &Ipv4Info,
    route: &NodeRoute4Value,
    cfg: &DpConfig,
) -> Result<i32, i32> {
    if !ttl_allows_forwarding(info) {
        if cfg.log() {
            debug!(ctx, "ttl {} to {:i} expires here: to the stack", info.ttl, info.daddr);
        }
        return Ok(TC_ACT_OK as i32);
    }
    if cfg.log() {
        if route.is_tunnel() {
            debug!(ctx, "pod -> {:i}: tunnel to node {:i}", info.daddr, route.node_ip_be);
        } else {
            debug!(ctx, "pod -> {:i}: natively to node {:i}", info.daddr, route.node_ip_be);
        }
    }
    decrement_ttl(ctx, info)?;
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

#[inline(always)]
fn redirected(verdict: i32) -> Result<i32, i32> {
    if verdict == TC_ACT_REDIRECT as i32 {
        Ok(verdict)
    } else {
        Err(drop(DropReason::REDIRECT_FAILED))
    }
}
