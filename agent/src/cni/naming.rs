//! Names derived from an attachment: the host side of its veth.

/// Prefix of every host-side veth weft creates.
pub const HOST_IF_PREFIX: &str = "weft";

/// The host-side veth name of (container ID, ifname): `weft` + 11 hex digits of a stable hash,
/// 15 characters, the kernel's limit (IFNAMSIZ - 1). Deterministic so DEL and GC find the link
/// again without any state, even after an upgrade (FNV-1a, not std's unstable hasher).
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0u8]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{HOST_IF_PREFIX}{:011x}", h >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ifname_fits_ifnamsiz_and_is_stable() {
        let n = host_ifname(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "eth0",
        );
        assert_eq!(n.len(), 15);
        assert!(n.starts_with(HOST_IF_PREFIX));
        assert!(n[4..].chars().all(|c| c.is_ascii_hexdigit()));
        // Pinned value: changing the derivation would orphan veths across an upgrade.
        assert_eq!(host_ifname("abc", "eth0"), "weft540c4ae81be");
        assert_eq!(
            host_ifname("abc", "eth0"),
            format!("weft{:011x}", fnv("abc\0eth0") >> 20)
        );
    }

    #[test]
    fn host_ifname_differs_per_container_and_interface() {
        assert_ne!(host_ifname("abc", "eth0"), host_ifname("abd", "eth0"));
        assert_ne!(host_ifname("abc", "eth0"), host_ifname("abc", "eth1"));
        // The separator keeps ("ab","ceth0") and ("abc","eth0") apart.
        assert_ne!(host_ifname("ab", "ceth0"), host_ifname("abc", "eth0"));
    }

    /// Reference FNV-1a 64, written independently of the code under test.
    fn fnv(s: &str) -> u64 {
        s.bytes().fold(14695981039346656037u64, |h, b| {
            (h ^ b as u64).wrapping_mul(1099511628211)
        })
    }
}
