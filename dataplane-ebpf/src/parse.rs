//! Bounds-checked access to packet headers.
//!
//! Two separate questions: is the packet long enough (`skb->len`; if not it is truncated and
//! counted as a drop), and are the bytes in the linear area the program can read directly
//! (`data..data_end`; if not, `bpf_skb_pull_data` makes them so). Confusing the two would drop
//! valid packets whose headers happen to sit in a fragment.

use core::mem::size_of;

use aya_ebpf::programs::TcContext;
use dataplane_common::DropReason;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const IPV4_MIN_HLEN: usize = 20;

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
