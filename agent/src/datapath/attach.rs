//! Attaching `from_pod` at tc ingress (TCX) of host-side veths, with pinned links.

use std::io;
use std::path::PathBuf;

use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, ProgramError, SchedClassifier, TcAttachType};
use aya::sys::SyscallError;
use dataplane_common::maps::PROG_FROM_POD;
use tracing::{debug, info, warn};

use super::{bpffs, from_pod_mut, Datapath, DatapathError};

/// Sub-directory of the pin dir that holds the tc links.
pub const LINKS_DIR: &str = "links";

impl Datapath {
    /// Attach `from_pod` at tc ingress (TCX) of the host-side veth (idempotent). The link is
    /// pinned under `pin_dir` so it survives an agent restart; a link pinned by a previous
    /// agent is switched to this agent's program atomically (no moment without a program).
    pub fn attach_from_pod(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        let pin = self.link_pin(host_ifname)?;
        let prog = from_pod_mut(&mut self.ebpf)?;
        let prog_err = |source| DatapathError::Program { name: PROG_FROM_POD, source };
        let our_id = prog.info().map_err(prog_err)?.id();
        let attached = tcx_ingress_prog_ids(host_ifname)?;
        let link_err = |source| DatapathError::Link { ifname: host_ifname.to_owned(), source };

        match PinnedLink::from_pin(&pin) {
            Ok(pinned) => {
                let link = FdLink::from(pinned);
                let linked_prog = link.info().map_err(link_err)?.program_id();
                if attached.contains(&linked_prog) {
                    if linked_prog == our_id {
                        debug!(ifname = host_ifname, "from_pod already attached");
                        return Ok(());
                    }
                    let link = SchedClassifierLink::try_from(link).map_err(link_err)?;
                    let id = prog.attach_to_link(link).map_err(|source| attach_err(host_ifname, source))?;
                    // Our handle only; the pin keeps the link (and the program) attached.
                    let _ = prog.take_link(id).map_err(prog_err)?;
                    info!(ifname = host_ifname, old_prog = linked_prog, new_prog = our_id,
                          "from_pod link switched to this agent's program");
                    return Ok(());
                }
                warn!(ifname = host_ifname, "removing stale link pin (interface was recreated)");
                bpffs::remove_pin(&pin)?;
            }
            Err(LinkError::SyscallError(SyscallError { io_error, .. }))
                if io_error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(link_err(source)),
        }

        let id = prog
            .attach_with_options(
                host_ifname,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|source| attach_err(host_ifname, source))?;
        let link: FdLink = prog
            .take_link(id)
            .map_err(prog_err)?
            .try_into()
            .map_err(link_err)?;
        link.pin(&pin).map_err(|source| DatapathError::Pin { path: pin.clone(), source })?;
        info!(ifname = host_ifname, pin = %pin.display(), "from_pod attached");
        Ok(())
    }

    /// Detach `from_pod` from the host-side veth and remove its pin. Ok if it was not attached
    /// or the interface is gone (its link is then already defunct).
    pub fn detach_from_pod(&mut self, host_ifname: &str) -> Result<(), DatapathError> {
        let pin = self.link_pin(host_ifname)?;
        match PinnedLink::from_pin(&pin) {
            Ok(pinned) => {
                // Unpinning and closing the last fd releases the link, which detaches it.
                let fd = pinned.unpin().map_err(|source| DatapathError::Io {
                    op: "unpinning",
                    path: pin.clone(),
                    source,
                })?;
                drop(fd);
                info!(ifname = host_ifname, "from_pod detached");
                Ok(())
            }
            Err(LinkError::SyscallError(SyscallError { io_error, .. }))
                if io_error.kind() == io::ErrorKind::NotFound =>
            {
                debug!(ifname = host_ifname, "from_pod was not attached");
                Ok(())
            }
            Err(source) => Err(DatapathError::Link { ifname: host_ifname.to_owned(), source }),
        }
    }

    /// `<pin_dir>/links/from_pod_<ifname>`. bpffs reserves '.' in names, which interface names
    /// may contain, so '.' is written as ':' (never valid in an interface name).
    fn link_pin(&self, ifname: &str) -> Result<PathBuf, DatapathError> {
        let valid = !ifname.is_empty()
            && ifname.len() <= 15
            && ifname != "."
            && ifname != ".."
            && !ifname.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
        if !valid {
            return Err(DatapathError::BadInterfaceName { ifname: ifname.to_owned() });
        }
        let name = format!("{PROG_FROM_POD}_{}", ifname.replace('.', ":"));
        Ok(self.pin_dir.join(LINKS_DIR).join(name))
    }
}

fn attach_err(ifname: &str, source: ProgramError) -> DatapathError {
    DatapathError::Attach { program: PROG_FROM_POD, ifname: ifname.to_owned(), source }
}

/// Ids of the programs attached at TCX ingress of `ifname`.
fn tcx_ingress_prog_ids(ifname: &str) -> Result<Vec<u32>, DatapathError> {
    match SchedClassifier::query_tcx(ifname, TcAttachType::Ingress) {
        Ok((_, progs)) => Ok(progs.iter().map(|p| p.id()).collect()),
        Err(ProgramError::TcError(aya::programs::tc::TcError::IoError(e)))
            if e.raw_os_error() == Some(libc::ENODEV) || e.kind() == io::ErrorKind::NotFound =>
        {
            Err(DatapathError::NoSuchInterface { ifname: ifname.to_owned() })
        }
        Err(source) => Err(attach_err(ifname, source)),
    }
}
