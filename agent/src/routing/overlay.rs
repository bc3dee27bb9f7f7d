//! The node's network devices for routing: finding the uplink, and the VXLAN device (collect
//! metadata, no ARP: `to_overlay` gives every packet its tunnel key, and no neighbour is ever
//! resolved on it).

use std::net::Ipv4Addr;

use rtnetlink::LinkUnspec;

use super::reconcile::Uplink;
use crate::netlink::{Netlink, NetlinkError, Vxlan, DEFAULT_VXLAN_PORT};

/// Name of weft's VXLAN device.
pub const VXLAN_DEVICE: &str = "weft_vxlan";
/// VXLAN network identifier of pod traffic.
pub const VNI: u32 = 1;
/// Bytes VXLAN adds over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("no interface holds the node's address {0}; set --uplink")]
    NoUplinkFor(Ipv4Addr),
    #[error("uplink {0} does not exist")]
    NoSuchUplink(String),
    #[error("uplink {0} has no IPv4 address and the Node has no InternalIP")]
    UplinkWithoutAddress(String),
}

/// The uplink: `name` if given, else the interface that holds `node_ip`.
pub async fn find_uplink(
    nl: &Netlink,
    name: Option<&str>,
    node_ip: Option<Ipv4Addr>,
) -> Result<Uplink, DeviceError> {
    let links = match name {
        Some(n) => vec![nl
            .link(n)
            .await?
            .ok_or_else(|| DeviceError::NoSuchUplink(n.to_owned()))?],
        None => nl.links().await?,
    };
    for link in &links {
        let addrs = nl.ipv4_addresses(link.index).await?;
        let ip = match node_ip {
            Some(want) => addrs.iter().map(|a| a.ip()).find(|ip| *ip == want),
            None => addrs.first().map(|a| a.ip()),
        };
        match (ip, name) {
            (Some(ip), _) => {
                return Ok(Uplink {
                    name: link.name.clone(),
                    ifindex: link.index,
                    ip,
                })
            }
            // A named uplink without the Node's address: still the uplink, with the Node's IP.
            (None, Some(n)) => {
                return match node_ip.or(addrs.first().map(|a| a.ip())) {
                    Some(ip) => Ok(Uplink {
                        name: link.name.clone(),
                        ifindex: link.index,
                        ip,
                    }),
                    None => Err(DeviceError::UplinkWithoutAddress(n.to_owned())),
                }
            }
            (None, None) => {}
        }
    }
    Err(match node_ip {
        Some(ip) => DeviceError::NoUplinkFor(ip),
        None => DeviceError::UplinkWithoutAddress("(none)".into()),
    })
}

/// Make sure `weft_vxlan` exists as a collect-metadata device on the VXLAN port with `mtu`,
/// without ARP, and up; a device of that name with other settings is recreated. Returns its
/// ifindex.
pub async fn ensure_vxlan(nl: &Netlink, mtu: u32) -> Result<u32, DeviceError> {
    let want = Vxlan::external(VXLAN_DEVICE, DEFAULT_VXLAN_PORT).mtu(mtu);
    match nl.vxlan(VXLAN_DEVICE).await {
        Ok(Some((have, _))) if have == want => {}
        Ok(Some(_)) | Err(_) => {
            nl.delete_link(VXLAN_DEVICE).await?;
            nl.add_vxlan(&want).await?;
        }
        Ok(None) => nl.add_vxlan(&want).await?,
    }
    let link = nl
        .link(VXLAN_DEVICE)
        .await?
        .ok_or_else(|| DeviceError::NoSuchUplink(VXLAN_DEVICE.into()))?;
    set_noarp(nl, link.index).await?;
    nl.set_link_up(link.index).await?;
    Ok(link.index)
}

/// Turn ARP off on `index` (`ip link set … arp off`).
async fn set_noarp(nl: &Netlink, index: u32) -> Result<(), NetlinkError> {
    let msg = LinkUnspec::new_with_index(index).arp(false).build();
    nl.handle.link().change(msg).execute().await.map_err(|e| {
        NetlinkError::from_rtnl(format!("turning ARP off on link {index} in {}", nl.netns), e)
    })
}
