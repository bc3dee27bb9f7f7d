//! NetworkPolicy maps: `IPCACHE4` (an address -> the identities policy knows it by),
//! `POLICY_EP4` (a local pod -> its policy id and which directions are isolated) and
//! `POLICY4` (per policy id and direction: the allowed {peer identity, protocol, port block}).
//!
//! A new flow of a pod that `POLICY_EP4` holds is judged once: the peer's `IPCACHE4` entry
//! gives a label identity and a prefix identity; `POLICY4` is looked up (longest prefix) with
//! the label identity, then the prefix identity, then [`POLICY_PEER_ANY`]. The verdict is kept
//! as a `CT4` entry of kind `CT4_KIND_POLICY_EGRESS`/`_INGRESS`, so the flow's later packets
//! and its replies pay one lookup. Keys and identities are computed by the agent's `policy`
//! translation; lookups never walk a list, so their cost does not grow with the number of
//! policies.

use core::mem::size_of;

/// Peer identity in a `POLICY4` key: every peer.
pub const POLICY_PEER_ANY: u32 = 0;
/// Label identity of an address no pod and no local node holds (also the default when
/// `IPCACHE4` has no entry).
pub const IDENTITY_WORLD: u32 = 1;
/// Label identity of this node's own addresses: always let into local pods.
pub const IDENTITY_HOST: u32 = 2;

/// `Policy4Data::dir`.
pub const POLICY_DIR_INGRESS: u8 = 1;
pub const POLICY_DIR_EGRESS: u8 = 2;

/// `PolicyEp4Value::flags`: new flows into the pod are judged by `POLICY4`.
pub const POLICY_EP_F_INGRESS: u32 = 1 << 0;
/// `PolicyEp4Value::flags`: new flows out of the pod are judged by `POLICY4`.
pub const POLICY_EP_F_EGRESS: u32 = 1 << 1;

/// Value of `IPCACHE4` (LPM trie keyed `{prefix_len, [u8; 4]}`, address in header byte order).
/// 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpCache4Value {
    /// The pod's label identity, or `IDENTITY_WORLD` / `IDENTITY_HOST`.
    pub label: u32,
    /// The identity of the longest policy prefix holding the address; 0 for none.
    pub prefix: u32,
}
const _: () = assert!(size_of::<IpCache4Value>() == 8);

/// The data part of a `POLICY4` key (LPM trie; the prefix length counts bits of this, from the
/// first byte's most significant bit). Multi-byte fields are big-endian so a prefix cuts ports
/// at their high bits. 12 bytes, byte-aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Policy4Data {
    /// The endpoint's policy id (`PolicyEp4Value::policy_id`), big-endian.
    pub policy_id_be: [u8; 4],
    /// `POLICY_DIR_*`.
    pub dir: u8,
    /// The peer identity, big-endian.
    pub peer_be: [u8; 4],
    /// IP protocol number.
    pub proto: u8,
    /// Destination port, big-endian.
    pub port_be: [u8; 2],
}
const _: () = assert!(size_of::<Policy4Data>() == 12);

/// Prefix length of a `POLICY4` entry for every protocol and port of a peer.
pub const POLICY4_BITS_ANY_PROTO: u32 = 72;
/// Prefix length of a `POLICY4` entry for every port of one protocol; add the port block's
/// fixed bits (up to 16) for a block of ports.
pub const POLICY4_BITS_PROTO: u32 = 80;
/// Prefix length of a lookup key (every field).
pub const POLICY4_BITS_FULL: u32 = 96;

impl Policy4Data {
    #[inline(always)]
    pub const fn new(policy_id: u32, dir: u8, peer: u32, proto: u8, port: u16) -> Self {
        Self {
            policy_id_be: policy_id.to_be_bytes(),
            dir,
            peer_be: peer.to_be_bytes(),
            proto,
            port_be: port.to_be_bytes(),
        }
    }
}

/// Value of `POLICY4`: an allow entry. 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy4Value {
    /// None defined yet; written as 0.
    pub flags: u32,
}
const _: () = assert!(size_of::<Policy4Value>() == 4);

/// Value of `POLICY_EP4` (hash keyed by [`crate::Endpoint4Key`]). 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyEp4Value {
    /// Names the endpoint's current `POLICY4` entries; a new set of entries is written under a
    /// new id before this flips to it (never 0).
    pub policy_id: u32,
    /// `POLICY_EP_F_*`. An entry with neither bit still tracks the pod's flows, so its replies
    /// pass when policies come.
    pub flags: u32,
}
const _: () = assert!(size_of::<PolicyEp4Value>() == 8);

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` data without implicit padding (asserted); any bit pattern is valid.
unsafe impl aya::Pod for IpCache4Value {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for Policy4Data {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for Policy4Value {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for PolicyEp4Value {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn policy4_data_orders_fields_for_prefix_matching() {
        assert_eq!(offset_of!(Policy4Data, policy_id_be), 0);
        assert_eq!(offset_of!(Policy4Data, dir), 4);
        assert_eq!(offset_of!(Policy4Data, peer_be), 5);
        assert_eq!(offset_of!(Policy4Data, proto), 9);
        assert_eq!(offset_of!(Policy4Data, port_be), 10);
        assert_eq!(
            POLICY4_BITS_ANY_PROTO as usize,
            offset_of!(Policy4Data, proto) * 8
        );
        assert_eq!(
            POLICY4_BITS_PROTO as usize,
            offset_of!(Policy4Data, port_be) * 8
        );
        assert_eq!(POLICY4_BITS_FULL as usize, size_of::<Policy4Data>() * 8);
        let d = Policy4Data::new(0x0102_0304, POLICY_DIR_EGRESS, 0x0a0b_0c0d, 6, 8080);
        assert_eq!(d.policy_id_be, [1, 2, 3, 4]);
        assert_eq!(d.peer_be, [10, 11, 12, 13]);
        assert_eq!(d.port_be, 8080u16.to_be_bytes());
    }
}
