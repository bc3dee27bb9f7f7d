//! VXLAN tunnel metadata: the remote end and VNI for the collect-metadata device.

use aya_ebpf::{
    bindings::{bpf_tunnel_key, BPF_F_ZERO_CSUM_TX},
    helpers::generated::bpf_skb_set_tunnel_key,
    programs::TcContext,
};
use dataplane_common::DropReason;

use crate::drop::drop;

/// TTL of the outer IPv4 header.
const OUTER_TTL: u8 = 64;

/// Attach tunnel metadata to the skb: the VXLAN device encapsulates towards `remote_be`
/// (network byte order) with `vni`. UDP checksum of the outer header left zero, as the
/// kernel's VXLAN does by default for IPv4.
#[inline(always)]
pub fn set_key(ctx: &TcContext, remote_be: [u8; 4], vni: u32) -> Result<(), i32> {
    // SAFETY: an all-zero bpf_tunnel_key is a valid value of this plain C struct.
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    key.tunnel_id = vni;
    // The helper wants the remote address in host byte order.
    key.__bindgen_anon_1.remote_ipv4 = u32::from_be_bytes(remote_be);
    key.tunnel_ttl = OUTER_TTL;
    // SAFETY: `key` lives for the call; the size passed is its own.
    let ret = unsafe {
        bpf_skb_set_tunnel_key(
            ctx.skb.skb,
            &mut key,
            core::mem::size_of::<bpf_tunnel_key>() as u32,
            BPF_F_ZERO_CSUM_TX as u64,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(drop(DropReason::TUNNEL_KEY_FAILED))
    }
}
