//! Service load balancing: frontend lookup (with scopes), backend choice (random per new flow,
//! ClientIP affinity), and the per-packet Service step of `from_pod` ([`service`]) and of the
//! node uplink ([`netdev`]).
//!
//! A packet to a frontend is first matched against conntrack: an established flow keeps its
//! backend as long as that backend still exists with the same address (a removed backend, or
//! for UDP one that stopped serving, makes the flow choose again, so UDP flows never stick to a
//! dead endpoint); a TCP SYN on the tuple of a closed connection is a new flow; an established
//! flow whose reply entry went missing gets it back. A new flow gets a backend, a `CT4` reply
//! entry (so reverse NAT can restore the frontend) and a service entry, then DNAT; a frontend
//! without backends is refused.

use aya_ebpf::{
    bindings::TC_ACT_REDIRECT,
    helpers::{bpf_get_prandom_u32, generated::bpf_redirect},
    programs::TcContext,
};
use dataplane_common::{
    ct::{CT4_F_CLOSING, CT4_F_EXTERNAL, CT4_F_HAIRPIN, CT4_F_SNAT, CT4_KIND_REPLY},
    lb::{
        HAIRPIN_SNAT_ADDR, IPPROTO_UDP, LB4_BACKEND_F_NOT_SERVING, LB4_SCOPE_EXT, LB4_SCOPE_INT,
        LB4_SVC_F_AFFINITY, LB4_SVC_F_SNAT_REMOTE, LB4_SVC_F_TWO_SCOPES,
    },
    Ct4Key, Ct4Value, DpConfig, DropReason, Lb4Affinity, Lb4AffinityKey, Lb4Backend, Lb4Key,
    Lb4Service, Lb4SlotKey, LbCounter,
};

use crate::{
    config::config,
    ct,
    drop::{count, drop, stat},
    parse::{TCP_ACK, TCP_SYN},
    fwd,
    maps::{LB4_AFFINITY, LB4_BACKENDS, LB4_SERVICES, LB4_SLOTS},
    nat, refuse,
    parse::{EthHdr, Ipv4Pkt},
};

const NS_PER_S: u64 = 1_000_000_000;

/// Where a packet entered: decides the frontend scope and whether the source may be
/// translated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From a local pod (`from_pod`) or a local socket: in-node traffic.
    Pod,
    /// From the node's uplink (`from_netdev`): outside clients and other nodes.
    Netdev,
}

/// Outcome of the Service step.
pub enum Lb {
    /// Not addressed to a frontend (and not a reply this node translated).
    NotService,
    /// Translated (DNAT, or reverse NAT on the uplink path); `pkt` holds the new addresses.
    /// Deliver with `fwd::deliver(ctx, pkt, true, …)` or forward towards `pkt.daddr`.
    Translated,
    /// Final verdict (a refusal sent back, or a redirect).
    Done(i32),
}

/// The frontend entry for `addr:port_be/proto`: the external-scope entry, or the internal one
/// when it exists and the traffic is in-node.
#[inline(always)]
pub fn lookup_service(addr: [u8; 4], port_be: u16, proto: u8, in_node: bool) -> Option<Lb4Service> {
    let mut key = Lb4Key {
        addr_be: addr,
        port_be,
        proto,
        scope: LB4_SCOPE_EXT,
    };
    // SAFETY: copied out at once; LB4_SERVICES is not preallocated, so an element is freed
    // only after an RCU grace period and never reused under a running program.
    let svc = (unsafe { LB4_SERVICES.get(&key) }).copied()?;
    if in_node && svc.flags & LB4_SVC_F_TWO_SCOPES != 0 {
        key.scope = LB4_SCOPE_INT;
        // SAFETY: as above.
        if let Some(internal) = (unsafe { LB4_SERVICES.get(&key) }).copied() {
            return Some(internal);
        }
    }
    Some(svc)
}

