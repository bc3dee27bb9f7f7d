//! Operations under load (issue 13, item 3): the workload, the load drivers running in its
//! pods and on the outside host, and the per-event report of what failed and whose failure it
//! was.

pub mod endpoints;
pub mod report;
pub mod session;
pub mod traffic;
pub mod workload;
