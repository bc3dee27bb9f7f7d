//! [`Blocking`]: netlink for synchronous callers (the CNI plugin, the agent's owner thread).

use std::future::Future;

use super::{Netlink, NetlinkError, Netns};

/// A current-thread tokio runtime that serves [`Netlink`] connections made through it.
///
/// Connections made by [`Blocking::connect`] make progress only inside [`Blocking::run`], so
/// use them only there. Must not be created, run or dropped inside another async runtime.
pub struct Blocking {
    rt: tokio::runtime::Runtime,
}

impl Blocking {
    pub fn new() -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(NetlinkError::Runtime)?;
        Ok(Self { rt })
    }

    /// A connection in `netns` (or the caller's namespace for `None`), served by this runtime.
    pub fn connect(&self, netns: Option<&Netns>) -> Result<Netlink, NetlinkError> {
        self.rt.block_on(Netlink::connect(netns))
    }

    /// Run `f` (netlink requests of connections made here) to completion.
    pub fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// One connection together with the runtime that serves it: a synchronous caller's netlink in
/// one namespace (the agent's owner thread in the node's).
pub struct SyncNetlink {
    // Field order is drop order: the connection before the runtime that serves it.
    conn: Netlink,
    rt: Blocking,
}

impl SyncNetlink {
    /// Connect in `netns`, or in the calling thread's namespace for `None`.
    pub fn connect(netns: Option<&Netns>) -> Result<Self, NetlinkError> {
        let rt = Blocking::new()?;
        let conn = rt.connect(netns)?;
        Ok(Self { conn, rt })
    }

    /// Run the requests `f` makes on the connection to completion.
    pub fn run<'a, F, Fut>(&'a self, f: F) -> Fut::Output
    where
        F: FnOnce(&'a Netlink) -> Fut,
        Fut: Future,
    {
        self.rt.run(f(&self.conn))
    }
}
