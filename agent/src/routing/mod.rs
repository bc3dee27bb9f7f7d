//! Routes to other nodes' pod CIDRs: the pure desired state from the watched Nodes
//! ([`desired`]), and the reconciler that owns `NODE_ROUTES4` and the kernel routes
//! ([`reconcile`]).

pub mod desired;
pub mod kernel;
pub mod overlay;
pub mod reconcile;
pub mod table;

pub use desired::{desired, Peer, Problem};
pub use reconcile::{Reconciler, RoutingError, Uplink};
pub use table::{KernelRoute, RouteTable};
