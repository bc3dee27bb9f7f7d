//! DEL: release everything of an attachment through the agent; unknown attachments succeed.
//! With the agent unreachable (restarting, or gone for good), DEL still succeeds: the pod's
//! interfaces are removed here, and the agent frees the address when it returns (it releases
//! the addresses of pods that no longer exist).

use tracing::{info, warn};

use super::env::CniEnv;
use super::error::CniError;
use super::veth;
use super::VerbCtx;
use super::naming::host_ifname;
use crate::api::{ClientError, Request, Response};
use crate::netlink::Netns;

pub fn run(ctx: &VerbCtx, env: &CniEnv) -> Result<(), CniError> {
    let key = env.key();
    // The agent deletes the host veth, which takes the pod end with it.
    match ctx.client.call(Request::Release { key: key.clone() }) {
        Ok(Response::Released { ip }) => info!(container_id = %key.container_id, ?ip, "released"),
        Ok(other) => return Err(super::add::unexpected(other)),
        Err(ClientError::Unreachable { path, source }) => {
            warn!(socket = %path.display(), error = %source,
                "agent unreachable: removing the pod's interfaces here; the agent frees the address when it returns");
            let host = host_ifname(&key.container_id, &key.ifname);
            if let Err(e) = veth::delete_link(None, &host) {
                warn!(%host, error = %e, "removing the host veth failed");
            }
        }
        Err(e) => return Err(e.into()),
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
