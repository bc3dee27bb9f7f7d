//! The netlink layer's error: which operation failed, on what, and the kernel's errno.

use std::io;
use std::path::PathBuf;

/// A failed netlink operation. `op` names the operation and its object ("adding route
/// 10.0.0.0/24 via 192.0.2.2 dev 3"), as iproute2's messages did.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open network namespace {}: {source}", path.display())]
    Netns { path: PathBuf, source: io::Error },
    #[error("cannot open a netlink socket in {netns}: {source}")]
    Socket { netns: String, source: io::Error },
    #[error("cannot start the netlink runtime: {0}")]
    Runtime(io::Error),
    /// The kernel refused the request (an `NLMSG_ERROR` with an errno).
    #[error("{op}: {source}")]
    Kernel { op: String, source: io::Error },
    /// The connection failed or the kernel answered something unexpected.
    #[error("{op}: {detail}")]
    Protocol { op: String, detail: String },
    /// A request weft built is invalid (e.g. a route without a device or a gateway).
    #[error("{op}: {detail}")]
    Invalid { op: String, detail: String },
}

impl NetlinkError {
    /// Wrap an rtnetlink error for operation `op`.
    pub(crate) fn from_rtnl(op: impl Into<String>, e: rtnetlink::Error) -> Self {
        let op = op.into();
        match e {
            rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => Self::Kernel {
                op,
                source: m.to_io(),
            },
            other => Self::Protocol {
                op,
                detail: other.to_string(),
            },
        }
    }

    /// The kernel's errno, if the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The object does not exist (no such device, route, address or neighbour entry).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
        )
    }

    /// The object exists already.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

/// The outcome of a delete: `Ok(true)` if something was deleted, `Ok(false)` if there was
/// nothing to delete.
pub(crate) fn deleted(r: Result<(), NetlinkError>) -> Result<bool, NetlinkError> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(errno: i32) -> NetlinkError {
        NetlinkError::Kernel {
            op: "op".into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn errno_classes() {
        assert!(kernel(libc::ENODEV).is_not_found());
        assert!(kernel(libc::ESRCH).is_not_found());
        assert!(!kernel(libc::EEXIST).is_not_found());
        assert!(kernel(libc::EEXIST).is_exists());
        let p = NetlinkError::Protocol {
            op: "op".into(),
            detail: "closed".into(),
        };
        assert_eq!((p.errno(), p.is_not_found()), (None, false));
    }

    #[test]
    fn kernel_errors_keep_the_errno_and_name_the_operation() {
        let mut msg = rtnetlink::packet_core::ErrorMessage::default();
        msg.code = std::num::NonZeroI32::new(-libc::EEXIST);
        let e = NetlinkError::from_rtnl("adding link x", rtnetlink::Error::NetlinkError(msg));
        assert!(e.is_exists(), "{e:?}");
        assert!(e.to_string().starts_with("adding link x: "), "{e}");
    }
}
