//! CHECK: the attachment described by `prevResult` is still in place, end to end.

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{code, CniError};
use super::ip::{self, Netns};
use super::naming::host_ifname;
use super::result::{self, GATEWAY};
use super::VerbCtx;
use crate::api::{Request, Response};

fn broken(msg: impl Into<String>) -> CniError {
    CniError::new(code::GENERIC, msg)
}

fn io(what: &'static str) -> impl FnOnce(ip::IpError) -> CniError {
    move |e| CniError::new(code::IO_FAILURE, format!("cannot inspect {what}")).with_details(e)
}

pub fn run(ctx: &VerbCtx, conf: &NetConf, env: &CniEnv) -> Result<(), CniError> {
    if !conf.cni_version.has_check() {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "CHECK needs cniVersion 0.4.0 or later",
        ));
    }
    let key = env.key();
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "CHECK needs prevResult"))?;
    let want = result::address_of(prev, &key.ifname).ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            format!("prevResult has no address on {}", key.ifname),
        )
    })?;
    match ctx.client.call(Request::Lookup { key: key.clone() })? {
        Response::Attachment {
            ip: Some(ip),
            registered,
        } => {
            if ip != want.ip() {
                return Err(broken(format!(
                    "agent holds {ip} for this attachment, prevResult says {want}"
                )));
            }
            if !registered {
                return Err(broken(format!("{ip} has no datapath endpoint")));
            }
        }
        Response::Attachment { ip: None, .. } => {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                "the agent knows no address for this attachment",
            ))
        }
        other => return Err(super::add::unexpected(other)),
    }
    let netns = Netns::open(env.netns.as_deref().expect("checked by CniEnv")).map_err(|e| {
        CniError::new(code::INVALID_ENV, "CNI_NETNS cannot be opened").with_details(e)
    })?;
    let pod = ip::link(Some(&netns), &key.ifname)
        .map_err(io("the pod interface"))?
        .ok_or_else(|| broken(format!("{} is missing in the pod", key.ifname)))?;
    if !pod.up {
        return Err(broken(format!("{} is down in the pod", key.ifname)));
    }
    let addrs = ip::ipv4_addresses(Some(&netns), &key.ifname).map_err(io("pod addresses"))?;
    let want_s = format!("{}/32", want.ip());
    if !addrs.contains(&want_s) {
        return Err(broken(format!(
            "{want_s} is missing on {} (has {addrs:?})",
            key.ifname
        )));
    }
    let pod_routes = ip::ipv4_routes(Some(&netns)).map_err(io("pod routes"))?;
    let has_default = pod_routes.iter().any(|r| {
        r["dst"] == "default"
            && r["gateway"] == GATEWAY.to_string()
            && r["dev"] == key.ifname.as_str()
    });
    if !has_default {
        return Err(broken(format!(
            "default route via {GATEWAY} is missing in the pod"
        )));
    }
    let host = host_ifname(&key.container_id, &key.ifname);
    ip::link(None, &host)
        .map_err(io("the host veth"))?
        .ok_or_else(|| broken(format!("host veth {host} is missing")))?;
    let node_routes = ip::ipv4_routes(None).map_err(io("node routes"))?;
    let pod_ip = want.ip().to_string();
    if !node_routes
        .iter()
        .any(|r| r["dst"] == pod_ip.as_str() && r["dev"] == host.as_str())
    {
        return Err(broken(format!(
            "node route {pod_ip}/32 dev {host} is missing"
        )));
    }
    Ok(())
}
