//! Socket-level load balancing: the `sock4_*` cgroup programs attached to a cgroup v2
//! directory, with pinned links so they outlive the agent.
//!
//! Every process in that cgroup (and its descendants), in any network namespace, has its
//! `connect()`/`sendmsg()` to a Service frontend sent to a backend, and its `getpeername()`/
//! `recvmsg()` report the frontend; processes outside it are never touched. On a node that is
//! the root cgroup; in the lab, each node's own subtree.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::programs::links::{CgroupAttachMode, FdLink, LinkError, PinnedLink};
use aya::programs::CgroupSockAddr;
use aya::sys::SyscallError;
use dataplane_common::maps::{
    PROG_SOCK4_CONNECT, PROG_SOCK4_GETPEER, PROG_SOCK4_RECVMSG, PROG_SOCK4_SENDMSG,
};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use tracing::{debug, info};

use super::{bpffs, Datapath, DatapathError, LINKS_DIR};

/// The socket hooks, in attach order.
pub const SOCK_PROGRAMS: [&str; 4] = [
    PROG_SOCK4_CONNECT,
    PROG_SOCK4_SENDMSG,
    PROG_SOCK4_RECVMSG,
    PROG_SOCK4_GETPEER,
];

/// Where the socket programs of one cgroup stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockLbState {
    /// All four programs attached, this agent's.
    Current,
    /// All four attached, at least one from an earlier agent.
    Previous,
    /// Some or none attached.
    Missing,
}

impl Datapath {
    /// Attach the four socket programs to the cgroup v2 directory `cgroup` (idempotent). Links
    /// an earlier agent pinned are replaced by this agent's without a gap: the new program is
    /// attached beside the old one (cgroup programs run in sequence, and the second finds
    /// nothing left to translate) before the old link is released.
    pub fn attach_sock_lb(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        let id = cgroup_id(cgroup)?;
        let dir = std::fs::File::open(cgroup).map_err(|source| DatapathError::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        for name in SOCK_PROGRAMS {
            let pin = self.sock_pin(name, id);
            let ours = self.prog_id(name)?;
            let old = match pinned(&pin)? {
                Some((_, prog)) if prog == ours => {
                    debug!(program = name, cgroup = %cgroup.display(), "already attached");
                    continue;
                }
                other => other.map(|(link, _)| link),
            };
            let prog = sock_program(&mut self.ebpf, name)?;
            // A BPF link always attaches as one of many (the kernel refuses other flags for
            // links), so `Single` here means "no flags", not exclusive.
            let link_id = prog
                .attach(&dir, CgroupAttachMode::Single)
                .map_err(|source| DatapathError::Attach {
                    program: name,
                    ifname: cgroup.display().to_string(),
                    source,
                })?;
            let link: FdLink = prog
                .take_link(link_id)
                .map_err(|source| DatapathError::Program { name, source })?
                .try_into()
                .map_err(|source| DatapathError::Link {
                    ifname: cgroup.display().to_string(),
                    source,
                })?;
            if let Some(old) = old {
                // Releasing the old pin's link detaches the old program; ours already runs.
                drop(old);
                bpffs::remove_pin(&pin)?;
            }
            link.pin(&pin).map_err(|source| DatapathError::Pin {
                path: pin.clone(),
                source,
            })?;
            info!(program = name, cgroup = %cgroup.display(), "socket LB attached");
        }
        Ok(())
    }

    /// Detach the socket programs from `cgroup` and remove their pins. Ok if not attached.
    pub fn detach_sock_lb(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        let id = cgroup_id(cgroup)?;
        for name in SOCK_PROGRAMS {
            let pin = self.sock_pin(name, id);
            if pinned(&pin)?.is_some() {
                bpffs::remove_pin(&pin)?;
                info!(program = name, cgroup = %cgroup.display(), "socket LB detached");
            }
        }
        Ok(())
    }

    /// Release the socket programs' links of every cgroup (an earlier agent's, pinned): this node
    /// no longer replaces kube-proxy, so a `connect()` to a Service must leave with the Service's
    /// address for kube-proxy's rules to translate. Returns how many links went.
    pub fn detach_every_sock_lb(&mut self) -> Result<usize, DatapathError> {
        let dir = self.pin_dir.join(LINKS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(bpffs::io("listing", &dir)(e)),
        };
        let mut released = 0;
        for entry in entries {
            let name = entry.map_err(bpffs::io("listing", &dir))?.file_name();
            let name = name.to_string_lossy();
            if SOCK_PROGRAMS.iter().any(|p| name.starts_with(&format!("{p}_cg"))) {
                bpffs::remove_pin(&dir.join(&*name))?;
                info!(link = %name, "socket LB detached");
                released += 1;
            }
        }
        Ok(released)
    }

    /// Whether `cgroup` runs this agent's socket programs.
    pub fn sock_lb_state(&self, cgroup: &Path) -> Result<SockLbState, DatapathError> {
        let id = cgroup_id(cgroup)?;
        let mut state = SockLbState::Current;
        for name in SOCK_PROGRAMS {
            match pinned(&self.sock_pin(name, id))? {
                None => return Ok(SockLbState::Missing),
                Some((_, prog)) if prog != self.prog_id(name)? => state = SockLbState::Previous,
                Some(_) => {}
            }
        }
        Ok(state)
    }

    /// `<pin_dir>/links/<program>_cg<cgroup id>`.
    fn sock_pin(&self, program: &str, cgroup_id: u64) -> PathBuf {
        self.pin_dir
            .join(LINKS_DIR)
            .join(format!("{program}_cg{cgroup_id}"))
    }

    fn prog_id(&self, name: &'static str) -> Result<u32, DatapathError> {
        let prog: &CgroupSockAddr = self
            .ebpf
            .program(name)
            .ok_or(DatapathError::Missing {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|source| DatapathError::Program { name, source })?;
        Ok(prog
            .info()
            .map_err(|source| DatapathError::Program { name, source })?
            .id())
    }
}

pub(super) fn sock_program<'a>(
    ebpf: &'a mut aya::Ebpf,
    name: &'static str,
) -> Result<&'a mut CgroupSockAddr, DatapathError> {
    ebpf.program_mut(name)
        .ok_or(DatapathError::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })
}

/// The cgroup v2 id of `path` (its inode number), refusing anything that is not a cgroup v2
/// directory (cgroup v1 hierarchies have no sock_addr hooks).
fn cgroup_id(path: &Path) -> Result<u64, DatapathError> {
    let io = |source| DatapathError::Cgroup {
        path: path.to_path_buf(),
        source,
    };
    let st = statfs(path).map_err(|e| io(e.into()))?;
    if st.filesystem_type() != CGROUP2_SUPER_MAGIC {
        return Err(io(std::io::Error::other(
            "not a cgroup v2 directory (on this machine cgroup v2 is mounted at \
             /sys/fs/cgroup/unified)",
        )));
    }
    Ok(std::fs::metadata(path).map_err(io)?.ino())
}

/// The link pinned at `pin` and its program id, if any.
fn pinned(pin: &Path) -> Result<Option<(FdLink, u32)>, DatapathError> {
    let link_err = |source| DatapathError::Link {
        ifname: pin.display().to_string(),
        source,
    };
    match PinnedLink::from_pin(pin) {
        Ok(p) => {
            let link = FdLink::from(p);
            let prog = link.info().map_err(link_err)?.program_id();
            Ok(Some((link, prog)))
        }
        Err(LinkError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(source) => Err(link_err(source)),
    }
}
