//! `from_overlay`: tc ingress on the VXLAN device (decapsulated traffic from other nodes).
//!
//! The inner frame is handled like one arriving on the uplink: local pods get it straight,
//! the rest goes to the node's stack.

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::fwd::from_other_node;

#[classifier]
pub fn from_overlay(ctx: TcContext) -> i32 {
    match from_other_node(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}
