//! Refusing a new flow to a Service without backends: the packet is rewritten in place into
//! the answer a closed port gives (TCP RST, else ICMP port unreachable), from the frontend to
//! the client, so the client fails at once instead of retrying into silence.

use aya_ebpf::{helpers::generated::bpf_skb_change_tail, programs::TcContext, EbpfContext};
use dataplane_common::{
    lb::{IPPROTO_ICMP, IPPROTO_TCP},
    DropReason,
};

use crate::{
    csum,
    drop::drop,
    parse::{Ipv4Pkt, ETH_HLEN, IP4_OFF_TOT_LEN, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

const IP_TTL: u8 = 64;
/// ICMP destination unreachable, port unreachable.
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;

/// Rewrite `pkt` into its refusal, addressed from the frontend back to the client; the caller
/// sends it (Ethernet addresses are the caller's). Errors are counted drops; a TCP RST is
/// never answered (`Err` without a count: the caller has counted the refusal).
#[inline(always)]
pub fn answer(ctx: &TcContext, pkt: &mut Ipv4Pkt) -> Result<(), i32> {
    if pkt.proto == IPPROTO_TCP {
        tcp_rst(ctx, pkt)
    } else {
        icmp_port_unreachable(ctx, pkt)
    }
}

/// A 20-byte IPv4 header (no options, DF, TTL 64) with its checksum.
#[inline(always)]
fn ipv4_header(saddr: [u8; 4], daddr: [u8; 4], proto: u8, total_len: u16) -> [u8; 20] {
    let len = total_len.to_be_bytes();
    let mut h = [
        0x45, 0, len[0], len[1], 0, 0, 0x40, 0, IP_TTL, proto, 0, 0, saddr[0], saddr[1],
        saddr[2], saddr[3], daddr[0], daddr[1], daddr[2], daddr[3],
    ];
    let c = csum::fold(csum::sum(&h));
    h[10] = c[0];
    h[11] = c[1];
    h
}

/// RST for a TCP segment (RFC 9293 3.10.7.1): if the segment carries an ACK, the RST takes
/// its sequence number from that ACK; otherwise it has sequence 0 and acknowledges everything
/// the segment occupied.
#[inline(always)]
fn tcp_rst(ctx: &TcContext, pkt: &mut Ipv4Pkt) -> Result<(), i32> {
    let tcp: [u8; 20] = ctx
        .load(pkt.l4_off)
        .map_err(|_| drop(DropReason::L4_TRUNCATED))?;
    let flags = tcp[13];
    if flags & TCP_RST != 0 {
        return Err(aya_ebpf::bindings::TC_ACT_SHOT as i32);
    }
    let seq_in = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack_in = [tcp[8], tcp[9], tcp[10], tcp[11]];
    let tot_len: u16 = ctx
        .load::<u16>(IP4_OFF_TOT_LEN)
        .map(u16::from_be)
        .map_err(|_| drop(DropReason::IP4_TRUNCATED))?;
    let headers = (pkt.l4_off - ETH_HLEN) as u32 + ((tcp[12] >> 4) as u32) * 4;
    let payload = (tot_len as u32).saturating_sub(headers);
    let (seq, ack, out_flags) = if flags & TCP_ACK != 0 {
        (ack_in, [0; 4], TCP_RST)
    } else {
        let occupied = payload + (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32;
        ([0; 4], seq_in.wrapping_add(occupied).to_be_bytes(), TCP_RST | TCP_ACK)
    };
    let (src, dst) = (pkt.daddr, pkt.saddr);
    let (sp, dp) = (pkt.dport_be.to_ne_bytes(), pkt.sport_be.to_ne_bytes());
    let mut seg: [u8; 20] = [
        sp[0], sp[1], dp[0], dp[1], seq[0], seq[1], seq[2], seq[3], ack[0], ack[1], ack[2],
        ack[3], 0x50, out_flags, 0, 0, 0, 0, 0, 0,
    ];
    let c = csum::fold(csum::pseudo_header(src, dst, IPPROTO_TCP, 20) + csum::sum(&seg));
    seg[16] = c[0];
    seg[17] = c[1];
    let ip = ipv4_header(src, dst, IPPROTO_TCP, 40);
    write(ctx, &ip, &seg)?;
    swap(pkt, IPPROTO_TCP, out_flags);
    Ok(())
}

/// ICMP port unreachable quoting the offending datagram's IPv4 header (options dropped,
/// `ihl` 5) and its first 8 bytes, which is what the client's stack matches to its socket.
#[inline(always)]
fn icmp_port_unreachable(ctx: &TcContext, pkt: &mut Ipv4Pkt) -> Result<(), i32> {
    let mut inner: [u8; 20] = ctx
        .load(ETH_HLEN)
        .map_err(|_| drop(DropReason::IP4_TRUNCATED))?;
    let l4: [u8; 8] = ctx
        .load(pkt.l4_off)
        .map_err(|_| drop(DropReason::L4_TRUNCATED))?;
    if inner[0] != 0x45 {
        // Options are not quoted: describe the quoted header as the 20 bytes it now is.
        inner[0] = 0x45;
        inner[10] = 0;
        inner[11] = 0;
        let c = csum::fold(csum::sum(&inner));
        inner[10] = c[0];
        inner[11] = c[1];
    }
    let mut icmp = [0u8; 36];
    icmp[0] = ICMP_DEST_UNREACH;
    icmp[1] = ICMP_PORT_UNREACH;
    let mut i = 0;
    while i < 20 {
        icmp[8 + i] = inner[i];
        i += 1;
    }
    let mut i = 0;
    while i < 8 {
        icmp[28 + i] = l4[i];
        i += 1;
    }
    let c = csum::fold(csum::sum(&icmp));
    icmp[2] = c[0];
    icmp[3] = c[1];
    let ip = ipv4_header(pkt.daddr, pkt.saddr, IPPROTO_ICMP, 20 + 36);
    write(ctx, &ip, &icmp)?;
    swap(pkt, IPPROTO_ICMP, 0);
    pkt.has_ports = false;
    pkt.sport_be = 0;
    pkt.dport_be = 0;
    Ok(())
}

/// Resize the frame to Ethernet + `ip` + `l4` and write both headers after the Ethernet one.
#[inline(always)]
fn write<const N: usize>(ctx: &TcContext, ip: &[u8; 20], l4: &[u8; N]) -> Result<(), i32> {
    let len = (ETH_HLEN + 20 + N) as u32;
    // SAFETY: plain helper call on this program's skb; packet pointers taken before it are
    // invalid afterwards (none are kept).
    let ret = unsafe { bpf_skb_change_tail(ctx.as_ptr().cast(), len, 0) };
    if ret != 0 {
        return Err(drop(DropReason::REWRITE_FAILED));
    }
    ctx.store(ETH_HLEN, ip, 0)
        .map_err(|_| drop(DropReason::REWRITE_FAILED))?;
    ctx.store(ETH_HLEN + 20, l4, 0)
        .map_err(|_| drop(DropReason::REWRITE_FAILED))
}

/// `pkt` now describes the answer: frontend -> client, no options, not a fragment.
#[inline(always)]
fn swap(pkt: &mut Ipv4Pkt, proto: u8, tcp_flags: u8) {
    let (s, d) = (pkt.saddr, pkt.daddr);
    pkt.saddr = d;
    pkt.daddr = s;
    let (sp, dp) = (pkt.sport_be, pkt.dport_be);
    pkt.sport_be = dp;
    pkt.dport_be = sp;
    pkt.proto = proto;
    pkt.tcp_flags = tcp_flags;
    pkt.fragment = false;
    pkt.l4_off = ETH_HLEN + 20;
}
