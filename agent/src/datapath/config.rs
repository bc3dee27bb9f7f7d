//! `DP_CONFIG`: the node-wide datapath settings the agent writes once at start.

use aya::maps::{Array, MapData};
use dataplane_common::config::{DP_F_BPF_HOST_ROUTING, DP_F_HANDOFF, DP_F_KERNEL_NEW_FLOWS, DP_F_LOG};
use dataplane_common::maps::DP_CONFIG;
use dataplane_common::DpConfig;

use super::{Datapath, DatapathError};

/// Whether a switch between kube-proxy and weft is under way, and which way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceHandoff {
    /// No switch: weft translates every Service connection (or none, without kube-proxy
    /// replacement).
    #[default]
    None,
    /// weft takes new connections; the ones kube-proxy translated stay with the kernel's
    /// conntrack until they end (`DP_F_HANDOFF`).
    Takeover,
    /// kube-proxy takes new connections; the ones weft translated keep weft's translation until
    /// they end (`DP_F_HANDOFF | DP_F_KERNEL_NEW_FLOWS`).
    Release,
}

impl ServiceHandoff {
    /// The mode as `weft status` and its JSON name it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Takeover => "takeover",
            Self::Release => "release",
        }
    }
}

/// How this node forwards; the typed form of [`DpConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathSettings {
    /// Forward in eBPF (redirect to pods and nodes). Off: hand everything to the node's stack
    /// (what a node running kube-proxy needs, so netfilter sees every packet).
    pub bpf_host_routing: bool,
    /// VXLAN device (collect-metadata) and VNI, in VXLAN mode.
    pub vxlan: Option<(u32, u32)>,
    /// aya-log debug lines from the programs.
    pub log: bool,
    /// The uplink's ifindex, where NodePort replies leave (None: not known, e.g. no uplink).
    pub uplink: Option<u32>,
    /// A switch between kube-proxy and weft under way.
    pub handoff: ServiceHandoff,
}

impl Default for DatapathSettings {
    fn default() -> Self {
        Self {
            bpf_host_routing: true,
            vxlan: None,
            log: false,
            uplink: None,
            handoff: ServiceHandoff::None,
        }
    }
}

impl From<&DatapathSettings> for DpConfig {
    fn from(s: &DatapathSettings) -> Self {
        let mut flags = 0;
        if s.bpf_host_routing {
            flags |= DP_F_BPF_HOST_ROUTING;
        }
        if s.log {
            flags |= DP_F_LOG;
        }
        flags |= match s.handoff {
            ServiceHandoff::None => 0,
            ServiceHandoff::Takeover => DP_F_HANDOFF,
            ServiceHandoff::Release => DP_F_HANDOFF | DP_F_KERNEL_NEW_FLOWS,
        };
        let (vxlan_ifindex, vni) = s.vxlan.unwrap_or((0, 0));
        DpConfig {
            flags,
            vxlan_ifindex,
            vni,
            uplink_ifindex: s.uplink.unwrap_or(0),
        }
    }
}

impl From<&DpConfig> for DatapathSettings {
    fn from(c: &DpConfig) -> Self {
        Self {
            bpf_host_routing: c.bpf_host_routing(),
            vxlan: (c.vxlan_ifindex != 0).then_some((c.vxlan_ifindex, c.vni)),
            log: c.log(),
            uplink: (c.uplink_ifindex != 0).then_some(c.uplink_ifindex),
            handoff: match (c.handoff(), c.kernel_new_flows()) {
                (false, _) => ServiceHandoff::None,
                (true, false) => ServiceHandoff::Takeover,
                (true, true) => ServiceHandoff::Release,
            },
        }
    }
}

/// Writes `settings`, with `DP_F_CT4_MIGRATING` while a `CT4` layout migration runs.
pub(super) fn write(
    map: &mut Array<MapData, DpConfig>,
    settings: &DatapathSettings,
    migrating: bool,
) -> Result<(), DatapathError> {
    let mut value = DpConfig::from(settings);
    if migrating {
        value.flags |= dataplane_common::config::DP_F_CT4_MIGRATING;
    }
    map.set(0, value, 0)
        .map_err(|source| DatapathError::Map {
            name: DP_CONFIG,
            source,
        })
}

impl Datapath {
    /// Replace the node-wide settings (one atomic map update; packets see the old or the new).
    pub fn set_settings(&mut self, settings: &DatapathSettings) -> Result<(), DatapathError> {
        write(&mut self.config, settings, !self.migrations.is_empty())
    }

    /// The settings the programs currently read.
    pub fn settings(&self) -> Result<DatapathSettings, DatapathError> {
        let c = self.config.get(&0, 0).map_err(|source| DatapathError::Map {
            name: DP_CONFIG,
            source,
        })?;
        Ok(DatapathSettings::from(&c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_abi() {
        for s in [
            DatapathSettings::default(),
            DatapathSettings {
                bpf_host_routing: false,
                vxlan: Some((7, 1)),
                log: true,
                uplink: Some(3),
                handoff: ServiceHandoff::Takeover,
            },
            DatapathSettings {
                bpf_host_routing: false,
                handoff: ServiceHandoff::Release,
                ..DatapathSettings::default()
            },
        ] {
            assert_eq!(DatapathSettings::from(&DpConfig::from(&s)), s);
        }
        assert!(!DatapathSettings::from(&DpConfig::default()).bpf_host_routing);
    }
}
