//! [`LbMaps`]: the pinned LB maps, written through [`LbStore`] by the reconciler and read for
//! listings.

use aya::maps::{HashMap, MapData, MapError};
use aya::sys::SyscallError;
use dataplane_common::maps::{LB4_AFFINITY, LB4_BACKENDS, LB4_REVNAT, LB4_SERVICES, LB4_SLOTS};
use dataplane_common::{
    Lb4Affinity, Lb4AffinityKey, Lb4Backend, Lb4Key, Lb4RevNat, Lb4Service, Lb4Slot, Lb4SlotKey,
};

use super::store::LbStore;
use super::{BackendId, RevNatId};
use crate::datapath::{take_map, DatapathError};

/// Handles of the agent-written LB maps and of the affinity map the reconciler cleans.
pub struct LbMaps {
    pub(crate) services: HashMap<MapData, Lb4Key, Lb4Service>,
    pub(crate) slots: HashMap<MapData, Lb4SlotKey, Lb4Slot>,
    pub(crate) backends: HashMap<MapData, u32, Lb4Backend>,
    pub(crate) revnat: HashMap<MapData, u16, Lb4RevNat>,
    pub(crate) affinity: HashMap<MapData, Lb4AffinityKey, Lb4Affinity>,
}

impl LbMaps {
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            services: take_map(ebpf, LB4_SERVICES)?,
            slots: take_map(ebpf, LB4_SLOTS)?,
            backends: take_map(ebpf, LB4_BACKENDS)?,
            revnat: take_map(ebpf, LB4_REVNAT)?,
            affinity: take_map(ebpf, LB4_AFFINITY)?,
        })
    }
}

fn err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

/// A delete that found nothing to delete is not an error (the goal state holds).
fn absent_ok(r: Result<(), MapError>, name: &'static str) -> Result<(), DatapathError> {
    match r {
        Err(MapError::SyscallError(SyscallError { io_error, .. }))
            if io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other.map_err(err(name)),
    }
}

fn collect<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
) -> Result<Vec<(K, V)>, DatapathError> {
    map.iter().map(|r| r.map_err(err(name))).collect()
}

impl LbStore for LbMaps {
    fn put_backend(&mut self, id: BackendId, value: &Lb4Backend) -> Result<(), DatapathError> {
        self.backends.insert(id.0, value, 0).map_err(err(LB4_BACKENDS))
    }
    fn delete_backend(&mut self, id: BackendId) -> Result<(), DatapathError> {
        absent_ok(self.backends.remove(&id.0), LB4_BACKENDS)
    }
    fn put_slot(&mut self, key: &Lb4SlotKey, value: &Lb4Slot) -> Result<(), DatapathError> {
        self.slots.insert(key, value, 0).map_err(err(LB4_SLOTS))
    }
    fn delete_slot(&mut self, key: &Lb4SlotKey) -> Result<(), DatapathError> {
        absent_ok(self.slots.remove(key), LB4_SLOTS)
    }
    fn put_revnat(&mut self, id: RevNatId, value: &Lb4RevNat) -> Result<(), DatapathError> {
        self.revnat.insert(id.0, value, 0).map_err(err(LB4_REVNAT))
    }
    fn delete_revnat(&mut self, id: RevNatId) -> Result<(), DatapathError> {
        absent_ok(self.revnat.remove(&id.0), LB4_REVNAT)
    }
    fn put_service(&mut self, key: &Lb4Key, value: &Lb4Service) -> Result<(), DatapathError> {
        self.services.insert(key, value, 0).map_err(err(LB4_SERVICES))
    }
    fn delete_service(&mut self, key: &Lb4Key) -> Result<(), DatapathError> {
        absent_ok(self.services.remove(key), LB4_SERVICES)
    }
    fn purge_affinity(
        &mut self,
        id: RevNatId,
        backends: &[BackendId],
    ) -> Result<usize, DatapathError> {
        let doomed: Vec<Lb4AffinityKey> = collect(&self.affinity, LB4_AFFINITY)?
            .into_iter()
            .filter(|(k, v)| {
                k.rev_nat_id == id.0
                    && (backends.is_empty() || backends.contains(&BackendId(v.backend_id)))
            })
            .map(|(k, _)| k)
            .collect();
        for k in &doomed {
            absent_ok(self.affinity.remove(k), LB4_AFFINITY)?;
        }
        Ok(doomed.len())
    }
    fn read_services(&self) -> Result<Vec<(Lb4Key, Lb4Service)>, DatapathError> {
        collect(&self.services, LB4_SERVICES)
    }
    fn read_slots(&self) -> Result<Vec<(Lb4SlotKey, Lb4Slot)>, DatapathError> {
        collect(&self.slots, LB4_SLOTS)
    }
    fn read_backends(&self) -> Result<Vec<(BackendId, Lb4Backend)>, DatapathError> {
        Ok(collect(&self.backends, LB4_BACKENDS)?
            .into_iter()
            .map(|(k, v)| (BackendId(k), v))
            .collect())
    }
    fn read_revnats(&self) -> Result<Vec<(RevNatId, Lb4RevNat)>, DatapathError> {
        Ok(collect(&self.revnat, LB4_REVNAT)?
            .into_iter()
            .map(|(k, v)| (RevNatId(k), v))
            .collect())
    }
}
