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
