//! Attaching the tc programs: `from_pod`/`to_pod` as tc `bpf` filters on host-side veths,
//! `from_netdev` on the uplink and `from_overlay`/`to_overlay` on the VXLAN device as TCX links
//! pinned under `links/`.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, ProgramError, SchedClassifier, TcAttachType};
use aya::sys::SyscallError;
use tracing::{debug, info, warn};

use super::{bpffs, classifier_mut, Datapath, DatapathError, Prog};
use crate::netlink::{FilterPlace, SyncNetlink, TcHook};

/// Sub-directory of the pin dir that holds the tc links.
pub const LINKS_DIR: &str = "links";

/// What a host veth's `from_pod` filter runs (see [`Datapath::from_pod_link`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromPodLink {
    /// The program this agent loaded.
    Current,
    /// A program an earlier agent loaded.
    Previous,
    /// No live link on that interface.
    Missing,
}

impl Datapath {
    /// Attach `from_pod` (ingress) and `to_pod` (egress, reverse NAT of what the stack
    /// delivers to the pod) to the host-side veth `host_ifname` as tc `bpf` filters
    /// (idempotent). Filters belong to the interface, not to the agent: they keep carrying
    /// traffic while no agent runs and go with the interface. On a veth that already has them
    /// (an agent restart or upgrade) each filter's program is replaced atomically.
    ///
    /// Not TCX links, as the node's own devices get: every TCX attach and detach waits for an
    /// RCU grace period while holding the RTNL lock (9-13 ms each here), which would be most of
    /// a pod's CNI ADD and DEL; adding a clsact qdisc and a filter waits for none.
    pub fn attach_from_pod(
        &mut self,
        nl: &SyncNetlink,
        host_ifname: &str,
    ) -> Result<(), DatapathError> {
        let index = ifindex(host_ifname)?;
        nl.run(|n| n.add_clsact(index)).map_err(tc_err(host_ifname))?;
        for which in [Prog::FromPod, Prog::ToPod] {
            let prog = classifier_mut(&mut self.ebpf, which)?;
            let fd = prog.fd().map_err(|source| DatapathError::Program {
                name: which.name(),
                source,
            })?;
            let place = pod_filter(index, which);
            nl.run(|n| n.set_bpf_filter(place, fd.as_fd(), which.name()))
                .map_err(tc_err(host_ifname))?;
        }
        debug!(ifname = host_ifname, "from_pod and to_pod filters set");
        // Agents before the filters attached TCX links pinned under links/; TCX runs before
        // tc filters, so those carried the traffic until now. Release them.
        self.retire_pod_links(host_ifname)
    }

    /// Forget what an agent before the tc filters pinned for `host_ifname` (its TCX links);
    /// called once the veth is gone, when releasing them costs nothing.
    pub fn retire_pod_links(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        for which in [Prog::ToPod, Prog::FromPod] {
            self.detach(which, host_ifname)?;
        }
        Ok(())
    }

    /// Which program the host-side veth's `from_pod` filter runs: this agent's, an earlier
    /// agent's (still carrying traffic, e.g. right after an upgrade), or none.
    pub fn from_pod_link(
        &self,
        nl: &SyncNetlink,
        host_ifname: &str,
    ) -> Result<FromPodLink, DatapathError> {
        let index = match ifindex(host_ifname) {
            Err(DatapathError::NoSuchInterface { .. }) => return Ok(FromPodLink::Missing),
            other => other?,
        };
        let place = pod_filter(index, Prog::FromPod);
        let filters = nl
            .run(|n| n.bpf_filters(index, place.hook))
            .map_err(tc_err(host_ifname))?;
        let ours = self.prog_ids[Prog::FromPod.index()];
        match filters
            .iter()
            .find(|f| f.priority == place.priority && f.handle == place.handle)
        {
            Some(f) if f.prog_id == Some(ours) => Ok(FromPodLink::Current),
            Some(_) => Ok(FromPodLink::Previous),
            // An agent before the filters: a TCX link.
            None => Ok(match self.link(Prog::FromPod, host_ifname)? {
                FromPodLink::Missing => FromPodLink::Missing,
                _ => FromPodLink::Previous,
            }),
        }
    }

