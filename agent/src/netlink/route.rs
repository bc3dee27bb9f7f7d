//! IPv4 unicast routes: add, replace, delete, list one table.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::RouteMessageBuilder;

use super::conn::collect;
use super::error::deleted;
use super::{Netlink, NetlinkError};

/// The main routing table (`ip route` without `table`).
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;
/// `proto boot`: what `ip route add` tags routes with when not told otherwise.
pub const PROTO_BOOT: u8 = 3;
/// `proto kernel`: routes the kernel derives from addresses.
pub const PROTO_KERNEL: u8 = 2;

/// How far a route's destination is (`ip route … scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Reached through a gateway (the default).
    Universe,
    /// Directly attached to the device.
    Link,
    /// This host.
    Host,
    Other(u8),
}

/// One IPv4 unicast route.
///
/// Examples, in `ip route` words:
/// - `10.200.2.0/24 via 192.0.2.12 dev eth0`: [`Route::via`]
/// - `10.200.1.7/32 dev weftX scope link`: [`Route::device`]
/// - `default via 169.254.1.1 dev eth0 onlink`: `Route::via(..).onlink()`
/// - `10.200.2.0/24 dev weft_vxlan src 10.200.1.1 onlink`: `Route::device(..).src(..).onlink()`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Network,
    pub gateway: Option<Ipv4Addr>,
    /// Output device (ifindex).
    pub oif: Option<u32>,
    /// Preferred source address (`src`).
    pub src: Option<Ipv4Addr>,
    pub scope: Scope,
    /// The gateway is on the link even though no address of the device covers it.
    pub onlink: bool,
    pub table: u32,
    /// Who owns the route (`proto`): [`PROTO_BOOT`] unless set; a routing reconciler tags its
    /// routes with a number of its own so it can list exactly them.
    pub protocol: u8,
    /// `metric`; `None` is the kernel's default (0).
    pub metric: Option<u32>,
    /// A `prohibit` route: no next hop; the kernel answers a forwarded packet with ICMP
    /// "administratively prohibited", which a sender's connected socket reports as
    /// `EHOSTUNREACH` (a local sender gets `EACCES`). Host unreachable (an `unreachable` route)
    /// is a soft error that connected UDP sockets do not report.
    pub prohibit: bool,
}

impl Route {
    /// `dst via gateway dev oif` in the main table.
    pub fn via(dst: Ipv4Network, gateway: Ipv4Addr, oif: u32) -> Self {
        Self {
            dst,
            gateway: Some(gateway),
            oif: Some(oif),
            src: None,
            scope: Scope::Universe,
            onlink: false,
            table: MAIN_TABLE,
            protocol: PROTO_BOOT,
            metric: None,
            prohibit: false,
        }
    }

    /// `prohibit dst` in the main table.
    pub fn prohibit(dst: Ipv4Network) -> Self {
        Self {
            gateway: None,
            oif: None,
            prohibit: true,
            ..Self::via(dst, Ipv4Addr::UNSPECIFIED, 0)
        }
    }

    /// `dst dev oif scope link` in the main table.
    pub fn device(dst: Ipv4Network, oif: u32) -> Self {
        Self {
            gateway: None,
            scope: Scope::Link,
            ..Self::via(dst, Ipv4Addr::UNSPECIFIED, oif)
        }
    }

    pub fn src(mut self, src: Ipv4Addr) -> Self {
        self.src = Some(src);
        self
    }

    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }

    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    pub fn metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    fn message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.dst.network(), self.dst.prefix())
            .table_id(self.table)
            .protocol(RouteProtocol::from(self.protocol))
            .scope(match self.scope {
                Scope::Universe => RouteScope::Universe,
                Scope::Link => RouteScope::Link,
                Scope::Host => RouteScope::Host,
                Scope::Other(n) => RouteScope::from(n),
            })
            .kind(if self.prohibit { RouteType::Prohibit } else { RouteType::Unicast });
        if let Some(gw) = self.gateway {
            b = b.gateway(gw);
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if let Some(src) = self.src {
            b = b.pref_source(src);
        }
        if let Some(m) = self.metric {
            b = b.priority(m);
        }
        if self.onlink {
            b = b.onlink();
        }
        b.build()
    }

    /// The route a dump message describes; `None` for what is not an IPv4 unicast or
    /// prohibit route.
    fn from_message(msg: &RouteMessage) -> Option<Self> {
        let h = &msg.header;
        if h.address_family != AddressFamily::Inet
            || !matches!(h.kind, RouteType::Unicast | RouteType::Prohibit)
        {
            return None;
        }
        let mut r = Route {
            dst: Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).expect("0 is a valid prefix"),
            gateway: None,
            oif: None,
            src: None,
            scope: match h.scope {
                RouteScope::Universe => Scope::Universe,
                RouteScope::Link => Scope::Link,
                RouteScope::Host => Scope::Host,
                other => Scope::Other(other.into()),
            },
            onlink: h.flags.contains(RouteFlags::Onlink),
            table: u32::from(h.table),
            protocol: h.protocol.into(),
            metric: None,
            prohibit: h.kind == RouteType::Prohibit,
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                    r.dst = Ipv4Network::new(*ip, h.destination_prefix_length).ok()?
                }
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => r.gateway = Some(*ip),
                RouteAttribute::Oif(i) => r.oif = Some(*i),
                RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => r.src = Some(*ip),
                RouteAttribute::Table(t) => r.table = *t,
                RouteAttribute::Priority(p) => r.metric = Some(*p),
                _ => {}
            }
        }
        Some(r)
    }
}

