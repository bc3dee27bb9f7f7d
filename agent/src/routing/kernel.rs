//! [`RouteTable`] over rtnetlink: weft's routes in the main table, tagged `proto 201`.

use std::sync::Arc;

use ipnetwork::Ipv4Network;

use crate::netlink::{Netlink, NetlinkError, Route, MAIN_TABLE};

use super::table::{KernelRoute, RouteTable, RTPROT_WEFT};

/// Refuse the addresses of this node's pod CIDR that no pod holds (a pod just deleted):
/// `prohibit <cidr> proto 201`, under the pods' own /32s. The sender learns at once (ICMP
/// administratively prohibited, a hard error, so a connected UDP socket to a removed backend
/// gets `EHOSTUNREACH` and reconnects to a live one through the socket-level LB) instead of
/// sending into the default route. [`NetlinkTable::list`] sees only routes with a device, so
/// the reconciler never takes this one away. Its metric ([`REFUSE_METRIC`]) puts it behind a
/// route another owner has for the same prefix (metric 0 unless set: a bridge CNI's
/// `dev cni0` route on a node moving to weft), which it would otherwise replace.
pub async fn refuse_unused_pod_addresses(nl: &Netlink, cidr: Ipv4Network) -> Result<Route, NetlinkError> {
    let route = Route::prohibit(cidr).protocol(RTPROT_WEFT).metric(REFUSE_METRIC);
    nl.replace_route(&route).await?;
    Ok(route)
}

/// Metric of the `prohibit` route over this node's pod CIDR.
pub const REFUSE_METRIC: u32 = 4096;

/// The node's main routing table through one netlink connection.
pub struct NetlinkTable {
    nl: Arc<Netlink>,
}

impl NetlinkTable {
    pub fn new(nl: Arc<Netlink>) -> Self {
        Self { nl }
    }
}

fn to_route(r: &KernelRoute) -> Route {
    let route = match r.via {
        Some(gw) => Route::via(r.dst, gw, r.oif),
        None => Route::device(r.dst, r.oif),
    };
    let route = match r.src {
        Some(src) => route.src(src),
        None => route,
    };
    route.protocol(RTPROT_WEFT)
}

impl RouteTable for NetlinkTable {
    type Error = NetlinkError;

    async fn list(&mut self) -> Result<Vec<KernelRoute>, NetlinkError> {
        Ok(self
            .nl
            .routes(MAIN_TABLE)
            .await?
            .into_iter()
            .filter(|r| r.protocol == RTPROT_WEFT)
            .filter_map(|r| {
                Some(KernelRoute {
                    dst: r.dst,
                    via: r.gateway,
                    oif: r.oif?,
                    src: r.src,
                })
            })
            .collect())
    }

    async fn replace(&mut self, r: &KernelRoute) -> Result<(), NetlinkError> {
        self.nl.replace_route(&to_route(r)).await
    }

    async fn delete(&mut self, r: &KernelRoute) -> Result<(), NetlinkError> {
        self.nl.delete_route(&to_route(r)).await.map(|_| ())
    }
}
