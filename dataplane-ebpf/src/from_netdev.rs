//! `from_netdev`: tc ingress on the node's uplink (traffic from other nodes and the outside).
//!
//! With eBPF host routing on, IPv4 for a local pod is delivered straight into the pod
//! (this node counts as a hop); everything else goes to the node's stack.

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::fwd::from_other_node;

#[classifier]
pub fn from_netdev(ctx: TcContext) -> i32 {
    match from_other_node(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}
