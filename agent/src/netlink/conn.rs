//! [`Netlink`]: one rtnetlink connection, bound to one network namespace, and the request
//! helpers every object module uses.

use std::os::fd::IntoRawFd;

use futures_util::{Stream, StreamExt, TryStreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::TokioSocket;
use rtnetlink::Handle;
use tokio::task::JoinHandle;

use super::netns::{socket_in, Netns};
use super::NetlinkError;

/// A connection to the kernel's routing netlink in one network namespace.
///
/// Its requests are served by a task on the tokio runtime that was current when it connected:
/// use it from that runtime (for synchronous callers, [`super::Blocking`] owns one). Dropping
/// it ends the task. Cheap to share by reference; requests may run concurrently.
pub struct Netlink {
    pub(crate) handle: Handle,
    /// Where it is bound, for messages: "the current network namespace" or a path.
    pub(crate) netns: String,
    task: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Connect in `netns`, or in the calling thread's namespace for `None`. Must run inside a
    /// tokio runtime (it spawns the connection task there).
    pub async fn connect(netns: Option<&Netns>) -> Result<Self, NetlinkError> {
        let socket = socket_in(netns)?;
        // SAFETY: the fd comes from a socket we own and give up here; TokioSocket takes it.
        let socket =
            unsafe { <TokioSocket as std::os::fd::FromRawFd>::from_raw_fd(socket.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        Ok(Self {
            handle,
            netns: netns.map_or_else(
                || "the current network namespace".to_owned(),
                |n| n.path().display().to_string(),
            ),
            task: tokio::spawn(conn),
        })
    }

    /// Send `msg` with `flags` and wait for the kernel's acknowledgement.
    pub(crate) async fn ack(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: impl FnOnce() -> String,
    ) -> Result<(), NetlinkError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        let outcome = async {
            let mut answers = self.handle.clone().request(req)?;
            while let Some(answer) = answers.next().await {
                if let NetlinkPayload::Error(e) = answer.payload {
                    if e.raw_code() != 0 {
                        return Err(rtnetlink::Error::NetlinkError(e));
                    }
                }
            }
            Ok(())
        };
        outcome.await.map_err(|e| NetlinkError::from_rtnl(op(), e))
    }
}

/// Collect a dump stream of rtnetlink, naming the operation on failure.
pub(crate) async fn collect<T>(
    stream: impl Stream<Item = Result<T, rtnetlink::Error>>,
    op: impl FnOnce() -> String,
) -> Result<Vec<T>, NetlinkError> {
    stream
        .try_collect()
        .await
        .map_err(|e| NetlinkError::from_rtnl(op(), e))
}