/// Who is asking, for ClientIP affinity: an address (packet path) or a network namespace
/// (socket hooks).
#[derive(Clone, Copy)]
pub struct Client {
    pub addr: [u8; 4],
    pub netns_cookie: u64,
}

/// The backend of `id`, if it exists.
#[inline(always)]
pub fn backend(id: u32) -> Option<Lb4Backend> {
    // SAFETY: copied out at once; not preallocated (see `lookup_service`).
    (unsafe { LB4_BACKENDS.get(id) }).copied()
}

/// Choose the backend of a new flow to `svc` (which has `count > 0`): the client's affinity
/// backend while it is fresh and serving, else a random slot of the current generation.
/// Errors are counted drops.
#[inline(always)]
pub fn select_backend(svc: &Lb4Service, client: Client, now: u64) -> Result<(u32, Lb4Backend), i32> {
    let affinity_key = Lb4AffinityKey {
        netns_cookie: client.netns_cookie,
        client_addr_be: client.addr,
        rev_nat_id: svc.rev_nat_id,
        _pad: 0,
    };
    let affinity = svc.flags & LB4_SVC_F_AFFINITY != 0;
    if affinity {
        if let Some(ptr) = LB4_AFFINITY.get_ptr_mut(&affinity_key) {
            // SAFETY: a value of this map, valid under the RCU read lock.
            let a = unsafe { *ptr };
            let fresh = now.wrapping_sub(a.last_used_ns) <= svc.affinity_timeout_s as u64 * NS_PER_S;
            if fresh {
                if let Some(b) = backend(a.backend_id) {
                    if b.flags & LB4_BACKEND_F_NOT_SERVING == 0 {
                        // SAFETY: as above; a lost race only loses one timestamp.
                        unsafe { (*ptr).last_used_ns = now };
                        stat(LbCounter::AFFINITY_HITS);
                        return Ok((a.backend_id, b));
                    }
                }
            }
        }
    }
    // SAFETY: plain helper call.
    let slot = (unsafe { bpf_get_prandom_u32() } % svc.count as u32) as u16;
    let slot_key = Lb4SlotKey {
        rev_nat_id: svc.rev_nat_id,
        slot,
        generation: svc.generation,
        _pad: [0; 3],
    };
    // SAFETY: copied out at once; not preallocated.
    let id = (unsafe { LB4_SLOTS.get(&slot_key) })
        .map(|s| s.backend_id)
        .ok_or_else(|| drop(DropReason::LB_SLOT_MISSING))?;
    let b = backend(id).ok_or_else(|| drop(DropReason::LB_BACKEND_MISSING))?;
    if affinity {
        let value = Lb4Affinity {
            last_used_ns: now,
            backend_id: id,
            _pad: 0,
        };
        // Best effort: without the entry this flow still works, the next one may choose
        // another backend (LRU inserts fail only when nothing can be evicted).
        let _ = LB4_AFFINITY.insert(&affinity_key, &value, 0);
    }
    Ok((id, b))
}

/// Whether `addr` is a pod on this node.
#[inline(always)]
pub fn is_local(addr: [u8; 4]) -> bool {
    fwd::local_pod(addr).is_some()
}

/// Whether backend `id`, chosen earlier for a flow (or a socket), still takes its traffic: it
/// exists with the same address and, for UDP, still serves (a UDP flow has no end, so it
/// moves off a terminating backend rather than stick to it).
#[inline(always)]
pub fn still_serves(id: u32, addr_be: [u8; 4], port_be: u16, proto: u8) -> bool {
    match backend(id) {
        Some(b) => {
            b.addr_be == addr_be
                && b.port_be == port_be
                && !(proto == IPPROTO_UDP && b.flags & LB4_BACKEND_F_NOT_SERVING != 0)
        }
        None => false,
    }
}

