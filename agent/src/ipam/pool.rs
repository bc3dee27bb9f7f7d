//! Pure allocation logic over one pod CIDR: which address an attachment gets.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use super::{IpamError, MAX_PREFIX_LEN};
use crate::ids::{AttachmentKey, PodRef};

/// All allocations of one node. Serialized as the store's file content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// The CIDR the allocations come from; set by the first allocation.
    pub pod_cidr: Option<Ipv4Network>,
    /// Last address handed out: the search continues after it, so a freed address is not
    /// reused at once (a late packet for the old pod must not reach a new one).
    pub last: Option<Ipv4Addr>,
    pub allocations: BTreeMap<Ipv4Addr, AttachmentKey>,
    /// The pod each address went to, where the runtime said (absent in stores written before
    /// this field existed: those allocations are never reclaimed by pod reconcile).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owners: BTreeMap<Ipv4Addr, PodRef>,
}

/// Usable addresses of a CIDR: all but network, gateway (first host) and broadcast.
pub fn capacity(cidr: Ipv4Network) -> usize {
    if cidr.prefix() > MAX_PREFIX_LEN {
        return 0;
    }
    (1usize << (32 - cidr.prefix())) - 3
}

/// First and last usable address (inclusive) as integers.
fn usable_range(cidr: Ipv4Network) -> Result<(u32, u32), IpamError> {
    if cidr.prefix() > MAX_PREFIX_LEN {
        return Err(IpamError::CidrTooSmall { cidr });
    }
    let network = u32::from(cidr.network());
    let broadcast = u32::from(cidr.broadcast());
    Ok((network + 2, broadcast - 1))
}

