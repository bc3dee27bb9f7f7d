//! NetworkPolicy verdicts. A pod `POLICY_EP4` does not hold pays that one lookup and nothing
//! else. For one it holds, every packet is first matched against its `CT4` policy entries (the
//! flow in this direction, or the reversed flow of the other: a reply); only a new flow is
//! judged, by the peer's identities from `IPCACHE4` and at most three `POLICY4` lookups, and
//! let through with a new entry or dropped and counted per direction.

use aya_ebpf::{maps::lpm_trie::Key, programs::TcContext};
use dataplane_common::{
    ct::{CT4_KIND_POLICY_EGRESS, CT4_KIND_POLICY_INGRESS},
    lb::IPPROTO_ICMP,
    policy::{
        IDENTITY_HOST, IDENTITY_WORLD, POLICY4_BITS_FULL, POLICY_DIR_EGRESS, POLICY_DIR_INGRESS,
        POLICY_EP_F_EGRESS, POLICY_EP_F_INGRESS, POLICY_PEER_ANY,
    },
    Ct4Key, Ct4Value, DropReason, Endpoint4Key, IpCache4Value, Policy4Data,
};

use crate::{
    ct,
    drop::drop,
    maps::{IPCACHE4, POLICY4, POLICY_EP4},
    parse::{ptr_at, Ipv4Hdr, Ipv4Pkt, ETH_HLEN},
};

/// ICMP types that quote the packet they are about: destination unreachable (with
/// fragmentation needed), time exceeded, parameter problem.
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// A packet's flow as the policy step keys it, taken before a rewrite can change it.
#[derive(Clone, Copy)]
pub struct Flow {
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport_be: u16,
    dport_be: u16,
    proto: u8,
    tcp_flags: u8,
    /// Offset of the L4 header (an ICMP error's quote follows its 8-byte header).
    l4_off: usize,
}

impl Flow {
    #[inline(always)]
    pub fn of(pkt: &Ipv4Pkt) -> Self {
        Self {
            saddr: pkt.saddr,
            daddr: pkt.daddr,
            sport_be: pkt.sport_be,
            dport_be: pkt.dport_be,
            proto: pkt.proto,
            tcp_flags: pkt.tcp_flags,
            l4_off: pkt.l4_off,
        }
    }

    /// For an ICMP error, the flow of the packet it quotes (as that packet was sent); `None`
    /// for anything else, or when the quote is not in the linear data (then the error is
    /// judged as ICMP of its own).
    #[inline(always)]
    fn quoted(&self, ctx: &TcContext) -> Option<Self> {
        if self.proto != IPPROTO_ICMP {
            return None;
        }
        // Bounded again here: the verifier does not carry the bound of `l4_off` through the
        // copy in `Flow`, and packet pointer arithmetic needs one.
        let off = self.l4_off;
        if off > ETH_HLEN + 60 {
            return None;
        }
        // The whole 8-byte header: a 1-byte read compiles to a comparison the verifier gives
        // no readable range for.
        let icmp = ptr_at::<[u8; 8]>(ctx, off)?;
        // SAFETY: bounds-checked by `ptr_at`.
        let t = unsafe { (*icmp)[0] };
        if t != ICMP_DEST_UNREACH && t != ICMP_TIME_EXCEEDED && t != ICMP_PARAMETER_PROBLEM {
            return None;
        }
        let inner_off = off + 8;
        let ip = ptr_at::<Ipv4Hdr>(ctx, inner_off)?;
        // SAFETY: bounds-checked by `ptr_at`.
        let (version_ihl, proto, saddr, daddr) =
            unsafe { ((*ip).version_ihl, (*ip).protocol, (*ip).saddr, (*ip).daddr) };
        let ihl = ((version_ihl & 0x0f) as usize) * 4;
        if version_ihl >> 4 != 4 || !(20..=60).contains(&ihl) {
            return None;
        }
        let ports = ptr_at::<[u16; 2]>(ctx, inner_off + ihl)?;
        // SAFETY: bounds-checked by `ptr_at`.
        let [sport_be, dport_be] = unsafe { *ports };
        Some(Self {
            saddr,
            daddr,
            sport_be,
            dport_be,
            proto,
            tcp_flags: 0,
            l4_off: 0,
        })
    }