    /// Attach `which` to `ifname` at its hook (idempotent), pinned as
    /// `links/<program>_<ifname>`; a link pinned by a previous agent is switched to this
    /// agent's program atomically.
    pub fn attach(&mut self, which: Prog, host_ifname: &str) -> Result<(), DatapathError> {
        let pin = self.link_pin(which, host_ifname)?;
        let state = pinned_link(which, host_ifname, &pin)?;
        let our_id = self.prog_ids[which.index()];
        let prog = classifier_mut(&mut self.ebpf, which)?;
        let prog_err = |source| DatapathError::Program {
            name: which.name(),
            source,
        };
        let link_err = |source| DatapathError::Link {
            ifname: host_ifname.to_owned(),
            source,
        };

        match state {
            LinkState::Live { prog_id, .. } if prog_id == our_id => {
                debug!(ifname = host_ifname, program = which.name(), "already attached");
                return Ok(());
            }
            LinkState::Live { link, prog_id } => {
                let link = SchedClassifierLink::try_from(link).map_err(link_err)?;
                let id = prog
                    .attach_to_link(link)
                    .map_err(|source| attach_err(which, host_ifname, source))?;
                // Drop our handle only; the pin keeps the link (and the program) attached.
                let _ = prog.take_link(id).map_err(prog_err)?;
                info!(
                    ifname = host_ifname,
                    program = which.name(),
                    old_prog = prog_id,
                    new_prog = our_id,
                    "link switched to this agent's program"
                );
                return Ok(());
            }
            LinkState::Stale => {
                warn!(
                    ifname = host_ifname,
                    "removing stale link pin (interface was recreated)"
                );
                bpffs::remove_pin(&pin)?;
            }
            LinkState::Absent => {}
        }

        let id = prog
            .attach_with_options(
                host_ifname,
                which.attach_type(),
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|source| attach_err(which, host_ifname, source))?;
        let link: FdLink = prog
            .take_link(id)
            .map_err(prog_err)?
            .try_into()
            .map_err(link_err)?;
        link.pin(&pin).map_err(|source| DatapathError::Pin {
            path: pin.clone(),
            source,
        })?;
        info!(ifname = host_ifname, program = which.name(), pin = %pin.display(), "attached");
        Ok(())
    }

    /// Which program `ifname`'s pinned link of `which` runs.
    pub fn link(&self, which: Prog, host_ifname: &str) -> Result<FromPodLink, DatapathError> {
        let pin = self.link_pin(which, host_ifname)?;
        Ok(match pinned_link(which, host_ifname, &pin)? {
            LinkState::Live { prog_id, .. } if prog_id == self.prog_ids[which.index()] => {
                FromPodLink::Current
            }
            LinkState::Live { .. } => FromPodLink::Previous,
            LinkState::Stale | LinkState::Absent => FromPodLink::Missing,
        })
    }

    /// Detach `which` from `ifname` and remove its pin (ok if not attached).
    pub fn detach(&mut self, which: Prog, host_ifname: &str) -> Result<(), DatapathError> {
        let pin = self.link_pin(which, host_ifname)?;
        match PinnedLink::from_pin(&pin) {
            Ok(pinned) => {
                // Unpinning and closing the last fd releases the link, which detaches it.
                let fd = pinned.unpin().map_err(|source| DatapathError::Io {
                    op: "unpinning",
                    path: pin.clone(),
                    source,
                })?;
                drop(fd);
                info!(ifname = host_ifname, program = which.name(), "detached");
                Ok(())
            }
            Err(LinkError::SyscallError(SyscallError { io_error, .. }))
                if io_error.kind() == io::ErrorKind::NotFound =>
            {
                debug!(ifname = host_ifname, program = which.name(), "was not attached");
                Ok(())
            }
            Err(source) => Err(DatapathError::Link {
                ifname: host_ifname.to_owned(),
                source,
            }),
        }
    }

    /// `<pin_dir>/links/<program>_<ifname>`. bpffs reserves '.' in names, which interface names
    /// may contain, so '.' is written as ':' (never valid in an interface name).
    fn link_pin(&self, which: Prog, ifname: &str) -> Result<PathBuf, DatapathError> {
        check_ifname(ifname)?;
        let name = format!("{}_{}", which.name(), ifname.replace('.', ":"));
        Ok(self.pin_dir.join(LINKS_DIR).join(name))
    }
}

