//! Links: read (by name, index, prefix), create veth pairs with the peer born in another
//! namespace, set up/down and MTU, delete.

use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::conn::collect;
use super::error::deleted;
use super::{Netlink, NetlinkError, Netns};
use crate::ids::Mac;

/// One interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    /// The Ethernet address; `None` for devices without one (or not 6 bytes long).
    pub mac: Option<Mac>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// `IFLA_INFO_KIND` ("veth", "vxlan", …); `None` for physical devices and loopback.
    pub kind: Option<String>,
}

impl Link {
    pub(crate) fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            name: String::new(),
            index: msg.header.index,
            mac: None,
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            kind: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Address(a) => {
                    link.mac = <[u8; 6]>::try_from(a.as_slice()).ok().map(Mac)
                }
                LinkAttribute::LinkInfo(infos) => {
                    link.kind = infos.iter().find_map(|i| match i {
                        LinkInfo::Kind(k) => Some(k.to_string()),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        link
    }
}

/// A veth pair to create: `name` here, `peer` in `peer_netns` (here if `None`), both with `mtu`.
#[derive(Debug, Clone, Copy)]
pub struct Veth<'a> {
    pub name: &'a str,
    pub peer: &'a str,
    pub peer_netns: Option<&'a Netns>,
    pub mtu: u32,
}

impl Netlink {
    /// The link `name`, or `None` if there is none.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        Ok(self
            .link_message(name)
            .await?
            .as_ref()
            .map(Link::from_message))
    }

    /// The link with ifindex `index`, or `None` if there is none.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, NetlinkError> {
        let req = self.handle.link().get().match_index(index).execute();
        let msg = first(req, || format!("reading link {index} in {}", self.netns)).await?;
        Ok(msg.as_ref().map(Link::from_message))
    }

    /// The kernel's message for link `name` (all its attributes), or `None`.
    pub(crate) async fn link_message(
        &self,
        name: &str,
    ) -> Result<Option<LinkMessage>, NetlinkError> {
        let req = self.handle.link().get().match_name(name).execute();
        first(req, || format!("reading link {name} in {}", self.netns)).await
    }

    /// Every link of the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let msgs = collect(self.handle.link().get().execute(), || {
            format!("listing links in {}", self.netns)
        })
        .await?;
        Ok(msgs.iter().map(Link::from_message).collect())
    }

    /// Every link whose name starts with `prefix`.
    pub async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<Link>, NetlinkError> {
        let mut links = self.links().await?;
        links.retain(|l| l.name.starts_with(prefix));
        Ok(links)
    }

    /// Delete the link `name` (a veth takes its peer along); `Ok(false)` if there was none.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let msg = LinkUnspec::new_with_name(name).build();
        let r = self.handle.link().del_with_message(msg).execute().await;
        deleted(r.map_err(|e| {
            NetlinkError::from_rtnl(format!("deleting link {name} in {}", self.netns), e)
        }))
    }

    /// Set the link `index` administratively up.
    pub async fn set_link_up(&self, index: u32) -> Result<(), NetlinkError> {
        self.change_link(LinkUnspec::new_with_index(index).up(), || {
            format!("setting link {index} up in {}", self.netns)
        })
        .await
    }

    /// Set the link `index` administratively down.
    pub async fn set_link_down(&self, index: u32) -> Result<(), NetlinkError> {
        self.change_link(LinkUnspec::new_with_index(index).down(), || {
            format!("setting link {index} down in {}", self.netns)
        })
        .await
    }

    /// Set the MTU of the link `index`.
    pub async fn set_link_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.change_link(LinkUnspec::new_with_index(index).mtu(mtu), || {
            format!("setting the MTU of link {index} to {mtu} in {}", self.netns)
        })
        .await
    }

    async fn change_link(
        &self,
        msg: LinkMessageBuilder<LinkUnspec>,
        op: impl FnOnce() -> String,
    ) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .change(msg.build())
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rtnl(op(), e))
    }

    /// Create a veth pair; the peer is created directly in its namespace (never visible here),
    /// as `ip link add NAME mtu M type veth peer name PEER mtu M netns NS` does. Both ends stay
    /// down. Fails with [`NetlinkError::is_exists`] if either name is taken.
    pub async fn add_veth(&self, veth: &Veth<'_>) -> Result<(), NetlinkError> {
        let mut peer = LinkUnspec::new_with_name(veth.peer).mtu(veth.mtu);
        if let Some(ns) = veth.peer_netns {
            peer = peer.setns_by_fd(ns.file().as_raw_fd());
        }
        let msg = LinkVeth::new(veth.name, veth.peer)
            .mtu(veth.mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        let op = || {
            format!(
                "creating veth {} in {} (peer {} in {})",
                veth.name,
                self.netns,
                veth.peer,
                veth.peer_netns.map_or_else(
                    || "the same namespace".into(),
                    |n| n.path().display().to_string()
                )
            )
        };
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rtnl(op(), e))
    }
}

/// The answer to a request for one link; "no such device" is `None`.
async fn first(
    req: impl futures_util::Stream<Item = Result<LinkMessage, rtnetlink::Error>>,
    op: impl FnOnce() -> String,
) -> Result<Option<LinkMessage>, NetlinkError> {
    let mut req = std::pin::pin!(req);
    match req.try_next().await {
        Ok(m) => Ok(m),
        Err(e) => {
            let e = NetlinkError::from_rtnl(op(), e);
            if e.is_not_found() {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}
