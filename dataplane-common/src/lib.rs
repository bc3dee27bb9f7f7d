//! The kernel/user ABI: `#[repr(C)]` map keys and values, map names and constants shared by
//! the eBPF programs and the agent.
//!
//! This crate is the only definition of what crosses the kernel/user boundary. Every struct is
//! `#[repr(C)]` with explicit padding fields and a compile-time size assertion next to it, so a
//! layout change cannot slip through unnoticed. A layout change of a pinned map gets a new map
//! name (`_V2`) and a migration, never a silent reinterpretation of pinned data.
#![no_std]

pub mod config;
pub mod ct;
pub mod drop;
pub mod endpoint;
pub mod lb;
pub mod maps;
pub mod node;
pub mod policy;
pub mod stats;

pub use config::DpConfig;
pub use ct::{Ct4Key, Ct4Value};
pub use drop::DropReason;
pub use stats::LbCounter;
pub use endpoint::{Endpoint4Key, Endpoint4Value};
pub use lb::{
    Lb4Affinity, Lb4AffinityKey, Lb4Backend, Lb4Key, Lb4RevNat, Lb4Service, Lb4Slot, Lb4SlotKey,
    Lb4SockFwd, Lb4SockKey, Lb4SockRevNat,
};
pub use node::NodeRoute4Value;
pub use policy::{IpCache4Value, Policy4Data, Policy4Value, PolicyEp4Value};
