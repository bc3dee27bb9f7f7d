//! Refuse to reuse a pinned map whose shape differs from what this build expects.
//!
//! aya reuses a pin found under the map's name without comparing its definition; a program
//! verified against a map of another layout would read garbage. Layout changes get a new map
//! name (`_V2`) instead, so a mismatch here means stale pins from an incompatible build.

use std::mem::size_of;
use std::path::Path;

use aya::maps::{MapInfo, MapType};
use dataplane_common::maps::{
    CT4, CT4_MAX_ENTRIES, DP_CONFIG, DROP_STATS, DROP_STATS_MAX_ENTRIES, ENDPOINTS4,
    ENDPOINTS4_MAX_ENTRIES, LB4_AFFINITY, LB4_AFFINITY_MAX_ENTRIES, LB4_BACKENDS,
    LB4_BACKENDS_MAX_ENTRIES, LB4_REVNAT, LB4_REVNAT_MAX_ENTRIES, LB4_SERVICES,
    LB4_SERVICES_MAX_ENTRIES, LB4_SLOTS, LB4_SLOTS_MAX_ENTRIES, LB4_SOCK_FWD, LB4_SOCK_FWD_MAX_ENTRIES, LB4_SOCK_REVNAT,
    LB4_SOCK_REVNAT_MAX_ENTRIES, LB4_STATS, LB4_STATS_MAX_ENTRIES, NODE_ROUTES4,
    NODE_ROUTES4_MAX_ENTRIES, IPCACHE4, IPCACHE4_MAX_ENTRIES, POLICY4, POLICY4_MAX_ENTRIES, POLICY_EP4,
    POLICY_EP4_MAX_ENTRIES,
};
use dataplane_common::{
    Ct4Key, Ct4Value, DpConfig, Endpoint4Key, Endpoint4Value, Lb4Affinity, Lb4AffinityKey,
    Lb4Backend, Lb4Key, Lb4RevNat, Lb4Service, Lb4Slot, Lb4SlotKey, Lb4SockFwd, Lb4SockKey, Lb4SockRevNat,
    NodeRoute4Value, IpCache4Value, Policy4Data, Policy4Value, PolicyEp4Value,
};

use super::DatapathError;

struct Spec {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

impl Spec {
    /// The definition of a map named `name` with keys `K` and values `V`.
    const fn new<K, V>(name: &'static str, map_type: MapType, max_entries: u32) -> Self {
        Self {
            name,
            map_type,
            key_size: size_of::<K>() as u32,
            value_size: size_of::<V>() as u32,
            max_entries,
        }
    }
}

const SPECS: &[Spec] = &[
    Spec::new::<Endpoint4Key, Endpoint4Value>(ENDPOINTS4, MapType::Hash, ENDPOINTS4_MAX_ENTRIES),
    Spec::new::<u32, u64>(DROP_STATS, MapType::PerCpuArray, DROP_STATS_MAX_ENTRIES),
    // LPM key: u32 prefix length + the address.
    Spec::new::<[u8; 8], NodeRoute4Value>(NODE_ROUTES4, MapType::LpmTrie, NODE_ROUTES4_MAX_ENTRIES),
    Spec::new::<u32, DpConfig>(DP_CONFIG, MapType::Array, 1),
    Spec::new::<Lb4Key, Lb4Service>(LB4_SERVICES, MapType::Hash, LB4_SERVICES_MAX_ENTRIES),
    Spec::new::<Lb4SlotKey, Lb4Slot>(LB4_SLOTS, MapType::Hash, LB4_SLOTS_MAX_ENTRIES),
    Spec::new::<u32, Lb4Backend>(LB4_BACKENDS, MapType::Hash, LB4_BACKENDS_MAX_ENTRIES),
    Spec::new::<u16, Lb4RevNat>(LB4_REVNAT, MapType::Hash, LB4_REVNAT_MAX_ENTRIES),
    Spec::new::<Lb4AffinityKey, Lb4Affinity>(
        LB4_AFFINITY,
        MapType::LruHash,
        LB4_AFFINITY_MAX_ENTRIES,
    ),
    Spec::new::<Lb4SockKey, Lb4SockRevNat>(
        LB4_SOCK_REVNAT,
        MapType::LruHash,
        LB4_SOCK_REVNAT_MAX_ENTRIES,
    ),
    Spec::new::<Lb4SockKey, Lb4SockFwd>(LB4_SOCK_FWD, MapType::LruHash, LB4_SOCK_FWD_MAX_ENTRIES),
    Spec::new::<Ct4Key, Ct4Value>(CT4, MapType::LruHash, CT4_MAX_ENTRIES),
    Spec::new::<u32, u64>(LB4_STATS, MapType::PerCpuArray, LB4_STATS_MAX_ENTRIES),
    Spec::new::<[u8; 8], IpCache4Value>(IPCACHE4, MapType::LpmTrie, IPCACHE4_MAX_ENTRIES),
    // LPM key: u32 prefix length + the 12 data bytes.
    Spec::new::<[u8; 4 + size_of::<Policy4Data>()], Policy4Value>(POLICY4, MapType::LpmTrie, POLICY4_MAX_ENTRIES),
    Spec::new::<Endpoint4Key, PolicyEp4Value>(POLICY_EP4, MapType::Hash, POLICY_EP4_MAX_ENTRIES),
];

/// Check every map already pinned under `pin_dir` against this build's definition.
pub fn check_compatible(pin_dir: &Path) -> Result<(), DatapathError> {
    for spec in SPECS {
        let path = pin_dir.join(spec.name);
        if !path.exists() {
            continue;
        }
        let map_err = |source| DatapathError::Map {
            name: spec.name,
            source,
        };
        let info = MapInfo::from_pin(&path).map_err(map_err)?;
        let found_type = info.map_type().map_err(map_err)?;
        let found = (
            found_type,
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        );
        let want = (
            spec.map_type,
            spec.key_size,
            spec.value_size,
            spec.max_entries,
        );
        if found != want {
            return Err(DatapathError::PinnedMapMismatch {
                path,
                detail: format!(
                    "found {:?} key {} value {} max {}, want {:?} key {} value {} max {}",
                    found.0, found.1, found.2, found.3, want.0, want.1, want.2, want.3
                ),
            });
        }
    }
    Ok(())
}
