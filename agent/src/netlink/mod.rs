//! Kernel network state through rtnetlink: links (veth pairs, VXLAN devices), addresses,
//! routes, neighbour and FDB entries, and tc (`clsact` qdiscs, `bpf` filters). The only place
//! weft changes interfaces, routes and tc; no iproute2 process at run time.
//!
//! A [`Netlink`] is one connection bound to one network namespace for its whole life (see
//! [`netns`] for how a socket gets into another namespace without moving any working thread).
//! Its methods are `async`; the agent's tokio code awaits them directly, synchronous callers
//! (the CNI plugin, the agent's owner thread) go through [`Blocking`], a current-thread runtime.
//!
//! ```no_run
//! # use weft::netlink::*;
//! # fn f(pod_ns: &Netns) -> Result<(), NetlinkError> {
//! let k = Blocking::new()?;
//! let (node, pod) = (k.connect(None)?, k.connect(Some(pod_ns))?);
//! k.run(async {
//!     node.add_veth(&Veth { name: "weft0", peer: "eth0", peer_netns: Some(pod_ns), mtu: 1500 }).await?;
//!     let eth0 = pod.link("eth0").await?.expect("just created");
//!     pod.set_link_up(eth0.index).await
//! })
//! # }
//! ```

mod addr;
mod blocking;
mod conn;
mod error;
mod link;
mod neigh;
pub mod netns;
mod route;
mod tc;
mod vxlan;

pub use blocking::{Blocking, SyncNetlink};
pub use conn::Netlink;
pub use error::NetlinkError;
pub use link::{Link, Veth};
pub use neigh::{FdbEntry, Neighbour};
pub use netns::Netns;
pub use route::{Route, Scope, MAIN_TABLE, PROTO_BOOT, PROTO_KERNEL};
pub use tc::{BpfFilter, FilterPlace, TcHook};
pub use vxlan::{Vxlan, VxlanMode, DEFAULT_VXLAN_PORT};

#[cfg(test)]
mod tests {
    use super::*;

    /// A routing reconciler shares one connection between tokio tasks and spawns its requests:
    /// the connection must be `Send + Sync` and its futures `Send` (checked at compile time).
    #[test]
    fn connections_and_their_futures_can_cross_tasks() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<Netlink>();
        let _ =
            |nl: &'static Netlink, r: &'static Route, v: &'static Vxlan, f: &'static FdbEntry| {
                send(&nl.routes(MAIN_TABLE));
                send(&nl.replace_route(r));
                send(&nl.delete_route(r));
                send(&nl.add_vxlan(v));
                send(&nl.vxlan("weft_vxlan"));
                send(&nl.append_fdb(f));
                send(&nl.fdb(1));
                send(&nl.links_with_prefix("weft"));
                send(&Netlink::connect(None));
            };
    }
}