/// The backend an established flow keeps: the one its entry names, if [`still_serves`].
#[inline(always)]
fn still_valid(entry: &Ct4Value, proto: u8) -> bool {
    still_serves(entry.backend_id, entry.addr_be, entry.port_be, proto)
}

/// Whether `pkt` opens a new connection on the tuple of a closed one: a TCP SYN (no ACK) that
/// meets a service entry in which a FIN or RST has passed. It is a new flow: its own backend
/// choice and both entries written again. Reusing the old service entry would also reuse a
/// reply entry that may be gone: each direction refreshes its own entry (at most once a
/// second), so the two expire apart, and a SYN that refreshed the service entry alone would
/// leave the backend's answer without reverse NAT, on every reuse of that client port. A
/// retransmitted SYN of a live connection (no FIN seen) keeps its entry and its backend.
#[inline(always)]
fn reopens(entry: &Ct4Value, pkt: &Ipv4Pkt) -> bool {
    is_syn(pkt) && entry.flags & CT4_F_CLOSING != 0
}

/// Whether a packet to a frontend that no live `CT4` entry keeps on a backend (`known`: an entry
/// exists but is closed or its backend left) belongs to the node's stack during a switch from or
/// to kube-proxy: every such packet while kube-proxy takes new connections; while weft takes them,
/// a TCP segment other than a SYN with no entry at all (a connection kube-proxy's rules translated,
/// which the stack's conntrack keeps on its backend, where weft would choose afresh).
#[inline(always)]
fn left_to_kernel(cfg: &DpConfig, known: bool, pkt: &Ipv4Pkt) -> bool {
    cfg.kernel_new_flows()
        || (cfg.handoff()
            && !known
            && pkt.proto == dataplane_common::lb::IPPROTO_TCP
            && pkt.tcp_flags & TCP_SYN == 0)
}

