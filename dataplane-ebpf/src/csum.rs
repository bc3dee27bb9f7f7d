//! Internet checksums: incremental updates through the kernel's helpers when an address or
//! port changes, and full sums for headers the datapath writes from scratch.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};

use crate::parse::IP4_OFF_CSUM;

/// Where a rewritten field is covered by the L4 checksum.
#[derive(Clone, Copy)]
pub struct L4Csum {
    /// Offset of the checksum field in the frame.
    pub off: usize,
    /// UDP: a zero checksum means "none" and must stay zero.
    pub udp: bool,
}

/// Update the IPv4 header checksum and the L4 checksum (whose pseudo-header covers the
/// addresses) for an address changing from `from` to `to` (both as the header bytes).
#[inline(always)]
pub fn addr_changed(
    ctx: &TcContext,
    l4: Option<L4Csum>,
    from: [u8; 4],
    to: [u8; 4],
) -> Result<(), ()> {
    let (from, to) = (u32::from_ne_bytes(from), u32::from_ne_bytes(to));
    if let Some(l4) = l4 {
        let flags = BPF_F_PSEUDO_HDR as u64 | 4 | mangled(l4);
        ctx.l4_csum_replace(l4.off, from as u64, to as u64, flags)
            .map_err(|_| ())?;
    }
    ctx.l3_csum_replace(IP4_OFF_CSUM, from as u64, to as u64, 4)
        .map_err(|_| ())
}

/// Update the L4 checksum for a port changing from `from` to `to` (network byte order).
#[inline(always)]
pub fn port_changed(ctx: &TcContext, l4: L4Csum, from: u16, to: u16) -> Result<(), ()> {
    ctx.l4_csum_replace(l4.off, from as u64, to as u64, 2 | mangled(l4))
        .map_err(|_| ())
}

/// UDP: `BPF_F_MARK_MANGLED_0`, so a checksum of 0 ("none") stays 0 and an update that would
/// produce 0 writes 0xffff instead (RFC 768).
#[inline(always)]
fn mangled(l4: L4Csum) -> u64 {
    if l4.udp {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    }
}

/// One's-complement sum of `bytes` as big-endian 16-bit words (even length), not folded.
#[inline(always)]
pub fn sum<const N: usize>(bytes: &[u8; N]) -> u32 {
    let mut s: u32 = 0;
    let mut i = 0;
    while i + 1 < N {
        s += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    s
}

/// Fold a 32-bit sum into the final 16-bit checksum (complemented), as stored big-endian.
#[inline(always)]
pub fn fold(mut s: u32) -> [u8; 2] {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    (!(s as u16)).to_be_bytes()
}

/// Sum of the IPv4 pseudo-header for an L4 segment of `len` bytes.
#[inline(always)]
pub fn pseudo_header(saddr: [u8; 4], daddr: [u8; 4], proto: u8, len: u16) -> u32 {
    sum(&saddr) + sum(&daddr) + proto as u32 + len as u32
}
