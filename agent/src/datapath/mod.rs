//! Loading, attaching and pinning the eBPF programs; typed access to their maps.
//!
//! FIRST VERSION: the API the CNI side codes against. Bodies are filled in next; until then
//! every operation returns [`DatapathError::NotImplemented`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Errors from the datapath: loading the object, pinning, attaching, map access.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("datapath operation {0} is not implemented yet")]
    NotImplemented(&'static str),
}

/// One local pod as the datapath sees it (the `ENDPOINTS4` value without the ABI padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointEntry {
    /// ifindex of the host-side veth in the node's network namespace.
    pub ifindex: u32,
    /// MAC of the host-side veth.
    pub host_mac: [u8; 6],
    /// MAC of the pod's eth0.
    pub pod_mac: [u8; 6],
}

/// The loaded eBPF object, its pinned maps and the tc links it owns.
pub struct Datapath {
    pin_dir: PathBuf,
}

impl Datapath {
    /// Load the embedded object; reuse maps already pinned under `pin_dir` (else create and pin
    /// them there); programs/links also pinned there so an agent restart keeps traffic.
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let _ = Self { pin_dir: pin_dir.to_path_buf() };
        Err(DatapathError::NotImplemented("open"))
    }

    /// Attach `from_pod` at tc ingress (TCX) of the host-side veth (idempotent). The link is
    /// pinned under `pin_dir` so it survives an agent restart.
    pub fn attach_from_pod(&mut self, _host_ifname: &str) -> Result<(), DatapathError> {
        Err(DatapathError::NotImplemented("attach_from_pod"))
    }

    /// Detach (Ok if not attached or the interface is gone); remove its pin.
    pub fn detach_from_pod(&mut self, _host_ifname: &str) -> Result<(), DatapathError> {
        Err(DatapathError::NotImplemented("detach_from_pod"))
    }

    pub fn upsert_endpoint(&mut self, _ip: Ipv4Addr, _ep: &EndpointEntry) -> Result<(), DatapathError> {
        Err(DatapathError::NotImplemented("upsert_endpoint"))
    }

    pub fn remove_endpoint(&mut self, _ip: Ipv4Addr) -> Result<(), DatapathError> {
        Err(DatapathError::NotImplemented("remove_endpoint"))
    }

    pub fn endpoints(&self) -> Result<Vec<(Ipv4Addr, EndpointEntry)>, DatapathError> {
        Err(DatapathError::NotImplemented("endpoints"))
    }

    /// Drop counters summed over CPUs, by stable reason name.
    pub fn drop_counters(&self) -> Result<Vec<(&'static str, u64)>, DatapathError> {
        Err(DatapathError::NotImplemented("drop_counters"))
    }

    /// Remove every pin under `pin_dir` (used by tests and `weft agent --cleanup`).
    pub fn unpin_all(_pin_dir: &Path) -> Result<(), DatapathError> {
        Err(DatapathError::NotImplemented("unpin_all"))
    }

    /// The bpffs directory holding this datapath's pins.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }
}
