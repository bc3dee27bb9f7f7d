//! The kubelet stand-in's tests: its unit tests (compiled here until `weft-lab` has a library
//! target) and the root tests that build real sandboxes with real CNI plugins.

#[allow(dead_code)]
#[path = "../src/kubelet/mod.rs"]
mod kubelet;
