//! The kernel/user ABI: `#[repr(C)]` map keys and values, map names and constants shared by
//! the eBPF programs and the agent.
#![no_std]
