//! The pod's veth pair in the kernel: created with the pod end born in the pod netns,
//! addressed and routed on both sides (ADD), inspected (CHECK), through [`crate::netlink`].

use std::net::Ipv4Addr;
use std::time::Instant;

use ipnetwork::Ipv4Network;

use super::error::{code, CniError};
use super::result::GATEWAY;
use crate::api::{CniStep, StepTime};
use crate::ids::Mac;
use crate::netlink::{Blocking, Link, Netlink, NetlinkError, Netns, Route, Veth, MAIN_TABLE};

/// Both ends of a pod's veth as created.
pub struct PodVeth {
    pub host: Link,
    pub host_mac: Mac,
    pub pod_mac: Mac,
}

/// What ADD asks for: host end `host` in the node, `pod_if` in `pod_ns` with `ip`/32.
pub struct Spec<'a> {
    pub host: &'a str,
    pub pod_if: &'a str,
    pub pod_ns: &'a Netns,
    pub ip: Ipv4Addr,
    pub mtu: u32,
}

fn failed(what: &str) -> impl FnOnce(NetlinkError) -> CniError + '_ {
    move |e| CniError::new(code::GENERIC, format!("{what} failed")).with_details(e)
}

fn mac_of(link: &Link) -> Result<Mac, CniError> {
    link.mac
        .ok_or_else(|| CniError::new(code::GENERIC, format!("{} has no MAC address", link.name)))
}

/// Create and configure the veth pair. `node` and `pod` are connections in the node and the
/// pod netns; each step's time is added to `steps`. On error the caller deletes the host end
/// (which takes the pod end along).
pub async fn create(
    node: &Netlink,
    pod: &Netlink,
    s: &Spec<'_>,
    steps: &mut Vec<StepTime>,
) -> Result<PodVeth, CniError> {
    let mut lap = Instant::now();
    let mut step = |step: CniStep| {
        steps.push(StepTime::new(step, lap.elapsed()));
        lap = Instant::now();
    };
    // A leftover of an earlier, interrupted ADD of the same attachment: start over.
    node.delete_link(s.host)
        .await
        .map_err(failed("removing a stale host veth"))?;
    if pod
        .link(s.pod_if)
        .await
        .map_err(failed("inspecting the pod netns"))?
        .is_some()
    {
        return Err(CniError::new(
            code::GENERIC,
            format!(
                "interface {} already exists in {}",
                s.pod_if,
                s.pod_ns.path().display()
            ),
        ));
    }
    node.add_veth(&Veth {
        name: s.host,
        peer: s.pod_if,
        peer_netns: Some(s.pod_ns),
        mtu: s.mtu,
    })
    .await
    .map_err(failed("creating the veth pair"))?;
    let vanished =
        |what: &str, name: &str| CniError::new(code::GENERIC, format!("{what} {name} vanished"));
    let host = node
        .link(s.host)
        .await
        .map_err(failed("reading the host veth"))?
        .ok_or_else(|| vanished("host veth", s.host))?;
    let pod_link = pod
        .link(s.pod_if)
        .await
        .map_err(failed("reading the pod veth"))?
        .ok_or_else(|| vanished("pod veth", s.pod_if))?;
    let (host_mac, pod_mac) = (mac_of(&host)?, mac_of(&pod_link)?);
    step(CniStep::Veth);
    let pod_side = async {
        let i = pod_link.index;
        pod.add_address(i, host_route(s.ip)).await?;
        pod.set_link_up(i).await?;
        pod.replace_neighbour(i, GATEWAY, host_mac).await?;
        pod.add_route(&Route::via(default_dst(), GATEWAY, i).onlink())
            .await
    };
    pod_side
        .await
        .map_err(failed("configuring the pod interface"))?;
    step(CniStep::PodSide);
    let host_side = async {
        node.set_link_up(host.index).await?;
        node.replace_route(&Route::device(host_route(s.ip), host.index))
            .await
    };
    host_side
        .await
        .map_err(failed("configuring the host veth"))?;
    step(CniStep::HostSide);
    Ok(PodVeth {
        host,
        host_mac,
        pod_mac,
    })
}

/// CHECK's kernel half: the pod interface up with `ip`/32 and the default route via the
/// gateway, the host veth present and the node's /32 route to the pod on it. `Ok(Err(msg))`
/// says what is broken; `Err` is a failure to look.
pub async fn inspect(
    node: &Netlink,
    pod: &Netlink,
    host: &str,
    pod_if: &str,
    ip: Ipv4Addr,
) -> Result<Result<(), String>, NetlinkError> {
    let Some(pod_link) = pod.link(pod_if).await? else {
        return Ok(Err(format!("{pod_if} is missing in the pod")));
    };
    if !pod_link.up {
        return Ok(Err(format!("{pod_if} is down in the pod")));
    }
    let addrs = pod.ipv4_addresses(pod_link.index).await?;
    if !addrs.contains(&host_route(ip)) {
        let has: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        return Ok(Err(format!("{ip}/32 is missing on {pod_if} (has {has:?})")));
    }
    let has_default = pod.routes(MAIN_TABLE).await?.iter().any(|r| {
        r.dst == default_dst() && r.gateway == Some(GATEWAY) && r.oif == Some(pod_link.index)
    });
    if !has_default {
        return Ok(Err(format!(
            "default route via {GATEWAY} is missing in the pod"
        )));
    }
    let Some(host_link) = node.link(host).await? else {
        return Ok(Err(format!("host veth {host} is missing")));
    };
    let has_node_route = node
        .routes(MAIN_TABLE)
        .await?
        .iter()
        .any(|r| r.dst == host_route(ip) && r.oif == Some(host_link.index));
    if !has_node_route {
        return Ok(Err(format!("node route {ip}/32 dev {host} is missing")));
    }
    Ok(Ok(()))
}

/// Delete link `name` in `netns` (the node's for `None`) with a one-off connection; `Ok(false)`
/// if it was not there. For the plugin's clean-up paths (rollback, DEL).
pub fn delete_link(netns: Option<&Netns>, name: &str) -> Result<bool, NetlinkError> {
    let k = Blocking::new()?;
    let nl = k.connect(netns)?;
    k.run(nl.delete_link(name))
}

fn host_route(ip: Ipv4Addr) -> Ipv4Network {
    Ipv4Network::new(ip, 32).expect("32 is a valid prefix")
}

fn default_dst() -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).expect("0 is a valid prefix")
}