impl Pool {
    /// The address held by `key`, if any.
    pub fn find(&self, key: &AttachmentKey) -> Option<Ipv4Addr> {
        self.allocations
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(ip, _)| *ip)
    }

    /// Give `key` an address from `cidr`; the same key gets the same address again.
    pub fn allocate(&mut self, key: &AttachmentKey, cidr: Ipv4Network) -> Result<Ipv4Addr, IpamError> {
        let cidr = super::canonical(cidr);
        let (first, last) = usable_range(cidr)?;
        match self.pod_cidr {
            Some(held) if held != cidr && !self.allocations.is_empty() => {
                return Err(IpamError::CidrMismatch {
                    asked: cidr,
                    held,
                    count: self.allocations.len(),
                })
            }
            _ => self.pod_cidr = Some(cidr),
        }
        if let Some(ip) = self.find(key) {
            return Ok(ip);
        }
        let size = last - first + 1;
        let start = match self.last.map(u32::from) {
            Some(prev) if (first..=last).contains(&prev) => prev - first + 1,
            _ => 0,
        };
        let free = (0..size)
            .map(|i| Ipv4Addr::from(first + (start + i) % size))
            .find(|ip| !self.allocations.contains_key(ip));
        let ip = free.ok_or(IpamError::Exhausted {
            cidr,
            capacity: size as usize,
        })?;
        self.allocations.insert(ip, key.clone());
        self.last = Some(ip);
        Ok(ip)
    }

    /// Record which pod `ip` went to (replacing an earlier record).
    pub fn set_owner(&mut self, ip: Ipv4Addr, pod: PodRef) {
        if self.allocations.contains_key(&ip) {
            self.owners.insert(ip, pod);
        }
    }

    /// Free the address of `key`; `None` if it held none.
    pub fn release(&mut self, key: &AttachmentKey) -> Option<Ipv4Addr> {
        let ip = self.find(key)?;
        self.allocations.remove(&ip);
        self.owners.remove(&ip);
        Some(ip)
    }

    /// Attachments whose recorded pod is not among `live` (the pods that exist on this node):
    /// their addresses are held for nobody. Attachments without a recorded pod are kept.
    pub fn orphans(&self, live: &[PodRef]) -> Vec<(Ipv4Addr, AttachmentKey, PodRef)> {
        self.owners
            .iter()
            .filter(|(_, owner)| !live.iter().any(|l| owner.is(l)))
            .filter_map(|(ip, owner)| {
                let key = self.allocations.get(ip)?;
                Some((*ip, key.clone(), owner.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, uid: &str) -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: name.into(),
            uid: Some(uid.into()),
        }
    }

    #[test]
    fn orphans_are_recorded_pods_that_no_longer_exist() {
        let mut p = Pool::default();
        let net = cidr("10.200.1.0/24");
        let a = p.allocate(&key("a"), net).unwrap();
        let b = p.allocate(&key("b"), net).unwrap();
        let c = p.allocate(&key("c"), net).unwrap();
        let _legacy = p.allocate(&key("legacy"), net).unwrap();
        p.set_owner(a, pod("web", "u1"));
        p.set_owner(b, pod("gone", "u2"));
        p.set_owner(c, pod("db", "old-uid"));
        // web still runs; db was recreated under the same name; gone is gone; legacy has no
        // record and is kept.
        let live = [pod("web", "u1"), pod("db", "new-uid")];
        let orphans: Vec<_> = p.orphans(&live).into_iter().map(|(ip, k, _)| (ip, k.container_id)).collect();
        assert_eq!(orphans, vec![(b, "b".to_string()), (c, "c".to_string())]);
        p.release(&key("b"));
        assert!(!p.owners.contains_key(&b), "release forgets the owner too");
    }

    #[test]
    fn a_store_without_owners_still_reads() {
        let p: Pool = serde_json::from_str(
            r#"{"pod_cidr":"10.200.1.0/24","last":null,"allocations":{"10.200.1.2":{"container_id":"x","ifname":"eth0"}}}"#,
        )
        .unwrap();
        assert!(p.owners.is_empty());
        assert_eq!(p.allocations.len(), 1);
    }

    fn key(id: &str) -> AttachmentKey {
        AttachmentKey {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn cidr(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn skips_network_gateway_and_broadcast() {
        let mut pool = Pool::default();
        let net = cidr("10.200.1.0/29");
        let got: Vec<_> = (0..5)
            .map(|i| pool.allocate(&key(&i.to_string()), net).unwrap())
            .collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 200, 1, h)).collect();
        assert_eq!(got, want);
        assert_eq!(capacity(net), 5);
    }

    #[test]
    fn same_attachment_gets_same_address() {
        let mut pool = Pool::default();
        let net = cidr("10.200.1.0/24");
        let a = pool.allocate(&key("a"), net).unwrap();
        pool.allocate(&key("b"), net).unwrap();
        assert_eq!(pool.allocate(&key("a"), net).unwrap(), a);
        let other_if = AttachmentKey {
            container_id: "a".into(),
            ifname: "net1".into(),
        };
        assert_ne!(pool.allocate(&other_if, net).unwrap(), a);
        assert_eq!(pool.allocations.len(), 3);
    }

    #[test]
    fn exhaustion_is_an_error_and_release_makes_room() {
        let mut pool = Pool::default();
        let net = cidr("10.200.1.0/30");
        let only = pool.allocate(&key("a"), net).unwrap();
        assert_eq!(only, Ipv4Addr::new(10, 200, 1, 2));
        let err = pool.allocate(&key("b"), net).unwrap_err();
        assert!(
            matches!(err, IpamError::Exhausted { capacity: 1, .. }),
            "{err}"
        );
        assert_eq!(pool.release(&key("a")), Some(only));
        assert_eq!(pool.allocate(&key("b"), net).unwrap(), only);
    }

    #[test]
    fn freed_address_is_not_reused_at_once() {
        let mut pool = Pool::default();
        let net = cidr("10.200.1.0/24");
        let a = pool.allocate(&key("a"), net).unwrap();
        pool.release(&key("a"));
        let b = pool.allocate(&key("b"), net).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn release_of_unknown_attachment_is_none() {
        let mut pool = Pool::default();
        assert_eq!(pool.release(&key("ghost")), None);
    }

    #[test]
    fn cidr_change_is_refused_while_addresses_are_held() {
        let mut pool = Pool::default();
        pool.allocate(&key("a"), cidr("10.200.1.0/24")).unwrap();
        let err = pool.allocate(&key("b"), cidr("10.200.2.0/24")).unwrap_err();
        assert!(
            matches!(err, IpamError::CidrMismatch { count: 1, .. }),
            "{err}"
        );
        pool.release(&key("a"));
        assert_eq!(
            pool.allocate(&key("b"), cidr("10.200.2.0/24")).unwrap(),
            Ipv4Addr::new(10, 200, 2, 2)
        );
    }

    #[test]
    fn too_small_cidr_is_refused() {
        let mut pool = Pool::default();
        for c in ["10.200.1.0/31", "10.200.1.1/32"] {
            let err = pool.allocate(&key("a"), cidr(c)).unwrap_err();
            assert!(matches!(err, IpamError::CidrTooSmall { .. }), "{c}: {err}");
        }
    }

    #[test]
    fn host_bits_in_cidr_are_ignored() {
        let mut pool = Pool::default();
        let ip = pool.allocate(&key("a"), cidr("10.200.1.77/24")).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 200, 1, 2));
        assert_eq!(pool.pod_cidr, Some(cidr("10.200.1.0/24")));
    }
}
