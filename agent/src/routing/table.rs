//! The kernel routes the reconciler keeps, behind a small trait so the reconcile logic is
//! tested without a kernel; the netlink implementation is the real one.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

/// Routing protocol number that marks weft's routes (`ip route … proto 201`), so a
/// restarted agent finds and replaces exactly its own and never touches anyone else's.
pub const RTPROT_WEFT: u8 = 201;

/// One route to another node's pod CIDR in the node's main table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelRoute {
    pub dst: Ipv4Network,
    /// Next hop (native mode: the node), or none for a device route (VXLAN device).
    pub via: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: u32,
    /// Preferred source address (the node's own), so pods see the node's InternalIP.
    pub src: Option<Ipv4Addr>,
}

/// The main routing table as far as weft's routes go.
#[allow(async_fn_in_trait)]
pub trait RouteTable {
    type Error: std::error::Error + Send + Sync + 'static;
    /// weft's routes (protocol [`RTPROT_WEFT`]) now in the table.
    async fn list(&mut self) -> Result<Vec<KernelRoute>, Self::Error>;
    /// Add or replace the route to `route.dst`.
    async fn replace(&mut self, route: &KernelRoute) -> Result<(), Self::Error>;
    /// Delete the route to `route.dst`; absent is fine.
    async fn delete(&mut self, route: &KernelRoute) -> Result<(), Self::Error>;
}
