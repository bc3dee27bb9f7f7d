//! Address and port translation: DNAT/SNAT rewrites with their checksums, reverse NAT of
//! replies from `CT4`, and picking a free source port when a source must be translated.

use aya_ebpf::{helpers::bpf_get_prandom_u32, programs::TcContext};
use dataplane_common::{
    ct::{CT4_F_CLOSING, CT4_F_SNAT, CT4_KIND_SERVICE},
    lb::{SNAT_PORT_MAX, SNAT_PORT_MIN},
    Ct4Key, Ct4Value, DropReason, Lb4RevNat,
};

use crate::{
    csum::{self, L4Csum},
    ct,
    drop::drop,
    maps::{CT4, LB4_REVNAT},
    parse::{Ipv4Pkt, IP4_OFF_DADDR, IP4_OFF_SADDR, TCP_ACK, TCP_SYN},
};

/// Source-port attempts before a translated flow is given up (`snat_no_port`).
const SNAT_TRIES: u32 = 8;

/// Rewrite the destination to `addr:port_be` (DNAT), checksums included.
#[inline(always)]
pub fn set_dst(ctx: &TcContext, pkt: &mut Ipv4Pkt, addr: [u8; 4], port_be: u16) -> Result<(), i32> {
    rewrite(ctx, pkt, IP4_OFF_DADDR, 2, pkt.daddr, addr, pkt.dport_be, port_be)?;
    pkt.daddr = addr;
    pkt.dport_be = port_be;
    Ok(())
}

/// Rewrite the source to `addr:port_be` (SNAT), checksums included.
#[inline(always)]
pub fn set_src(ctx: &TcContext, pkt: &mut Ipv4Pkt, addr: [u8; 4], port_be: u16) -> Result<(), i32> {
    rewrite(ctx, pkt, IP4_OFF_SADDR, 0, pkt.saddr, addr, pkt.sport_be, port_be)?;
    pkt.saddr = addr;
    pkt.sport_be = port_be;
    Ok(())
}

#[expect(clippy::too_many_arguments, reason = "one rewrite, spelled out for the verifier")]
#[inline(always)]
fn rewrite(
    ctx: &TcContext,
    pkt: &Ipv4Pkt,
    addr_off: usize,
    port_off_in_l4: usize,
    old_addr: [u8; 4],
    new_addr: [u8; 4],
    old_port: u16,
    new_port: u16,
) -> Result<(), i32> {
    let failed = |_| drop(DropReason::REWRITE_FAILED);
    let l4 = pkt.l4_csum().map(|(off, udp)| L4Csum { off, udp });
    if old_addr != new_addr {
        // Only the first fragment carries the L4 checksum; later ones have no L4 header.
        let l4 = if pkt.has_ports { l4 } else { None };
        csum::addr_changed(ctx, l4, old_addr, new_addr).map_err(failed)?;
        ctx.store(addr_off, &new_addr, 0).map_err(|_| drop(DropReason::REWRITE_FAILED))?;
    }
    if old_port != new_port && pkt.has_ports {
        if let Some(l4) = l4 {
            csum::port_changed(ctx, l4, old_port, new_port).map_err(failed)?;
        }
        ctx.store(pkt.l4_off + port_off_in_l4, &new_port, 0)
            .map_err(|_| drop(DropReason::REWRITE_FAILED))?;
    }
    Ok(())
}

