//! The Kubernetes side: the API client and trimmed reflectors for Nodes, Services,
//! EndpointSlices and this node's Pods, plus pure views of those objects. Nothing here
//! touches the kernel: reconcilers read the stores and own the kernel state.

mod client;
pub mod node;
pub mod pod;
mod reflect;

pub use client::{client, ClientError};
pub use reflect::{Dirty, Reflectors, Watched};
