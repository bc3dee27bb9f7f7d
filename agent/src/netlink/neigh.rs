//! Neighbour entries: permanent IPv4 ARP entries (`ip neigh`) and forwarding-database entries
//! of bridges and VXLAN devices (`bridge fdb`).

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::conn::collect;
use super::error::deleted;
use super::{Netlink, NetlinkError};
use crate::ids::Mac;

/// An IPv4 neighbour (ARP) entry: `ip` on link `index` is at `mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub index: u32,
    pub ip: Ipv4Addr,
    /// `None` for entries without a link-layer address (incomplete, failed).
    pub mac: Option<Mac>,
    pub permanent: bool,
}

/// A forwarding-database entry of a VXLAN device (or bridge port) `index`: frames to `mac` go
/// to the remote tunnel endpoint `dst` (`bridge fdb … dev DEV dst DST self permanent`). The
/// all-zero MAC is the default entry: unknown and broadcast destinations, flooded to every
/// `dst` appended for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub index: u32,
    pub mac: Mac,
    pub dst: Option<Ipv4Addr>,
    pub permanent: bool,
}

impl FdbEntry {
    /// A permanent entry of the device itself (`self permanent`).
    pub fn new(index: u32, mac: Mac, dst: Option<Ipv4Addr>) -> Self {
        Self {
            index,
            mac,
            dst,
            permanent: true,
        }
    }

    fn message(&self) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = self.index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(self.mac.0.to_vec()));
        if let Some(dst) = self.dst {
            msg.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
        }
        msg
    }

    fn describe(&self) -> String {
        let dst = self.dst.map(|d| format!(" dst {d}")).unwrap_or_default();
        format!("fdb entry {} dev {}{dst}", self.mac, self.index)
    }
}

fn mac_of(msg: &NeighbourMessage) -> Option<Mac> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(a) => <[u8; 6]>::try_from(a.as_slice()).ok().map(Mac),
        _ => None,
    })
}

/// The IPv4 destination of an entry. In an FDB (`AF_BRIDGE`) dump the kernel sends it as raw
/// bytes, which netlink-packet-route cannot type without the family of the address.
fn ipv4_dst_of(msg: &NeighbourMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

impl Netlink {
    /// Set a permanent ARP entry `ip` -> `mac` on link `index`, replacing any entry for `ip`
    /// there (`ip neigh replace IP lladdr MAC dev DEV nud permanent`).
    pub async fn replace_neighbour(
        &self,
        index: u32,
        ip: Ipv4Addr,
        mac: Mac,
    ) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .link_layer_address(&mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetlinkError::from_rtnl(
                    format!(
                        "setting neighbour {ip} lladdr {mac} on link {index} in {}",
                        self.netns
                    ),
                    e,
                )
            })
    }

    /// Delete the ARP entry of `ip` on link `index`; `Ok(false)` if there was none.
    pub async fn delete_neighbour(&self, index: u32, ip: Ipv4Addr) -> Result<bool, NetlinkError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        self.delete_neighbour_message(msg, || {
            format!("deleting neighbour {ip} on link {index} in {}", self.netns)
        })
        .await
    }

    /// The IPv4 ARP entries, of link `index` only if given.
    pub async fn neighbours(&self, index: Option<u32>) -> Result<Vec<Neighbour>, NetlinkError> {
        let msgs = self
            .neighbour_dump(AddressFamily::Inet, "neighbours")
            .await?;
        Ok(msgs
            .iter()
            .filter(|m| index.is_none_or(|i| m.header.ifindex == i))
            .filter_map(|m| {
                Some(Neighbour {
                    index: m.header.ifindex,
                    ip: ipv4_dst_of(m)?,
                    mac: mac_of(m),
                    permanent: m.header.state == NeighbourState::Permanent,
                })
            })
            .collect())
    }

    /// Add `entry`, replacing the entry for its MAC (`bridge fdb replace`). For a unicast MAC
    /// this points it at one remote endpoint.
    pub async fn replace_fdb(&self, entry: &FdbEntry) -> Result<(), NetlinkError> {
        let op = || format!("replacing {} in {}", entry.describe(), self.netns);
        self.ack(
            RouteNetlinkMessage::NewNeighbour(entry.message()),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            op,
        )
        .await
    }

    /// Add `entry` next to existing ones for the same MAC (`bridge fdb append`): how the
    /// all-zero MAC gets one entry per remote endpoint to flood to. Appending an entry that is
    /// there already changes nothing.
    pub async fn append_fdb(&self, entry: &FdbEntry) -> Result<(), NetlinkError> {
        let op = || format!("appending {} in {}", entry.describe(), self.netns);
        self.ack(
            RouteNetlinkMessage::NewNeighbour(entry.message()),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
            op,
        )
        .await
    }

    /// Delete `entry` (MAC and, if given, `dst`). `Ok(false)` if the device has no entry for
    /// the MAC at all; the kernel also answers success for a `dst` the MAC does not have, so
    /// list with [`Netlink::fdb`] where that difference matters.
    pub async fn delete_fdb(&self, entry: &FdbEntry) -> Result<bool, NetlinkError> {
        self.delete_neighbour_message(entry.message(), || {
            format!("deleting {} in {}", entry.describe(), self.netns)
        })
        .await
    }

    /// The forwarding-database entries of device `index` with an IPv4 remote or none.
    pub async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>, NetlinkError> {
        let msgs = self
            .neighbour_dump(AddressFamily::Bridge, "fdb entries")
            .await?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == index)
            .filter_map(|m| {
                Some(FdbEntry {
                    index,
                    mac: mac_of(m)?,
                    dst: ipv4_dst_of(m),
                    permanent: m.header.state == NeighbourState::Permanent,
                })
            })
            .collect())
    }

    async fn neighbour_dump(
        &self,
        family: AddressFamily,
        what: &str,
    ) -> Result<Vec<NeighbourMessage>, NetlinkError> {
        let req = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        collect(req, || format!("listing {what} in {}", self.netns)).await
    }

    async fn delete_neighbour_message(
        &self,
        msg: NeighbourMessage,
        op: impl FnOnce() -> String,
    ) -> Result<bool, NetlinkError> {
        let r = self.handle.neighbours().del(msg).execute().await;
        deleted(r.map_err(|e| NetlinkError::from_rtnl(op(), e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdb_message_is_a_permanent_self_entry_with_its_remote() {
        let e = FdbEntry::new(7, Mac([0; 6]), Some(Ipv4Addr::new(192, 0, 2, 3)));
        let m = e.message();
        assert_eq!(m.header.family, AddressFamily::Bridge);
        assert_eq!(m.header.state, NeighbourState::Permanent);
        assert_eq!(m.header.flags, NeighbourFlags::Own);
        assert_eq!((mac_of(&m), ipv4_dst_of(&m)), (Some(Mac([0; 6])), e.dst));
    }
}
