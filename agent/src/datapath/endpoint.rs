//! Local pods in `ENDPOINTS4`: the typed view the agent uses and its ABI conversion.

use std::net::Ipv4Addr;

use aya::maps::MapError;
use aya::sys::SyscallError;
use dataplane_common::maps::ENDPOINTS4;
use dataplane_common::{Endpoint4Key, Endpoint4Value};
use tracing::{debug, info};

use super::{Datapath, DatapathError};

/// One local pod as the datapath sees it (the `ENDPOINTS4` value without the ABI flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointEntry {
    /// ifindex of the host-side veth in the node's network namespace.
    pub ifindex: u32,
    /// MAC of the host-side veth.
    pub host_mac: [u8; 6],
    /// MAC of the pod's eth0.
    pub pod_mac: [u8; 6],
}

impl EndpointEntry {
    /// Reject entries the datapath could not deliver to.
    fn validate(&self, ip: Ipv4Addr) -> Result<(), DatapathError> {
        let bad = |reason| Err(DatapathError::InvalidEndpoint { ip, reason });
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return bad("not a unicast address");
        }
        if self.ifindex == 0 {
            return bad("ifindex 0");
        }
        for mac in [self.host_mac, self.pod_mac] {
            if mac == [0; 6] || mac[0] & 1 == 1 {
                return bad("MAC must be unicast and non-zero");
            }
        }
        Ok(())
    }
}

impl From<&EndpointEntry> for Endpoint4Value {
    fn from(e: &EndpointEntry) -> Self {
        Self {
            ifindex: e.ifindex,
            host_mac: e.host_mac,
            pod_mac: e.pod_mac,
            flags: 0,
        }
    }
}

impl From<&Endpoint4Value> for EndpointEntry {
    fn from(v: &Endpoint4Value) -> Self {
        Self {
            ifindex: v.ifindex,
            host_mac: v.host_mac,
            pod_mac: v.pod_mac,
        }
    }
}

fn map_err(source: MapError) -> DatapathError {
    DatapathError::Map {
        name: ENDPOINTS4,
        source,
    }
}

impl Datapath {
    /// Insert or replace the endpoint for `ip` (one atomic map update).
    pub fn upsert_endpoint(
        &mut self,
        ip: Ipv4Addr,
        ep: &EndpointEntry,
    ) -> Result<(), DatapathError> {
        ep.validate(ip)?;
        self.endpoints
            .insert(Endpoint4Key::new(ip.octets()), Endpoint4Value::from(ep), 0)
            .map_err(map_err)?;
        info!(%ip, ifindex = ep.ifindex, "endpoint upserted");
        Ok(())
    }

    /// Remove the endpoint for `ip`; Ok if there is none.
    pub fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), DatapathError> {
        match self.endpoints.remove(&Endpoint4Key::new(ip.octets())) {
            Ok(()) => {
                info!(%ip, "endpoint removed");
                Ok(())
            }
            Err(MapError::SyscallError(SyscallError { io_error, .. }))
                if io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                debug!(%ip, "endpoint to remove was not present");
                Ok(())
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Every endpoint in the map, sorted by address.
    pub fn endpoints(&self) -> Result<Vec<(Ipv4Addr, EndpointEntry)>, DatapathError> {
        let mut out = Vec::new();
        for item in self.endpoints.iter() {
            let (k, v) = item.map_err(map_err)?;
            out.push((Ipv4Addr::from(k.addr_be), EndpointEntry::from(&v)));
        }
        out.sort_by_key(|(ip, _)| *ip);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: EndpointEntry = EndpointEntry {
        ifindex: 7,
        host_mac: [2, 0, 0, 0, 0, 1],
        pod_mac: [2, 0, 0, 0, 0, 2],
    };

    #[test]
    fn entry_round_trips_through_the_abi_value() {
        let v = Endpoint4Value::from(&EP);
        assert_eq!(v.flags, 0);
        assert_eq!(EndpointEntry::from(&v), EP);
    }

    #[test]
    fn undeliverable_entries_are_rejected() {
        let ip = Ipv4Addr::new(10, 200, 0, 5);
        assert!(EP.validate(ip).is_ok());
        assert!(EndpointEntry { ifindex: 0, ..EP }.validate(ip).is_err());
        assert!(EndpointEntry {
            pod_mac: [0; 6],
            ..EP
        }
        .validate(ip)
        .is_err());
        assert!(EndpointEntry {
            host_mac: [1, 0, 0x5e, 0, 0, 1],
            ..EP
        }
        .validate(ip)
        .is_err());
        assert!(EP.validate(Ipv4Addr::new(224, 0, 0, 1)).is_err());
        assert!(EP.validate(Ipv4Addr::UNSPECIFIED).is_err());
    }
}
