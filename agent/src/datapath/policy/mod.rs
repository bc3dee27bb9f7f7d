//! NetworkPolicy in the datapath from user space: the typed handle on the three policy maps
//! (`maps`) and the reconciler that alone writes them, make-before-break (`reconcile`).

mod maps;
mod reconcile;

pub use maps::{rule_key, PolicyEndpoint, PolicyMaps};
pub use reconcile::{ApplyStats, Desired, PolicyReconciler, PolicyWriter};
