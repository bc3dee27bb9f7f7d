//! CHECK: the attachment described by `prevResult` is still in place, end to end.

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{code, CniError};
use super::naming::host_ifname;
use super::result;
use super::veth;
use super::VerbCtx;
use crate::api::{Request, Response};
use crate::netlink::{Blocking, NetlinkError, Netns};

fn broken(msg: impl Into<String>) -> CniError {
    CniError::new(code::GENERIC, msg)
}

fn io(e: NetlinkError) -> CniError {
    CniError::new(
        code::IO_FAILURE,
        "cannot inspect the attachment in the kernel",
    )
    .with_details(e)
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
    let k = Blocking::new().map_err(io)?;
    let (node, pod) = (
        k.connect(None).map_err(io)?,
        k.connect(Some(&netns)).map_err(io)?,
    );
    let host = host_ifname(&key.container_id, &key.ifname);
    k.run(veth::inspect(&node, &pod, &host, &key.ifname, want.ip()))
        .map_err(io)?
        .map_err(broken)
}
