//! The LB maps as the reconciler sees them: single-entry writes and deletes, and full reads
//! for resuming after a restart. [`LbMaps`](super::LbMaps) implements it on the pinned BPF
//! maps; [`MemStore`] in memory, recording every operation so tests can check their order.

use dataplane_common::{Lb4Backend, Lb4Key, Lb4RevNat, Lb4Service, Lb4Slot, Lb4SlotKey};

use super::{BackendId, RevNatId};
use crate::datapath::DatapathError;

/// Writes and reads of the agent-owned LB maps.
pub trait LbStore {
    fn put_backend(&mut self, id: BackendId, value: &Lb4Backend) -> Result<(), DatapathError>;
    fn delete_backend(&mut self, id: BackendId) -> Result<(), DatapathError>;
    fn put_slot(&mut self, key: &Lb4SlotKey, value: &Lb4Slot) -> Result<(), DatapathError>;
    fn delete_slot(&mut self, key: &Lb4SlotKey) -> Result<(), DatapathError>;
    fn put_revnat(&mut self, id: RevNatId, value: &Lb4RevNat) -> Result<(), DatapathError>;
    fn delete_revnat(&mut self, id: RevNatId) -> Result<(), DatapathError>;
    fn put_service(&mut self, key: &Lb4Key, value: &Lb4Service) -> Result<(), DatapathError>;
    fn delete_service(&mut self, key: &Lb4Key) -> Result<(), DatapathError>;
    /// Remove ClientIP affinity entries of frontend `id` that point at one of `backends` (all
    /// of the frontend's when `backends` is empty); returns how many went.
    fn purge_affinity(
        &mut self,
        id: RevNatId,
        backends: &[BackendId],
    ) -> Result<usize, DatapathError>;

    fn read_services(&self) -> Result<Vec<(Lb4Key, Lb4Service)>, DatapathError>;
    fn read_slots(&self) -> Result<Vec<(Lb4SlotKey, Lb4Slot)>, DatapathError>;
    fn read_backends(&self) -> Result<Vec<(BackendId, Lb4Backend)>, DatapathError>;
    fn read_revnats(&self) -> Result<Vec<(RevNatId, Lb4RevNat)>, DatapathError>;
}

/// One recorded operation of a [`MemStore`].
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    PutBackend(BackendId),
    DeleteBackend(BackendId),
    PutSlot(Lb4SlotKey, BackendId),
    DeleteSlot(Lb4SlotKey),
    PutRevNat(RevNatId),
    DeleteRevNat(RevNatId),
    PutService(Lb4Key, Lb4Service),
    DeleteService(Lb4Key),
    PurgeAffinity(RevNatId, Vec<BackendId>),
}

/// The maps in memory, with the log of operations applied to them.
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    pub services: std::collections::BTreeMap<[u8; 8], (Lb4Key, Lb4Service)>,
    pub slots: std::collections::BTreeMap<(u16, u8, u16), Lb4Slot>,
    pub backends: std::collections::BTreeMap<BackendId, Lb4Backend>,
    pub revnats: std::collections::BTreeMap<RevNatId, Lb4RevNat>,
    pub ops: Vec<Op>,
}

#[cfg(test)]
fn key_bytes(k: &Lb4Key) -> [u8; 8] {
    let p = k.port_be.to_ne_bytes();
    [k.addr_be[0], k.addr_be[1], k.addr_be[2], k.addr_be[3], p[0], p[1], k.proto, k.scope]
}

#[cfg(test)]
impl LbStore for MemStore {
    fn put_backend(&mut self, id: BackendId, value: &Lb4Backend) -> Result<(), DatapathError> {
        self.backends.insert(id, *value);
        self.ops.push(Op::PutBackend(id));
        Ok(())
    }
    fn delete_backend(&mut self, id: BackendId) -> Result<(), DatapathError> {
        self.backends.remove(&id);
        self.ops.push(Op::DeleteBackend(id));
        Ok(())
    }
    fn put_slot(&mut self, key: &Lb4SlotKey, value: &Lb4Slot) -> Result<(), DatapathError> {
        self.slots
            .insert((key.rev_nat_id, key.generation, key.slot), *value);
        self.ops.push(Op::PutSlot(*key, BackendId(value.backend_id)));
        Ok(())
    }
    fn delete_slot(&mut self, key: &Lb4SlotKey) -> Result<(), DatapathError> {
        self.slots
            .remove(&(key.rev_nat_id, key.generation, key.slot));
        self.ops.push(Op::DeleteSlot(*key));
        Ok(())
    }
    fn put_revnat(&mut self, id: RevNatId, value: &Lb4RevNat) -> Result<(), DatapathError> {
        self.revnats.insert(id, *value);
        self.ops.push(Op::PutRevNat(id));
        Ok(())
    }
    fn delete_revnat(&mut self, id: RevNatId) -> Result<(), DatapathError> {
        self.revnats.remove(&id);
        self.ops.push(Op::DeleteRevNat(id));
        Ok(())
    }
    fn put_service(&mut self, key: &Lb4Key, value: &Lb4Service) -> Result<(), DatapathError> {
        self.services.insert(key_bytes(key), (*key, *value));
        self.ops.push(Op::PutService(*key, *value));
        Ok(())
    }
    fn delete_service(&mut self, key: &Lb4Key) -> Result<(), DatapathError> {
        self.services.remove(&key_bytes(key));
        self.ops.push(Op::DeleteService(*key));
        Ok(())
    }
    fn purge_affinity(
        &mut self,
        id: RevNatId,
        backends: &[BackendId],
    ) -> Result<usize, DatapathError> {
        self.ops.push(Op::PurgeAffinity(id, backends.to_vec()));
        Ok(0)
    }
    fn read_services(&self) -> Result<Vec<(Lb4Key, Lb4Service)>, DatapathError> {
        Ok(self.services.values().copied().collect())
    }
    fn read_slots(&self) -> Result<Vec<(Lb4SlotKey, Lb4Slot)>, DatapathError> {
        Ok(self
            .slots
            .iter()
            .map(|(&(rev_nat_id, generation, slot), v)| {
                (
                    Lb4SlotKey {
                        rev_nat_id,
                        slot,
                        generation,
                        _pad: [0; 3],
                    },
                    *v,
                )
            })
            .collect())
    }
    fn read_backends(&self) -> Result<Vec<(BackendId, Lb4Backend)>, DatapathError> {
        Ok(self.backends.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn read_revnats(&self) -> Result<Vec<(RevNatId, Lb4RevNat)>, DatapathError> {
        Ok(self.revnats.iter().map(|(k, v)| (*k, *v)).collect())
    }
}
