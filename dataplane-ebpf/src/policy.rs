//! NetworkPolicy verdicts. A pod `POLICY_EP4` does not hold pays that one lookup and nothing
//! else. For one it holds, every packet is first matched against its `CT4` policy entries (the
//! flow in this direction, or the reversed flow of the other: a reply); only a new flow is
//! judged, by the peer's identities from `IPCACHE4` and at most three `POLICY4` lookups, and
//! let through with a new entry or dropped and counted per direction.

use aya_ebpf::maps::lpm_trie::Key;
use dataplane_common::{
    ct::{CT4_KIND_POLICY_EGRESS, CT4_KIND_POLICY_INGRESS},
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
    parse::Ipv4Pkt,
};

/// A packet's flow as the policy step keys it, taken before a rewrite can change it.
#[derive(Clone, Copy)]
pub struct Flow {
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport_be: u16,
    dport_be: u16,
    proto: u8,
    tcp_flags: u8,
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
        }
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
pub fn egress(flow: &Flow, pod: [u8; 4]) -> Result<(), i32> {
    judge(flow, pod, Direction::Egress)
}

/// Judge `flow` (as it arrived, before reverse NAT) entering local pod `pod`.
#[inline(always)]
pub fn ingress(flow: &Flow, pod: [u8; 4]) -> Result<(), i32> {
    judge(flow, pod, Direction::Ingress)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

#[inline(always)]
fn judge(flow: &Flow, pod: [u8; 4], dir: Direction) -> Result<(), i32> {
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
