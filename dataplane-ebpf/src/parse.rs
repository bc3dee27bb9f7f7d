//! Bounds-checked access to packet headers.
//!
//! Two separate questions: is the packet long enough (`skb->len`; if not it is truncated and
//! counted as a drop), and are the bytes in the linear area the program can read directly
//! (`data..data_end`; if not, `bpf_skb_pull_data` makes them so). Confusing the two would drop
//! valid packets whose headers happen to sit in a fragment.

use core::mem::size_of;

use aya_ebpf::programs::TcContext;
use dataplane_common::{
    lb::{IPPROTO_TCP, IPPROTO_UDP},
    DropReason,
};

use crate::drop::drop;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const IPV4_MIN_HLEN: usize = 20;
pub const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;

/// Offsets of IPv4 header fields in the frame.
pub const IP4_OFF_TOT_LEN: usize = ETH_HLEN + 2;
pub const IP4_OFF_CSUM: usize = ETH_HLEN + 10;
pub const IP4_OFF_SADDR: usize = ETH_HLEN + 12;
pub const IP4_OFF_DADDR: usize = ETH_HLEN + 16;

/// TCP flag bits (byte 13 of the TCP header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Ethernet header as on the wire.
#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// EtherType, network byte order.
    pub proto_be: u16,
}
const _: () = assert!(size_of::<EthHdr>() == ETH_HLEN);

/// The first 20 bytes of an IPv4 header as on the wire (fields this datapath reads).
#[repr(C)]
pub struct Ipv4Hdr {
    /// Version (high nibble) and header length in 32-bit words (low nibble).
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len_be: u16,
    pub id_be: u16,
    pub frag_off_be: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub check_be: u16,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}
const _: () = assert!(size_of::<Ipv4Hdr>() == IPV4_MIN_HLEN);

/// Why a header could not be made readable.
pub enum Short {
    /// The packet itself is shorter than needed.
    Truncated,
    /// The packet is long enough but the kernel could not linearize it (e.g. no memory).
    PullFailed,
}

impl Short {
    /// The drop reason: `truncated` for a packet that is too short, `PULL_FAILED` otherwise.
    #[inline(always)]
    pub fn reason(self, truncated: DropReason) -> DropReason {
        match self {
            Self::Truncated => truncated,
            Self::PullFailed => DropReason::PULL_FAILED,
        }
    }
}

/// Make the first `len` bytes of the packet directly readable.
#[inline(always)]
pub fn ensure(ctx: &TcContext, len: usize) -> Result<(), Short> {
    if (ctx.len() as usize) < len {
        return Err(Short::Truncated);
    }
    if ctx.data() + len <= ctx.data_end() {
        return Ok(());
    }
    ctx.pull_data(len as u32).map_err(|_| Short::PullFailed)?;
    if ctx.data() + len <= ctx.data_end() {
        Ok(())
    } else {
        Err(Short::PullFailed)
    }
}

/// A pointer to a `T` at `offset`, or `None` if it does not lie inside `data..data_end`.
///
/// The explicit comparison against `data_end` is what the verifier needs to accept the access;
/// call it again after anything that may move packet data (`bpf_skb_pull_data`).
#[inline(always)]
pub fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// What the Service path needs to know about an IPv4 packet. Rewrites (`nat`) keep it in step
/// with the bytes, so later steps see the packet as it now is.
#[derive(Clone, Copy)]
pub struct Ipv4Pkt {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub proto: u8,
    /// Time to live as received (rewrites never change it; a routed hop decrements it).
    pub ttl: u8,
    /// TCP flags (0 for anything else).
    pub tcp_flags: u8,
    /// Has a TCP or UDP header with ports (not a non-first fragment).
    pub has_ports: bool,
    /// More-fragments set or a non-zero fragment offset.
    pub fragment: bool,
    /// Ports in network byte order (0 without `has_ports`).
    pub sport_be: u16,
    pub dport_be: u16,
    /// Offset of the L4 header in the frame (`ETH_HLEN + ihl * 4`, at most 74).
    pub l4_off: usize,
}

impl Ipv4Pkt {
    /// Offset of the L4 checksum and whether it is UDP's (where 0 means "no checksum"), for
    /// TCP and UDP.
    #[inline(always)]
    pub fn l4_csum(&self) -> Option<(usize, bool)> {
        match self.proto {
            IPPROTO_TCP => Some((self.l4_off + 16, false)),
            IPPROTO_UDP => Some((self.l4_off + 6, true)),
            _ => None,
        }
    }
}

/// Validate the IPv4 header after the Ethernet header (the caller checked the EtherType) and,
/// for TCP and UDP, read the ports and TCP flags. Malformed headers are counted drops.
#[inline(always)]
pub fn ipv4(ctx: &TcContext) -> Result<Ipv4Pkt, i32> {
    ensure(ctx, ETH_HLEN + IPV4_MIN_HLEN).map_err(|e| drop(e.reason(DropReason::IP4_TRUNCATED)))?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or_else(|| drop(DropReason::IP4_TRUNCATED))?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (version_ihl, proto, frag_off_be, saddr, daddr, ttl) = unsafe {
        (
            (*ip).version_ihl,
            (*ip).protocol,
            (*ip).frag_off_be,
            (*ip).saddr,
            (*ip).daddr,
            (*ip).ttl,
        )
    };
    if version_ihl >> 4 != 4 {
        return Err(drop(DropReason::IP4_BAD_VERSION));
    }
    let ihl = (version_ihl & 0x0f) as usize;
    if ihl < 5 {
        return Err(drop(DropReason::IP4_BAD_IHL));
    }
    let l4_off = ETH_HLEN + ihl * 4;
    // Options are not parsed, but the header must be complete.
    if (ctx.len() as usize) < l4_off {
        return Err(drop(DropReason::IP4_TRUNCATED));
    }
    let frag = u16::from_be(frag_off_be);
    let mut pkt = Ipv4Pkt {
        saddr,
        daddr,
        proto,
        ttl,
        tcp_flags: 0,
        has_ports: false,
        // MF (0x2000) or a fragment offset (0x1fff).
        fragment: frag & 0x3fff != 0,
        sport_be: 0,
        dport_be: 0,
        l4_off,
    };
    let l4_len = match proto {
        IPPROTO_TCP => TCP_MIN_HLEN,
        IPPROTO_UDP => UDP_HLEN,
        _ => return Ok(pkt),
    };
    if frag & 0x1fff != 0 {
        // A later fragment: no L4 header.
        return Ok(pkt);
    }
    if (ctx.len() as usize) < l4_off + l4_len {
        return Err(drop(DropReason::L4_TRUNCATED));
    }
    // bpf_skb_load_bytes: the L4 offset varies with ihl and the bytes may lie outside the
    // linear area; the helper handles both without a pull.
    let ports: [u16; 2] = ctx.load(l4_off).map_err(|_| drop(DropReason::L4_TRUNCATED))?;
    pkt.sport_be = ports[0];
    pkt.dport_be = ports[1];
    pkt.has_ports = true;
    if proto == IPPROTO_TCP {
        pkt.tcp_flags = ctx.load(l4_off + 13).map_err(|_| drop(DropReason::L4_TRUNCATED))?;
    }
    Ok(pkt)
}