impl std::fmt::Display for Route {
    /// In `ip route` words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prohibit {
            write!(f, "prohibit ")?;
        }
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev {oif}")?;
        }
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        if self.table != MAIN_TABLE {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

impl Netlink {
    /// Add `route`, as `ip route add`; fails with [`NetlinkError::is_exists`] if a route to
    /// the same destination (same table, metric) exists.
    pub async fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.write_route(route, NLM_F_EXCL, "adding").await
    }

    /// Add `route` or replace the one to the same destination (same table, metric), as
    /// `ip route replace`.
    pub async fn replace_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.write_route(route, NLM_F_REPLACE, "replacing").await
    }

    async fn write_route(&self, route: &Route, mode: u16, verb: &str) -> Result<(), NetlinkError> {
        let op = || format!("{verb} route {route} in {}", self.netns);
        if route.gateway.is_none() && route.oif.is_none() && !route.prohibit {
            return Err(NetlinkError::Invalid {
                op: op(),
                detail: "a route needs a gateway or a device".into(),
            });
        }
        self.ack(
            RouteNetlinkMessage::NewRoute(route.message()),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | mode,
            op,
        )
        .await
    }

    /// Delete the route matching `route` (destination, table, and gateway, device and protocol
    /// where given); `Ok(false)` if there was none.
    pub async fn delete_route(&self, route: &Route) -> Result<bool, NetlinkError> {
        let mut msg = route.message();
        // Scope "nowhere" on delete matches a route of any scope, as `ip route del` does.
        msg.header.scope = RouteScope::NoWhere;
        let r = self.handle.route().del(msg).execute().await;
        deleted(r.map_err(|e| {
            NetlinkError::from_rtnl(format!("deleting route {route} in {}", self.netns), e)
        }))
    }

    /// The IPv4 unicast and prohibit routes of `table` ([`MAIN_TABLE`] for `ip route`).
    pub async fn routes(&self, table: u32) -> Result<Vec<Route>, NetlinkError> {
        let req = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let msgs = collect(req, || format!("listing routes in {}", self.netns)).await?;
        Ok(msgs
            .iter()
            .filter_map(Route::from_message)
            .filter(|r| r.table == table)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn a_route_survives_its_message_round_trip() {
        let routes = [
            Route::via(net("10.200.2.0/24"), Ipv4Addr::new(192, 0, 2, 12), 3),
            Route::device(net("10.200.1.7/32"), 9),
            Route::prohibit(net("10.200.1.0/24")).protocol(201),
            Route::via(net("0.0.0.0/0"), Ipv4Addr::new(169, 254, 1, 1), 2).onlink(),
            Route::device(net("10.200.2.0/24"), 4)
                .src(Ipv4Addr::new(10, 200, 1, 1))
                .onlink()
                .protocol(87)
                .metric(10)
                .table(1000),
        ];
        for r in routes {
            assert_eq!(Route::from_message(&r.message()).as_ref(), Some(&r), "{r}");
        }
    }

    #[test]
    fn routes_print_in_ip_route_words() {
        let r = Route::via(net("0.0.0.0/0"), Ipv4Addr::new(169, 254, 1, 1), 2).onlink();
        assert_eq!(r.to_string(), "0.0.0.0/0 via 169.254.1.1 dev 2 onlink");
        let r = Route::device(net("10.0.0.0/8"), 4)
            .src(Ipv4Addr::new(10, 0, 0, 1))
            .table(7);
        assert_eq!(r.to_string(), "10.0.0.0/8 dev 4 src 10.0.0.1 table 7");
    }
}
