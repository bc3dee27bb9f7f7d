//! ADD: address from the agent, veth into the pod, routes, endpoint registration; rolled back
//! as a whole on any failure.

use std::net::Ipv4Addr;
use std::time::Instant;

use tracing::{info, warn};

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{code, CniError};
use super::naming::host_ifname;
use super::result::{self, Attachment};
use super::veth::{self, Spec};
use super::{pause_point, VerbCtx};
use crate::api::{CniStep, EndpointSpec, Request, Response, StepTime};
use crate::netlink::{Blocking, NetlinkError, Netns};

fn netlink_failed(e: NetlinkError) -> CniError {
    CniError::new(code::GENERIC, "cannot talk to the kernel over netlink").with_details(e)
}

pub fn run(ctx: &VerbCtx, conf: &NetConf, env: &CniEnv) -> Result<serde_json::Value, CniError> {
    let key = env.key();
    let netns_path = env.netns.as_deref().expect("checked by CniEnv");
    // Open the pod netns before allocating: a wrong path must not cost an address.
    let netns = Netns::open(netns_path).map_err(|e| {
        CniError::new(code::INVALID_ENV, "CNI_NETNS cannot be opened").with_details(e)
    })?;
    let asked = Instant::now();
    let ip = match ctx.client.call(Request::Allocate {
        key: key.clone(),
        pod_cidr: conf.pod_cidr,
        pod: env.pod(),
    })? {
        Response::Allocated { ip, .. } => ip,
        other => return Err(unexpected(other)),
    };
    let steps = vec![StepTime::new(CniStep::AllocateCall, asked.elapsed())];
    info!(container_id = %key.container_id, ifname = %key.ifname, %ip, "address allocated");
    pause_point("alloc");
    let host = host_ifname(&key.container_id, &key.ifname);
    match build(ctx, conf, env, &netns, &host, ip, steps) {
        Ok(attachment) => Ok(result::render(
            &attachment,
            conf.cni_version,
            conf.prev_result.as_ref(),
        )),
        Err(e) => {
            warn!(error = %e, %host, "ADD failed, rolling back");
            rollback(ctx, &key, &host);
            Err(e)
        }
    }
}

/// Everything after the allocation; any error here is rolled back by the caller.
fn build(
    ctx: &VerbCtx,
    conf: &NetConf,
    env: &CniEnv,
    netns: &Netns,
    host: &str,
    ip: Ipv4Addr,
    mut steps: Vec<StepTime>,
) -> Result<Attachment, CniError> {
    let pod_if = env.ifname.as_deref().expect("checked by CniEnv");
    let k = Blocking::new().map_err(netlink_failed)?;
    let node = k.connect(None).map_err(netlink_failed)?;
    let pod = k.connect(Some(netns)).map_err(netlink_failed)?;
    let spec = Spec {
        host,
        pod_if,
        pod_ns: netns,
        ip,
        mtu: conf.mtu,
    };
    let made = k.run(veth::create(&node, &pod, &spec, &mut steps))?;
    pause_point("veth");
    let endpoint = EndpointSpec {
        ip,
        host_ifname: host.to_owned(),
        host_mac: made.host_mac,
        pod_mac: made.pod_mac,
    };
    match ctx.client.call(Request::Register {
        key: env.key(),
        endpoint,
        steps,
    })? {
        Response::Registered { .. } => {}
        other => return Err(unexpected(other)),
    }
    pause_point("register");
    Ok(Attachment {
        host_ifname: made.host.name,
        host_mac: made.host_mac,
        pod_ifname: pod_if.to_owned(),
        pod_mac: made.pod_mac,
        sandbox: netns.path().to_string_lossy().into_owned(),
        ip,
        mtu: conf.mtu,
    })
}

/// Undo a half-made ADD: the agent releases endpoint, attachment, host veth and address; if it
/// cannot be reached, at least the veth goes (the address then waits for DEL or GC).
fn rollback(ctx: &VerbCtx, key: &crate::api::AttachmentKey, host: &str) {
    if let Err(e) = ctx.client.call(Request::Release { key: key.clone() }) {
        warn!(error = %e, "rollback: release through the agent failed");
        if let Err(e) = veth::delete_link(None, host) {
            warn!(error = %e, %host, "rollback: deleting the host veth failed");
        }
    }
}

pub(super) fn unexpected(r: Response) -> CniError {
    CniError::new(code::GENERIC, "unexpected answer from the agent").with_details(format!("{r:?}"))
}
