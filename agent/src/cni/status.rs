//! STATUS (CNI 1.1): can this node serve ADD right now?

use super::config::NetConf;
use super::error::{code, CniError};
use super::VerbCtx;
use crate::api::{ClientError, Request, Response};

pub fn run(ctx: &VerbCtx, conf: &NetConf) -> Result<(), CniError> {
    if !conf.cni_version.has_status_and_gc() {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "STATUS needs cniVersion 1.1.0 or later",
        ));
    }
    let not_available = |msg: &str| CniError::new(code::NOT_AVAILABLE, msg);
    match ctx.client.call(Request::Status) {
        Ok(Response::Status(report)) => {
            if report.pod_cidr.is_none() && conf.pod_cidr.is_none() {
                return Err(not_available("the node has no pod CIDR yet"));
            }
            if report.pod_cidr.is_some() && report.allocated >= report.capacity {
                return Err(
                    not_available("the node's pod CIDR is exhausted").with_details(format!(
                        "{} of {} in use",
                        report.allocated, report.capacity
                    )),
                );
            }
            Ok(())
        }
        Ok(other) => Err(super::add::unexpected(other)),
        Err(e @ (ClientError::Unreachable { .. } | ClientError::Io { .. })) => {
            Err(not_available("the weft agent is not running on this node").with_details(e))
        }
        Err(e) => Err(e.into()),
    }
}
