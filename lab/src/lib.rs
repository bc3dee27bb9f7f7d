//! The lab as a library: upstream builds, topology, control plane, kubelet stand-in. The
//! `weft-lab` binary is its CLI; the tests use the modules directly.

pub mod addons;
pub mod cni;
pub mod conformance;
pub mod controlplane;
pub mod down;
pub mod images;
pub mod kubectl;
pub mod kubelet;
pub mod leftovers;
pub mod netpol;
pub mod nodeops;
pub mod nodes;
pub mod pki;
pub mod podcmd;
pub mod preflight;
pub mod procs;
pub mod sh;
pub mod shellenv;
pub mod spec;
pub mod state;
pub mod status;
pub mod table;
pub mod topology;
pub mod up;
pub mod upstream;
pub mod weft;
