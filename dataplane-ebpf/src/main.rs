//! weft's eBPF programs: one object, built for `bpfel-unknown-none` and embedded in `weft`.
#![no_std]
#![no_main]

mod config;
mod csum;
mod ct;
mod drop;
mod from_netdev;
mod from_overlay;
mod from_pod;
mod fwd;
mod l3;
mod lb;
mod maps;
mod nat;
mod netdev_lb;
mod parse;
mod policy;
mod refuse;
mod sock;
mod to_overlay;
mod to_pod;
mod tunnel;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never called at run time.
    loop {}
}

/// Kernel license string: the verifier only allows GPL-only helpers (several tracing and
/// networking helpers are) in programs declaring a GPL-compatible license.
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