/// Where a pod program's filter sits on the host veth: priority 1, handle 1 of its hook.
fn pod_filter(index: u32, which: Prog) -> FilterPlace {
    let hook = match which.attach_type() {
        TcAttachType::Egress => TcHook::Egress,
        _ => TcHook::Ingress,
    };
    FilterPlace {
        index,
        hook,
        priority: 1,
        handle: 1,
    }
}

/// A tc netlink failure on `ifname`.
fn tc_err(ifname: &str) -> impl Fn(crate::netlink::NetlinkError) -> DatapathError + '_ {
    move |source| DatapathError::Tc {
        ifname: ifname.to_owned(),
        source,
    }
}

/// The index of `ifname` in the caller's namespace.
fn ifindex(ifname: &str) -> Result<u32, DatapathError> {
    check_ifname(ifname)?;
    nix::net::if_::if_nametoindex(ifname).map_err(|_| DatapathError::NoSuchInterface {
        ifname: ifname.to_owned(),
    })
}

/// A valid interface name: 1-15 bytes, not `.` or `..`, no '/', ':', NUL or whitespace.
fn check_ifname(ifname: &str) -> Result<(), DatapathError> {
    let valid = !ifname.is_empty()
        && ifname.len() <= 15
        && ifname != "."
        && ifname != ".."
        && !ifname
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if valid {
        Ok(())
    } else {
        Err(DatapathError::BadInterfaceName {
            ifname: ifname.to_owned(),
        })
    }
}

fn attach_err(which: Prog, ifname: &str, source: ProgramError) -> DatapathError {
    let no_device = match &source {
        ProgramError::TcError(aya::programs::tc::TcError::IoError(e)) => is_enodev(e),
        ProgramError::SyscallError(SyscallError { io_error, .. }) => is_enodev(io_error),
        _ => false,
    };
    if no_device {
        DatapathError::NoSuchInterface {
            ifname: ifname.to_owned(),
        }
    } else {
        DatapathError::Attach {
            program: which.name(),
            ifname: ifname.to_owned(),
            source,
        }
    }
}

fn is_enodev(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENODEV)
}

/// What the link pin of an interface refers to.
enum LinkState {
    /// No pin.
    Absent,
    /// A pin whose link is no longer attached to the interface of that name (the interface was
    /// deleted, maybe recreated).
    Stale,
    /// A pinned link attached to the interface, running program `prog_id`.
    Live { link: FdLink, prog_id: u32 },
}

fn pinned_link(which: Prog, ifname: &str, pin: &Path) -> Result<LinkState, DatapathError> {
    let link_err = |source| DatapathError::Link {
        ifname: ifname.to_owned(),
        source,
    };
    let link = match PinnedLink::from_pin(pin) {
        Ok(pinned) => FdLink::from(pinned),
        Err(LinkError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            return Ok(LinkState::Absent)
        }
        Err(source) => return Err(link_err(source)),
    };
    let prog_id = link.info().map_err(link_err)?.program_id();
    // Only links created through these pins run this program here, so "its program is attached
    // to this interface" identifies the link (LinkInfo does not expose the tcx ifindex).
    match tcx_prog_ids(which, ifname) {
        Ok(ids) if ids.contains(&prog_id) => Ok(LinkState::Live { link, prog_id }),
        Ok(_) => Ok(LinkState::Stale),
        // The interface is gone (deleted without the agent): its link is defunct.
        Err(DatapathError::NoSuchInterface { .. }) => Ok(LinkState::Stale),
        Err(e) => Err(e),
    }
}

/// Ids of the programs attached at `which`'s TCX hook of `ifname`.
fn tcx_prog_ids(which: Prog, ifname: &str) -> Result<Vec<u32>, DatapathError> {
    SchedClassifier::query_tcx(ifname, which.attach_type())
        .map(|(_, progs)| progs.iter().map(|p| p.id()).collect())
        .map_err(|source| attach_err(which, ifname, source))
}
