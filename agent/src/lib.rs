//! weft: the node agent, the CNI plugin and the CLI, as a library the `weft` binary and the
//! component tests share.

pub mod agent;
pub mod api;
pub mod cli;
pub mod cni;
pub mod datapath;
pub mod egress;
pub mod ids;
#[cfg(test)]
mod golden;
pub mod ipam;
pub mod k8s;
pub mod lb;
pub mod metrics;
pub mod netlink;
pub mod policy;
pub mod routing;
