//! Shared helpers for the end-to-end suites (network namespaces, processes, cleanup).

pub mod conformance;
pub mod lab;
pub mod load;
pub mod operations;
pub mod services;
pub mod walkthrough;
pub mod weft;
