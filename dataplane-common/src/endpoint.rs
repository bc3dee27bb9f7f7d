//! `ENDPOINTS4` key and value: a local pod's IPv4 address and where to deliver its traffic.

use core::mem::size_of;

/// Key of `ENDPOINTS4`: the pod's IPv4 address in network byte order, exactly as it appears in
/// the IPv4 header (so the datapath can use the header bytes as the key without swapping).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint4Key {
    /// IPv4 address, network byte order (`Ipv4Addr::octets()`).
    pub addr_be: [u8; 4],
}
const _: () = assert!(size_of::<Endpoint4Key>() == 4);

impl Endpoint4Key {
    pub const fn new(octets: [u8; 4]) -> Self {
        Self { addr_be: octets }
    }
}

/// Value of `ENDPOINTS4`.
///
/// Layout (20 bytes, align 4, no implicit padding):
/// `ifindex` 0..4, `host_mac` 4..10, `pod_mac` 10..16, `flags` 16..20.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint4Value {
    /// ifindex of the host-side veth (in the node's network namespace); the target of
    /// `bpf_redirect_peer`, which delivers to its peer (`eth0` in the pod).
    pub ifindex: u32,
    /// MAC of the host-side veth: the source MAC of frames delivered to the pod (the pod's
    /// gateway 169.254.1.1 resolves to it).
    pub host_mac: [u8; 6],
    /// MAC of the pod's `eth0`: the destination MAC of frames delivered to the pod.
    pub pod_mac: [u8; 6],
    /// Bit set of `ENDPOINT_F_*`; none defined yet, written as 0.
    pub flags: u32,
}
const _: () = assert!(size_of::<Endpoint4Value>() == 20);
const _: () = assert!(core::mem::align_of::<Endpoint4Value>() == 4);

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` data without implicit padding (asserted above); every bit
// pattern is a valid value.
unsafe impl aya::Pod for Endpoint4Key {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for Endpoint4Value {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn endpoint4_value_layout_is_stable() {
        assert_eq!(offset_of!(Endpoint4Value, ifindex), 0);
        assert_eq!(offset_of!(Endpoint4Value, host_mac), 4);
        assert_eq!(offset_of!(Endpoint4Value, pod_mac), 10);
        assert_eq!(offset_of!(Endpoint4Value, flags), 16);
        assert_eq!(size_of::<Endpoint4Value>(), 20);
    }

    #[test]
    fn endpoint4_key_is_the_address_in_header_byte_order() {
        let key = Endpoint4Key::new([10, 200, 0, 5]);
        assert_eq!(size_of::<Endpoint4Key>(), 4);
        // The eBPF side reads the 4 header bytes of `daddr` as the key; the bytes must match.
        // SAFETY: Endpoint4Key is repr(C) and exactly 4 bytes.
        let bytes: [u8; 4] = unsafe { core::mem::transmute(key) };
        assert_eq!(bytes, [10, 200, 0, 5]);
    }
}