/// Reverse NAT: if `pkt` is the reply of a flow this node translated (a `CT4` reply entry),
/// restore the frontend as its source and, for a flow whose source was translated, the client
/// as its destination. `Ok(true)` when the packet was rewritten.
#[inline(always)]
pub fn rev_nat(ctx: &TcContext, pkt: &mut Ipv4Pkt) -> Result<bool, i32> {
    if !pkt.has_ports {
        return Ok(false);
    }
    let reply_key = ct::reply_key(pkt);
    let Some((entry, ptr, now)) = ct::lookup_timed(&reply_key) else {
        return Ok(false);
    };
    if kernels_answer(&entry, pkt.tcp_flags) {
        ct::remove(&reply_key);
        return Ok(false);
    }
    // SAFETY: the value is copied out at once; the agent replaces entries whole.
    let Some(frontend) = (unsafe { LB4_REVNAT.get(entry.rev_nat_id) }).copied() else {
        return Err(drop(DropReason::REVNAT_MISSING));
    };
    let closes = ct::closes(&entry, pkt.tcp_flags);
    ct::refresh(ptr, &entry, pkt.tcp_flags, now);
    if closes {
        close_service(&entry, &frontend, pkt.proto, pkt.tcp_flags);
    }
    set_src(ctx, pkt, frontend.addr_be, frontend.port_be)?;
    if entry.flags & CT4_F_SNAT != 0 {
        set_dst(ctx, pkt, entry.addr_be, entry.port_be)?;
    }
    Ok(true)
}

/// During a handoff, a SYN-ACK that meets the reply entry of a closed flow of weft's answers a
/// connection the kernel (kube-proxy) opened on the same tuple: kube-proxy's masquerade picks
/// its ports without knowing weft's. weft opens its own connections with fresh entries, so the
/// closed one is stale: the caller forgets it and leaves the answer to the stack.
#[inline(always)]
fn kernels_answer(entry: &Ct4Value, tcp_flags: u8) -> bool {
    tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
        && entry.flags & CT4_F_CLOSING != 0
        && crate::config::config().handoff()
}

/// Close the service entry of the flow whose reply entry `entry` just saw its first FIN or RST.
/// A backend's RST (a refused or aborted connection) is often the flow's last packet: left open,
/// the service entry would outlive its reply entry by hours and send the next connection from
/// that client port to this backend without reverse NAT. A function of its own: inlined, it
/// changes the caller's register allocation enough for the verifier to refuse it.
#[inline(never)]
fn close_service(entry: &Ct4Value, frontend: &Lb4RevNat, proto: u8, tcp_flags: u8) {
    let service_key = Ct4Key {
        saddr_be: entry.addr_be,
        daddr_be: frontend.addr_be,
        sport_be: entry.port_be,
        dport_be: frontend.port_be,
        proto,
        kind: CT4_KIND_SERVICE,
        _pad: [0; 2],
    };
    let now = ct::now();
    if let Some((service, ptr)) = ct::lookup(&service_key, now) {
        ct::refresh(ptr, &service, tcp_flags, now);
    }
}

/// Record the reply entry of a flow whose source becomes `snat_addr`, choosing the source
/// port: the client's own if that reply tuple is free, else random ones in
/// `SNAT_PORT_MIN..=SNAT_PORT_MAX`. Returns the port (network byte order).
///
/// `reply` is the reply key with `dport_be` still to be chosen; `value` the entry to store.
#[inline(always)]
pub fn reserve_snat_port(
    mut reply: Ct4Key,
    value: &Ct4Value,
    client_port_be: u16,
    now: u64,
) -> Result<u16, i32> {
    let span = (SNAT_PORT_MAX - SNAT_PORT_MIN) as u32 + 1;
    let mut i = 0;
    while i < SNAT_TRIES {
        let port_be = if i == 0 {
            client_port_be
        } else {
            // SAFETY: plain helper call.
            let r = unsafe { bpf_get_prandom_u32() } % span;
            (SNAT_PORT_MIN + r as u16).to_be()
        };
        reply.dport_be = port_be;
        let taken = match ct::lookup(&reply, now) {
            // Our own earlier entry for this very client may be reused.
            Some((e, _)) => e.addr_be != value.addr_be || e.port_be != value.port_be,
            None => false,
        };
        if !taken {
            CT4.insert(&reply, value, 0)
                .map_err(|_| drop(DropReason::CT_FULL))?;
            return Ok(port_be);
        }
        i += 1;
    }
    Err(drop(DropReason::SNAT_NO_PORT))
}
