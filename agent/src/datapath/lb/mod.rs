//! The Service load-balancing maps from user space: typed access ([`LbMaps`]), the reconciler
//! that writes them ([`Reconciler`]), listings for `weft service list` and metrics.

mod maps;
mod reconcile;
mod store;
mod table;

#[cfg(test)]
mod tests;

pub use maps::LbMaps;
pub use reconcile::{frontend_of, key_of, BackendAddr, ProgrammedFrontend, ReconcileStats, Reconciler};
pub use store::LbStore;
pub use table::LbMetrics;

/// An `LB4_BACKENDS` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u32);

/// A frontend's id: its `LB4_REVNAT` key and the first part of its slot keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevNatId(pub u16);

use super::{Datapath, DatapathError};
use crate::lb::{Service, ServiceName};

impl Datapath {
    /// Make the LB maps hold exactly `services` (first sync after start, watcher re-list):
    /// frontends not among them are removed.
    pub fn sync_services(&mut self, services: &[Service]) -> Result<ReconcileStats, DatapathError> {
        self.lb.sync(&mut self.lb_maps, services)
    }

    /// Program one added or changed Service.
    pub fn upsert_service(&mut self, service: &Service) -> Result<ReconcileStats, DatapathError> {
        self.lb.upsert(&mut self.lb_maps, service)
    }

    /// Remove a deleted Service's frontends.
    pub fn delete_service(&mut self, name: &ServiceName) -> Result<ReconcileStats, DatapathError> {
        self.lb.delete(&mut self.lb_maps, name)
    }

    /// Everything the LB reconciler did since this datapath was opened.
    pub fn lb_totals(&self) -> ReconcileStats {
        self.lb.totals()
    }
}
