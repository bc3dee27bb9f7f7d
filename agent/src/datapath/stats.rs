//! Read-only figures from the pinned maps, for `/metrics`: opened by pin at each call, so any
//! process (and any thread) can read them without touching the owner's handles.

use std::path::Path;

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use dataplane_common::maps::{
    CT4, CT4_MAX_ENTRIES, DROP_STATS, ENDPOINTS4, LB4_STATS, ENDPOINTS4_MAX_ENTRIES, LB4_BACKENDS,
    LB4_BACKENDS_MAX_ENTRIES, LB4_SERVICES, LB4_SERVICES_MAX_ENTRIES, NODE_ROUTES4,
    NODE_ROUTES4_MAX_ENTRIES, IPCACHE4, IPCACHE4_MAX_ENTRIES, POLICY4, POLICY4_MAX_ENTRIES, POLICY_EP4,
    POLICY_EP4_MAX_ENTRIES,
};
use dataplane_common::{
    Ct4Key, Ct4Value, Endpoint4Key, Endpoint4Value, Lb4Backend, Lb4Key, Lb4Service,
    NodeRoute4Value, IpCache4Value, Policy4Data, Policy4Value, PolicyEp4Value,
};

use super::DatapathError;

/// Drops by reason, Service path counters and (entries, capacity) by map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub drops: Vec<(&'static str, u64)>,
    pub service_path: Vec<(&'static str, u64)>,
    pub maps: Vec<(&'static str, u64, u64)>,
}

fn open(pin_dir: &Path, name: &'static str) -> Result<MapData, DatapathError> {
    MapData::from_pin(pin_dir.join(name)).map_err(|source| DatapathError::Map { name, source })
}

fn err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

/// Read the figures from the maps pinned under `pin_dir`.
pub fn read_stats(pin_dir: &Path) -> Result<Figures, DatapathError> {
    let per_cpu = |name| -> Result<PerCpuArray<MapData, u64>, DatapathError> {
        PerCpuArray::try_from(Map::PerCpuArray(open(pin_dir, name)?)).map_err(err(name))
    };
    let drops = super::drop::drops_in(&per_cpu(DROP_STATS)?)?;
    let service_path = super::drop::lb_counters_in(&per_cpu(LB4_STATS)?)?;
    let endpoints: HashMap<MapData, Endpoint4Key, Endpoint4Value> =
        HashMap::try_from(Map::HashMap(open(pin_dir, ENDPOINTS4)?)).map_err(err(ENDPOINTS4))?;
    let routes: LpmTrie<MapData, [u8; 4], NodeRoute4Value> =
        LpmTrie::try_from(Map::LpmTrie(open(pin_dir, NODE_ROUTES4)?)).map_err(err(NODE_ROUTES4))?;
    let services: HashMap<MapData, Lb4Key, Lb4Service> =
        HashMap::try_from(Map::HashMap(open(pin_dir, LB4_SERVICES)?)).map_err(err(LB4_SERVICES))?;
    let backends: HashMap<MapData, u32, Lb4Backend> =
        HashMap::try_from(Map::HashMap(open(pin_dir, LB4_BACKENDS)?)).map_err(err(LB4_BACKENDS))?;
    let ct: HashMap<MapData, Ct4Key, Ct4Value> =
        HashMap::try_from(Map::LruHashMap(open(pin_dir, CT4)?)).map_err(err(CT4))?;
    let ipcache: LpmTrie<MapData, [u8; 4], IpCache4Value> =
        LpmTrie::try_from(Map::LpmTrie(open(pin_dir, IPCACHE4)?)).map_err(err(IPCACHE4))?;
    let rules: LpmTrie<MapData, Policy4Data, Policy4Value> =
        LpmTrie::try_from(Map::LpmTrie(open(pin_dir, POLICY4)?)).map_err(err(POLICY4))?;
    let policy_eps: HashMap<MapData, Endpoint4Key, PolicyEp4Value> =
        HashMap::try_from(Map::HashMap(open(pin_dir, POLICY_EP4)?)).map_err(err(POLICY_EP4))?;
    Ok(Figures {
        drops,
        service_path,
        maps: vec![
            (ENDPOINTS4, endpoints.keys().count() as u64, ENDPOINTS4_MAX_ENTRIES as u64),
            (NODE_ROUTES4, routes.keys().count() as u64, NODE_ROUTES4_MAX_ENTRIES as u64),
            (LB4_SERVICES, services.keys().count() as u64, LB4_SERVICES_MAX_ENTRIES as u64),
            (LB4_BACKENDS, backends.keys().count() as u64, LB4_BACKENDS_MAX_ENTRIES as u64),
            (CT4, ct.keys().count() as u64, CT4_MAX_ENTRIES as u64),
            (IPCACHE4, ipcache.keys().count() as u64, IPCACHE4_MAX_ENTRIES as u64),
            (POLICY4, rules.keys().count() as u64, POLICY4_MAX_ENTRIES as u64),
            (POLICY_EP4, policy_eps.keys().count() as u64, POLICY_EP4_MAX_ENTRIES as u64),
        ],
    })
}
