//! tc on an interface: the `clsact` qdisc and direct-action `bpf` filters on its ingress and
//! egress hooks (`tc filter add dev D ingress prio P handle H bpf da fd F`), and which program
//! each such filter runs.

use std::os::fd::{AsRawFd, BorrowedFd};

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use rtnetlink::packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

use super::conn::collect;
use super::error::deleted;
use super::{Netlink, NetlinkError};

/// `ETH_P_ALL` in network byte order, as `tc filter … protocol all` sends it.
const PROTOCOL_ALL: u16 = (libc::ETH_P_ALL as u16).to_be();

/// Which clsact hook of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcHook {
    Ingress,
    Egress,
}

impl TcHook {
    fn parent(self) -> TcHandle {
        let minor = match self {
            Self::Ingress => TcHandle::MIN_INGRESS,
            Self::Egress => TcHandle::MIN_EGRESS,
        };
        TcHandle {
            major: u16::MAX,
            minor,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// A `bpf` filter at one hook: its place (priority, handle) and the program it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfFilter {
    pub priority: u16,
    pub handle: u32,
    pub prog_id: Option<u32>,
    pub name: Option<String>,
}

/// Where a filter sits: interface, hook, priority, handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterPlace {
    pub index: u32,
    pub hook: TcHook,
    pub priority: u16,
    pub handle: u32,
}

impl FilterPlace {
    fn message(&self) -> TcMessage {
        let mut msg = TcMessage::with_index(self.index as i32);
        msg.header.parent = self.hook.parent();
        msg.header.handle = TcHandle::from(self.handle);
        msg.header.info = (u32::from(self.priority) << 16) | u32::from(PROTOCOL_ALL);
        msg
    }

    fn describe(&self) -> String {
        format!(
            "bpf filter {} prio {} handle {:#x} on link {}",
            self.hook.name(),
            self.priority,
            self.handle,
            self.index
        )
    }
}

impl Netlink {
    /// Add the `clsact` qdisc to link `index`; `Ok(false)` if it already has one.
    pub async fn add_clsact(&self, index: u32) -> Result<bool, NetlinkError> {
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::CLSACT;
        msg.header.handle = TcHandle {
            major: u16::MAX,
            minor: 0,
        };
        msg.attributes.push(TcAttribute::Kind("clsact".to_owned()));
        let r = self
            .ack(
                RouteNetlinkMessage::NewQueueDiscipline(msg),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                || format!("adding the clsact qdisc to link {index} in {}", self.netns),
            )
            .await;
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The `bpf` filters at `hook` of link `index` (none if it has no clsact qdisc).
    pub async fn bpf_filters(
        &self,
        index: u32,
        hook: TcHook,
    ) -> Result<Vec<BpfFilter>, NetlinkError> {
        let mut req = self.handle.traffic_filter(index as i32).get();
        req = match hook {
            TcHook::Ingress => req.ingress(),
            TcHook::Egress => req.egress(),
        };
        let dumped = collect(req.execute(), || {
            format!(
                "listing the {} filters of link {index} in {}",
                hook.name(),
                self.netns
            )
        })
        .await;
        let msgs = match dumped {
            Ok(m) => m,
            // No clsact qdisc: no hook, so no filters.
            Err(e) if e.errno() == Some(libc::EINVAL) || e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(msgs.iter().filter_map(bpf_filter).collect())
    }

    /// Make the filter at `place` run `prog` (direct action): created if absent, its program
    /// replaced atomically if present (packets see the old or the new program, never none).
    pub async fn set_bpf_filter(
        &self,
        place: FilterPlace,
        prog: BorrowedFd<'_>,
        name: &str,
    ) -> Result<(), NetlinkError> {
        let mut msg = place.message();
        msg.attributes.push(TcAttribute::Kind("bpf".to_owned()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(prog.as_raw_fd() as u32)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(name.to_owned())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        self.ack(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
            || format!("setting the {} in {}", place.describe(), self.netns),
        )
        .await
    }

    /// Delete the filter at `place`; `Ok(false)` if there was none.
    pub async fn delete_bpf_filter(&self, place: FilterPlace) -> Result<bool, NetlinkError> {
        let r = self
            .ack(
                RouteNetlinkMessage::DelTrafficFilter(place.message()),
                NLM_F_REQUEST | NLM_F_ACK,
                || format!("deleting the {} in {}", place.describe(), self.netns),
            )
            .await;
        deleted(r)
    }
}

/// The `bpf` filter a dumped message describes; `None` for other kinds and for the chain
/// headers a dump also carries (handle 0).
fn bpf_filter(msg: &TcMessage) -> Option<BpfFilter> {
    let handle = u32::from(msg.header.handle);
    let is_bpf = msg
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(k) if k == "bpf"));
    if !is_bpf || handle == 0 {
        return None;
    }
    let mut f = BpfFilter {
        priority: (msg.header.info >> 16) as u16,
        handle,
        prog_id: None,
        name: None,
    };
    for a in &msg.attributes {
        if let TcAttribute::Options(opts) = a {
            for o in opts {
                match o {
                    TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => f.prog_id = Some(*id),
                    TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => f.name = Some(n.clone()),
                    _ => {}
                }
            }
        }
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dumped_bpf_filter_gives_its_place_and_program() {
        let place = FilterPlace {
            index: 7,
            hook: TcHook::Egress,
            priority: 1,
            handle: 1,
        };
        let mut msg = place.message();
        msg.attributes.push(TcAttribute::Kind("bpf".to_owned()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgId(42)),
            TcOption::Bpf(TcFilterBpfOption::ProgName("to_pod".to_owned())),
        ]));
        assert_eq!(
            msg.header.parent,
            TcHandle {
                major: 0xffff,
                minor: 0xfff3
            }
        );
        assert_eq!(
            bpf_filter(&msg),
            Some(BpfFilter {
                priority: 1,
                handle: 1,
                prog_id: Some(42),
                name: Some("to_pod".to_owned()),
            })
        );
        // The chain header of a dump (no handle) and other classifiers are not bpf filters.
        let mut header = msg.clone();
        header.header.handle = TcHandle::from(0);
        assert_eq!(bpf_filter(&header), None);
        let mut u32_filter = place.message();
        u32_filter
            .attributes
            .push(TcAttribute::Kind("u32".to_owned()));
        assert_eq!(bpf_filter(&u32_filter), None);
    }
}
