//! [`RouteTable`] over rtnetlink: weft's routes in the main table, tagged `proto 201`.

use std::sync::Arc;

use crate::netlink::{Netlink, NetlinkError, Route, MAIN_TABLE};

use super::table::{KernelRoute, RouteTable, RTPROT_WEFT};

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
