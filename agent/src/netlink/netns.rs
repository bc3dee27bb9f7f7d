//! Network namespaces, and netlink sockets bound to one.
//!
//! A netlink socket belongs to the network namespace its creator was in when it was opened, for
//! its whole life, whatever that thread does afterwards. So weft never moves a thread that does
//! other work: [`socket_in`] opens the socket on a short-lived helper thread that enters the
//! namespace (`setns`), opens the socket and exits. Every thread of the process, the tokio
//! runtime's included, stays in the namespace it was in.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket};

use super::NetlinkError;

/// An open network namespace (a `/run/netns/x` or `/proc/<pid>/ns/net` path).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    pub fn open(path: &Path) -> Result<Self, NetlinkError> {
        let file = File::open(path).map_err(|source| NetlinkError::Netns {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace file (for `IFLA_NET_NS_FD`: a link created with it lands in here).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// A blocking `NETLINK_ROUTE` socket in `netns`, or in the caller's namespace for `None`.
pub(crate) fn socket_in(netns: Option<&Netns>) -> Result<Socket, NetlinkError> {
    let failed = |source: io::Error| NetlinkError::Socket {
        netns: netns.map_or_else(
            || "the current network namespace".to_owned(),
            |n| n.path.display().to_string(),
        ),
        source,
    };
    let Some(ns) = netns else {
        return Socket::new(NETLINK_ROUTE).map_err(failed);
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // This thread exits right after: its namespace never leaks into other work.
            nix::sched::setns(ns.file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
            Socket::new(NETLINK_ROUTE)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
    })
    .map_err(failed)
}
