//! Address allocation from the node's pod CIDR with a persistent, locked store.
//!
//! [`pool`] is the pure allocation logic; [`store`] keeps a pool in one JSON file, written
//! atomically under an exclusive `flock`, so several processes (or a crashed one) cannot corrupt
//! it. Nothing here knows about Kubernetes: owners are opaque (container ID, ifname) pairs.

pub mod pool;
pub mod store;

pub use pool::{capacity, Pool};
pub use store::Store;

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

/// `cidr` with its host bits cleared (`10.200.1.7/24` -> `10.200.1.0/24`): the one spelling of a
/// pod CIDR that the store, the API and the CNI result use.
pub fn canonical(cidr: Ipv4Network) -> Ipv4Network {
    Ipv4Network::new(cidr.network(), cidr.prefix()).expect("a network's own prefix is valid")
}

/// Smallest pod CIDR accepted: a /30 leaves one address after network, gateway and broadcast.
pub const MAX_PREFIX_LEN: u8 = 30;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("pod CIDR {cidr} is too small: need a prefix of /{MAX_PREFIX_LEN} or shorter")]
    CidrTooSmall { cidr: Ipv4Network },
    #[error("pod CIDR {asked} differs from {held}, which still has {count} allocation(s)")]
    CidrMismatch {
        asked: Ipv4Network,
        held: Ipv4Network,
        count: usize,
    },
    #[error("pod CIDR {cidr} is exhausted ({capacity} addresses in use)")]
    Exhausted { cidr: Ipv4Network, capacity: usize },
    #[error("IPAM store {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("IPAM store {path} is corrupt: {source}")]
    Corrupt {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error("IPAM store {path} has format version {found}, this build reads {expected}")]
    Version {
        path: std::path::PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("address {ip} is outside the store's pod CIDR {cidr}")]
    Foreign { ip: Ipv4Addr, cidr: Ipv4Network },
}