/// A TCP SYN without ACK: a connection's first segment (or its retransmission).
#[inline(always)]
fn is_syn(pkt: &Ipv4Pkt) -> bool {
    pkt.proto == dataplane_common::lb::IPPROTO_TCP && pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// The reply entry of `pkt`'s flow (as the client sent it): reverse NAT back to the client.
#[inline(always)]
fn reply_entry(pkt: &Ipv4Pkt, rev_nat_id: u16, flags: u16, now: u64) -> Ct4Value {
    Ct4Value {
        last_seen_ns: now,
        rev_nat_id,
        addr_be: pkt.saddr,
        port_be: pkt.sport_be,
        flags,
        ..Ct4Value::default()
    }
}

/// The Service step for a packet that entered at `origin`: DNAT (and source translation for
/// hairpin and for outside clients of remote backends) of packets to a frontend.
#[inline(always)]
pub fn service(ctx: &TcContext, pkt: &mut Ipv4Pkt, origin: Origin) -> Result<Lb, i32> {
    if !pkt.has_ports {
        return Ok(Lb::NotService);
    }
    let Some(svc) = lookup_service(pkt.daddr, pkt.dport_be, pkt.proto, origin == Origin::Pod) else {
        return Ok(Lb::NotService);
    };
    if pkt.fragment {
        return Err(drop(DropReason::FRAG_TO_SERVICE));
    }
    let now = ct::now();
    let service_key = ct::service_key(pkt);
    let known = ct::lookup(&service_key, now);
    if let Some((entry, ptr)) = known {
        if !reopens(&entry, pkt) && still_valid(&entry, pkt.proto) {
            ct::refresh(ptr, &entry, pkt.tcp_flags, now);
            keep_reply(&entry, pkt, now)?;
            if entry.flags & CT4_F_SNAT != 0 {
                nat::set_src(ctx, pkt, entry.snat_addr_be, entry.snat_port_be)?;
            }
            nat::set_dst(ctx, pkt, entry.addr_be, entry.port_be)?;
            return Ok(Lb::Translated);
        }
    }
    if left_to_kernel(&config(), known.is_some(), pkt) {
        if known.is_some() {
            // While kube-proxy takes new connections: a SYN on the tuple of a closed flow of
            // weft's (or one whose backend left) opens the kernel's connection. The old entry
            // must go, or it would capture that connection's next segments.
            ct::remove(&service_key);
        }
        stat(LbCounter::HANDED_TO_KERNEL);
        return Ok(Lb::NotService);
    }
    if known.is_none()
        && pkt.proto == dataplane_common::lb::IPPROTO_TCP
        && pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_ACK
    {
        // Mid-connection without a conntrack entry: evicted from a full CT4, or outlived.
        stat(LbCounter::CT_MISS_ESTABLISHED);
    }
    if svc.count == 0 {
        return refuse(ctx, pkt, origin);
    }
    let client = Client {
        addr: pkt.saddr,
        netns_cookie: 0,
    };
    let (backend_id, b) = select_backend(&svc, client, now)?;

    // The source is translated for hairpin (the pod would drop a packet from its own
    // address) and for outside clients of a remote backend when the frontend asks for it
    // (the reply must come back through this node).
    let hairpin = b.addr_be == pkt.saddr;
    let snat_addr = if hairpin {
        Some(HAIRPIN_SNAT_ADDR)
    } else if origin == Origin::Netdev
        && svc.flags & LB4_SVC_F_SNAT_REMOTE != 0
        && !is_local(b.addr_be)
    {
        Some(svc.snat_addr_be)
    } else {
        None
    };
    let mut flags = 0;
    if hairpin {
        flags |= CT4_F_HAIRPIN;
    }
    if origin == Origin::Netdev {
        flags |= CT4_F_EXTERNAL;
    }
    // The reply entry first: the backend may answer before this function returns.
    let reply_value = reply_entry(
        pkt,
        svc.rev_nat_id,
        flags | if snat_addr.is_some() { CT4_F_SNAT } else { 0 },
        now,
    );
    let mut reply_key = Ct4Key {
        saddr_be: b.addr_be,
        daddr_be: snat_addr.unwrap_or(pkt.saddr),
        sport_be: b.port_be,
        dport_be: pkt.sport_be,
        proto: pkt.proto,
        kind: CT4_KIND_REPLY,
        _pad: [0; 2],
    };
    let snat_port_be = match snat_addr {
        Some(_) => nat::reserve_snat_port(reply_key, &reply_value, pkt.sport_be, now)?,
        None => {
            reply_key.dport_be = pkt.sport_be;
            ct::create(&reply_key, &reply_value)?;
            pkt.sport_be
        }
    };
    let service_value = Ct4Value {
        last_seen_ns: now,
        backend_id,
        addr_be: b.addr_be,
        port_be: b.port_be,
        snat_addr_be: snat_addr.unwrap_or([0; 4]),
        snat_port_be,
        rev_nat_id: svc.rev_nat_id,
        flags: reply_value.flags,
        ..Ct4Value::default()
    };
    ct::create(&service_key, &service_value)?;
    stat(LbCounter::NEW_FLOWS);
    if let Some(addr) = snat_addr {
        nat::set_src(ctx, pkt, addr, snat_port_be)?;
    }
    nat::set_dst(ctx, pkt, b.addr_be, b.port_be)?;
    Ok(Lb::Translated)
}

/// Keep the reply entry of an established flow: refresh it with the forward traffic (a flow
/// whose replies are rare must not lose its reverse NAT), at most once a second, on every TCP
/// SYN, and when the flow closes (its first FIN or RST closes both entries); write it again when
/// it is gone. The service entry is the flow's record: a reply entry lost on its own (a
/// conntrack sweep that raced a new flow on the same tuple, eviction from a full `CT4`) would
/// otherwise leave every answer of the backend without reverse NAT, and with a service entry
/// that lives for hours, every reuse of that client port.
#[inline(always)]
fn keep_reply(entry: &Ct4Value, pkt: &Ipv4Pkt, now: u64) -> Result<(), i32> {
    let syn = is_syn(pkt);
    let closes = ct::closes(entry, pkt.tcp_flags);
    if !syn && !closes && now.wrapping_sub(entry.last_seen_ns) < dataplane_common::ct::CT4_REFRESH_NS {
        return Ok(());
    }
    let snat = entry.flags & CT4_F_SNAT != 0;
    let reply_key = Ct4Key {
        saddr_be: entry.addr_be,
        daddr_be: if snat { entry.snat_addr_be } else { pkt.saddr },
        sport_be: entry.port_be,
        dport_be: if snat { entry.snat_port_be } else { pkt.sport_be },
        proto: pkt.proto,
        kind: CT4_KIND_REPLY,
        _pad: [0; 2],
    };
    if let Some((reply, ptr)) = ct::lookup(&reply_key, now) {
        ct::refresh(ptr, &reply, pkt.tcp_flags, now);
        return Ok(());
    }
    if closes {
        // The flow ends: nothing to restore.
        return Ok(());
    }
    ct::create(&reply_key, &reply_entry(pkt, entry.rev_nat_id, entry.flags & !CT4_F_CLOSING, now))?;
    stat(LbCounter::REPLY_RESTORED);
    Ok(())
}

/// Answer a new flow to a frontend without backends and send the answer back where the
/// packet came from: into the client pod, or out of the uplink.
#[inline(always)]
fn refuse(ctx: &TcContext, pkt: &mut Ipv4Pkt, origin: Origin) -> Result<Lb, i32> {
    count(DropReason::SERVICE_NO_BACKEND);
    refuse::answer(ctx, pkt)?;
    match origin {
        // The answer goes back into the client pod whatever the host routing: the stack would
        // not know what to do with a reply to a connection it never saw.
        Origin::Pod => match fwd::deliver(ctx, pkt, true, fwd::Hop::Local, &{
            let mut cfg = crate::config::config();
            cfg.flags |= dataplane_common::config::DP_F_BPF_HOST_ROUTING;
            cfg
        })? {
            Some(verdict) => Ok(Lb::Done(verdict)),
            // The client is not a local pod (a spoofed source): nowhere to answer.
            None => Err(aya_ebpf::bindings::TC_ACT_SHOT as i32),
        },
        Origin::Netdev => {
            let eth = crate::parse::ptr_at::<EthHdr>(ctx, 0)
                .ok_or_else(|| drop(DropReason::ETH_TRUNCATED))?;
            // SAFETY: bounds-checked by `ptr_at` after the last resize.
            unsafe {
                let (d, s) = ((*eth).dst, (*eth).src);
                (*eth).dst = s;
                (*eth).src = d;
            }
            // SAFETY: the skb's own ingress device; plain helper call.
            let ifindex = unsafe { (*ctx.skb.skb).ifindex };
            // SAFETY: plain helper call; flags 0 = egress of that device.
            let verdict = unsafe { bpf_redirect(ifindex, 0) } as i32;
            if verdict == TC_ACT_REDIRECT as i32 {
                Ok(Lb::Done(verdict))
            } else {
                Err(drop(DropReason::REDIRECT_FAILED))
            }
        }
    }
}

/// The Service step of the node uplink (`from_netdev`): reverse NAT of replies this node
/// translated (remote backends answering an outside client or a local pod), then
/// NodePort/externalIP/load-balancer DNAT of new traffic from outside. Then
/// `fwd::deliver(ctx, pkt, translated, …)` delivers to a local pod, or the caller forwards.
#[inline(always)]
pub fn netdev(ctx: &TcContext, pkt: &mut Ipv4Pkt) -> Result<Lb, i32> {
    if nat::rev_nat(ctx, pkt)? {
        return Ok(Lb::Translated);
    }
    service(ctx, pkt, Origin::Netdev)
}
