//! ADD: address from the agent, veth into the pod, routes, endpoint registration; rolled back
//! as a whole on any failure.

use std::net::Ipv4Addr;

use tracing::{info, warn};

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{code, CniError};
use super::ip::{self, Netns};
use super::naming::host_ifname;
use super::result::{self, Attachment, GATEWAY};
use super::{pause_point, VerbCtx};
use crate::api::{EndpointSpec, Request, Response};

fn setup_failed(what: &str) -> impl FnOnce(ip::IpError) -> CniError + '_ {
    move |e| CniError::new(code::GENERIC, format!("{what} failed")).with_details(e)
}

pub fn run(ctx: &VerbCtx, conf: &NetConf, env: &CniEnv) -> Result<serde_json::Value, CniError> {
    let key = env.key();
    let netns_path = env.netns.as_deref().expect("checked by CniEnv");
    // Open the pod netns before allocating: a wrong path must not cost an address.
    let netns = Netns::open(netns_path).map_err(|e| {
        CniError::new(code::INVALID_ENV, "CNI_NETNS cannot be opened").with_details(e)
    })?;
    let ip = match ctx.client.call(Request::Allocate {
        key: key.clone(),
        pod_cidr: conf.pod_cidr,
        pod: env.pod(),
    })? {
        Response::Allocated { ip, .. } => ip,
        other => return Err(unexpected(other)),
    };
    info!(container_id = %key.container_id, ifname = %key.ifname, %ip, "address allocated");
    pause_point("alloc");
    let host = host_ifname(&key.container_id, &key.ifname);
    match build(ctx, conf, env, &netns, &host, ip) {
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
) -> Result<Attachment, CniError> {
    let pod_if = env.ifname.as_deref().expect("checked by CniEnv");
    let mtu = conf.mtu.to_string();
    // A leftover of an earlier, interrupted ADD of the same attachment: start over.
    ip::delete_link(None, host).map_err(setup_failed("removing a stale host veth"))?;
    if ip::link(Some(netns), pod_if)
        .map_err(setup_failed("inspecting the pod netns"))?
        .is_some()
    {
        return Err(CniError::new(
            code::GENERIC,
            format!(
                "interface {pod_if} already exists in {}",
                netns.path().display()
            ),
        ));
    }
    let netns_arg = netns.path().to_string_lossy();
    ip::run(
        None,
        &[
            "link", "add", host, "mtu", &mtu, "type", "veth", "peer", "name", pod_if, "mtu", &mtu,
            "netns", &netns_arg,
        ],
    )
    .map_err(setup_failed("creating the veth pair"))?;
    let host_link = ip::link(None, host)
        .map_err(setup_failed("reading the host veth"))?
        .ok_or_else(|| CniError::new(code::GENERIC, format!("host veth {host} vanished")))?;
    let pod_link = ip::link(Some(netns), pod_if)
        .map_err(setup_failed("reading the pod veth"))?
        .ok_or_else(|| CniError::new(code::GENERIC, format!("pod veth {pod_if} vanished")))?;
    ip::batch(
        Some(netns),
        &[
            format!("addr add {ip}/32 dev {pod_if}"),
            format!("link set dev {pod_if} up"),
            format!(
                "neigh replace {GATEWAY} lladdr {} dev {pod_if} nud permanent",
                host_link.mac
            ),
            format!("route add default via {GATEWAY} dev {pod_if} onlink"),
        ],
    )
    .map_err(setup_failed("configuring the pod interface"))?;
    ip::batch(
        None,
        &[
            format!("link set dev {host} up"),
            format!("route replace {ip}/32 dev {host} scope link"),
        ],
    )
    .map_err(setup_failed("configuring the host veth"))?;
    pause_point("veth");
    let spec = EndpointSpec {
        ip,
        host_ifname: host.to_owned(),
        host_mac: host_link.mac,
        pod_mac: pod_link.mac,
    };
    match ctx.client.call(Request::Register {
        key: env.key(),
        endpoint: spec,
    })? {
        Response::Registered { .. } => {}
        other => return Err(unexpected(other)),
    }
    pause_point("register");
    Ok(Attachment {
        host_ifname: host.to_owned(),
        host_mac: host_link.mac,
        pod_ifname: pod_if.to_owned(),
        pod_mac: pod_link.mac,
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
        if let Err(e) = ip::delete_link(None, host) {
            warn!(error = %e, %host, "rollback: deleting the host veth failed");
        }
    }
}

pub(super) fn unexpected(r: Response) -> CniError {
    CniError::new(code::GENERIC, "unexpected answer from the agent").with_details(format!("{r:?}"))
}
