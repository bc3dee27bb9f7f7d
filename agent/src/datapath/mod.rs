//! Loading, attaching and pinning the eBPF programs; typed access to their maps.
