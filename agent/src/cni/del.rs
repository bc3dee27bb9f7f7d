//! DEL: release everything of an attachment through the agent; unknown attachments succeed.

use tracing::{info, warn};

use super::env::CniEnv;
use super::error::CniError;
use super::veth;
use super::VerbCtx;
use crate::api::{Request, Response};
use crate::netlink::Netns;

pub fn run(ctx: &VerbCtx, env: &CniEnv) -> Result<(), CniError> {
    let key = env.key();
    // The agent deletes the host veth, which takes the pod end with it.
    match ctx.client.call(Request::Release { key: key.clone() })? {
        Response::Released { ip } => info!(container_id = %key.container_id, ?ip, "released"),
        other => return Err(super::add::unexpected(other)),
    }
    // A pod end left without its peer (host side deleted by hand) goes too; a netns that is
    // already gone is fine, DEL must be idempotent.
    if let Some(path) = env.netns.as_deref() {
        if let Ok(netns) = Netns::open(path) {
            if let Err(e) = veth::delete_link(Some(&netns), &key.ifname) {
                warn!(error = %e, "removing the pod interface failed");
            }
        }
    }
    Ok(())
}
