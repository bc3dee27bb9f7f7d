//! The eBPF object embedded at build time (see `agent/build.rs`).

/// The ELF object produced by `cargo xtask build-ebpf`, 8-byte aligned as aya requires.
pub fn bytes() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/weft-dataplane.o"))
}