    #[inline(always)]
    fn key(&self, kind: u8) -> Ct4Key {
        Ct4Key {
            saddr_be: self.saddr,
            daddr_be: self.daddr,
            sport_be: self.sport_be,
            dport_be: self.dport_be,
            proto: self.proto,
            kind,
            _pad: [0; 2],
        }
    }

    #[inline(always)]
    fn reversed_key(&self, kind: u8) -> Ct4Key {
        Ct4Key {
            saddr_be: self.daddr,
            daddr_be: self.saddr,
            sport_be: self.dport_be,
            dport_be: self.sport_be,
            proto: self.proto,
            kind,
            _pad: [0; 2],
        }
    }
}

/// Judge `flow` leaving local pod `pod` (its address before any source translation), after
/// the Service step: the destination is the real backend.
#[inline(always)]
pub fn egress(ctx: &TcContext, flow: &Flow, pod: [u8; 4]) -> Result<(), i32> {
    judge(ctx, flow, pod, Direction::Egress)
}

/// Judge `flow` (as it arrived, before reverse NAT) entering local pod `pod`.
#[inline(always)]
pub fn ingress(ctx: &TcContext, flow: &Flow, pod: [u8; 4]) -> Result<(), i32> {
    judge(ctx, flow, pod, Direction::Ingress)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

#[inline(always)]
fn judge(ctx: &TcContext, flow: &Flow, pod: [u8; 4], dir: Direction) -> Result<(), i32> {
    // SAFETY: copied out at once; the agent replaces entries whole.
    let Some(ep) = (unsafe { POLICY_EP4.get(&Endpoint4Key::new(pod)) }).copied() else {
        return Ok(());
    };
    let (own, other, isolated, dir_num, peer, reason) = match dir {
        Direction::Egress => (
            CT4_KIND_POLICY_EGRESS,
            CT4_KIND_POLICY_INGRESS,
            ep.flags & POLICY_EP_F_EGRESS != 0,
            POLICY_DIR_EGRESS,
            flow.daddr,
            DropReason::POLICY_DENIED_EGRESS,
        ),
        Direction::Ingress => (
            CT4_KIND_POLICY_INGRESS,
            CT4_KIND_POLICY_EGRESS,
            ep.flags & POLICY_EP_F_INGRESS != 0,
            POLICY_DIR_INGRESS,
            flow.saddr,
            DropReason::POLICY_DENIED_INGRESS,
        ),
    };
    let key = flow.key(own);
    // This direction's entry of the flow, or the other direction's entry of the flow this
    // packet replies to.
    let known = ct::lookup_timed(&key).or_else(|| ct::lookup_timed(&flow.reversed_key(other)));
    if let Some((seen, ptr, now)) = known {
        ct::refresh(ptr, &seen, flow.tcp_flags, now);
        return Ok(());
    }
    // An ICMP error about a flow of this pod (path MTU, unreachable port) goes as that flow's
    // packets go, in either direction.
    if let Some(q) = flow.quoted(ctx) {
        let kinds = [CT4_KIND_POLICY_EGRESS, CT4_KIND_POLICY_INGRESS];
        for kind in kinds {
            if ct::lookup_timed(&q.key(kind)).is_some()
                || ct::lookup_timed(&q.reversed_key(kind)).is_some()
            {
                return Ok(());
            }
        }
    }
    if isolated && !allowed(ep.policy_id, dir_num, peer, flow) {
        return Err(drop(reason));
    }
    let entry = Ct4Value {
        last_seen_ns: ct::now(),
        ..Ct4Value::default()
    };
    ct::create(&key, &entry)
}

/// Whether a rule of policy `policy_id` lets a new flow to or from `peer` through.
#[inline(always)]
fn allowed(policy_id: u32, dir: u8, peer: [u8; 4], flow: &Flow) -> bool {
    let id = IPCACHE4
        .get(&Key::new(32, peer))
        .copied()
        .unwrap_or(IpCache4Value {
            label: IDENTITY_WORLD,
            prefix: 0,
        });
    if dir == POLICY_DIR_INGRESS && id.label == IDENTITY_HOST {
        return true; // the node itself: kubelet probes and the node's own processes
    }
    let port = u16::from_be(flow.dport_be);
    let hit = |peer_id: u32| {
        let data = Policy4Data::new(policy_id, dir, peer_id, flow.proto, port);
        POLICY4.get(&Key::new(POLICY4_BITS_FULL, data)).is_some()
    };
    hit(id.label) || (id.prefix != 0 && hit(id.prefix)) || hit(POLICY_PEER_ANY)
}
