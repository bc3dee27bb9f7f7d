//! GC (CNI 1.1): release every attachment the runtime no longer lists as valid.

use tracing::info;

use super::config::NetConf;
use super::error::{code, CniError};
use super::VerbCtx;
use crate::api::{Request, Response};

pub fn run(ctx: &VerbCtx, conf: &NetConf) -> Result<(), CniError> {
    if !conf.cni_version.has_status_and_gc() {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "GC needs cniVersion 1.1.0 or later",
        ));
    }
    let valid = conf
        .valid_attachments
        .clone()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "GC needs cni.dev/valid-attachments"))?;
    match ctx.client.call(Request::Gc { valid })? {
        Response::GcDone { released } => {
            for (key, ip) in released {
                info!(container_id = %key.container_id, ifname = %key.ifname, %ip, "garbage-collected");
            }
            Ok(())
        }
        other => Err(super::add::unexpected(other)),
    }
}
