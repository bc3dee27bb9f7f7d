//! IPv4 addresses on links: add, delete, list.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::AddressMessageBuilder;

use super::conn::collect;
use super::error::deleted;
use super::{Netlink, NetlinkError};

impl Netlink {
    /// Add `addr` (address and prefix length) to link `index`, as `ip addr add`; fails with
    /// [`NetlinkError::is_exists`] if it is there already.
    pub async fn add_address(&self, index: u32, addr: Ipv4Network) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(addr.ip()), addr.prefix())
            .execute()
            .await
            .map_err(|e| {
                NetlinkError::from_rtnl(
                    format!("adding address {addr} to link {index} in {}", self.netns),
                    e,
                )
            })
    }

    /// Delete `addr` from link `index`; `Ok(false)` if it was not there.
    pub async fn delete_address(
        &self,
        index: u32,
        addr: Ipv4Network,
    ) -> Result<bool, NetlinkError> {
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(addr.ip(), addr.prefix())
            .build();
        let r = self.handle.address().del(msg).execute().await;
        deleted(r.map_err(|e| {
            NetlinkError::from_rtnl(
                format!(
                    "deleting address {addr} from link {index} in {}",
                    self.netns
                ),
                e,
            )
        }))
    }

    /// The IPv4 addresses of link `index`.
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Network>, NetlinkError> {
        let req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let msgs = collect(req, || {
            format!("listing the addresses of link {index} in {}", self.netns)
        })
        .await?;
        Ok(msgs.iter().filter_map(ipv4_of).collect())
    }
}

/// The local IPv4 address of an address message (`IFA_LOCAL`, else `IFA_ADDRESS`).
fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Network> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    let pick = |want_local: bool| {
        msg.attributes.iter().find_map(|a| match (a, want_local) {
            (AddressAttribute::Local(IpAddr::V4(ip)), true)
            | (AddressAttribute::Address(IpAddr::V4(ip)), false) => Some(*ip),
            _ => None,
        })
    };
    let ip = pick(true).or_else(|| pick(false))?;
    Ipv4Network::new(ip, msg.header.prefix_len).ok()
}
