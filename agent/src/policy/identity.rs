//! Numeric identities: one per distinct (namespace, pod labels) and one per address prefix
//! that an ipBlock (or an exact named-port peer) needs. Ids are handed out in increasing order
//! and never reused while their range lasts, so a map entry keyed by a retired id can never
//! be taken for a new peer's before the reconciler removes it.

use std::collections::BTreeMap;

use ipnetwork::Ipv4Network;

use super::select::Labels;

/// In a rule key: any peer.
pub const ANY: u32 = dataplane_common::policy::POLICY_PEER_ANY;
/// An address no pod and no local node holds.
pub const WORLD: u32 = dataplane_common::policy::IDENTITY_WORLD;
/// This node's own addresses (kubelet probes, the node's processes).
pub const HOST: u32 = dataplane_common::policy::IDENTITY_HOST;
/// The first id of a label set.
pub const FIRST_LABEL: u32 = 256;
/// The first id of a prefix; label ids stay below it.
pub const FIRST_PREFIX: u32 = 1 << 24;

/// The labels a selector can look at for a pod: its namespace (whose labels are looked up
/// when matching, so a namespace relabel changes no identity) and its own labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSet {
    pub namespace: String,
    pub labels: Labels,
}

/// Ids for keys of one kind, kept across recomputations.
#[derive(Debug, Clone)]
pub struct Allocator<K> {
    ids: BTreeMap<K, u32>,
    first: u32,
    end: u32,
    next: u32,
}

impl<K: Ord + Clone> Allocator<K> {
    fn new(first: u32, end: u32) -> Self {
        Self {
            ids: BTreeMap::new(),
            first,
            end,
            next: first,
        }
    }

    /// Make `keys` the current set: known keys keep their ids, new ones (in key order) take
    /// fresh ids, keys not listed are retired.
    pub fn assign(&mut self, keys: impl IntoIterator<Item = K>) {
        let mut old = std::mem::take(&mut self.ids);
        let mut fresh = Vec::new();
        for k in keys {
            match old.remove(&k) {
                Some(id) => {
                    self.ids.insert(k, id);
                }
                None if !self.ids.contains_key(&k) => fresh.push(k),
                None => {}
            }
        }
        fresh.sort();
        fresh.dedup();
        let mut in_use: std::collections::BTreeSet<u32> = self.ids.values().copied().collect();
        let room = (self.end - self.first) as usize;
        for k in fresh {
            if in_use.len() >= room {
                // 16 million label sets or 4 billion prefixes: refuse rather than loop.
                tracing::error!(room, "policy identities exhausted; new peers match no rule");
                break;
            }
            // Wrap around only after the whole range was used once; skip live ids.
            let step = |id: u32| {
                if id + 1 >= self.end {
                    self.first
                } else {
                    id + 1
                }
            };
            let mut id = self.next;
            while in_use.contains(&id) {
                id = step(id);
            }
            self.next = step(id);
            in_use.insert(id);
            self.ids.insert(k, id);
        }
    }

    /// Take over ids an earlier agent handed out (read back from the maps), so a restart
    /// renumbers nothing; new keys continue after the highest.
    pub fn adopt(&mut self, pairs: impl IntoIterator<Item = (K, u32)>) {
        for (k, id) in pairs {
            let in_range = (self.first..self.end).contains(&id);
            if in_range && !self.ids.contains_key(&k) && !self.ids.values().any(|v| *v == id) {
                self.ids.insert(k, id);
                if id >= self.next {
                    self.next = if id + 1 >= self.end { self.first } else { id + 1 };
                }
            }
        }
    }

    pub fn get(&self, k: &K) -> Option<u32> {
        self.ids.get(k).copied()
    }

    /// Every live key with its id.
    pub fn iter(&self) -> impl Iterator<Item = (&K, u32)> {
        self.ids.iter().map(|(k, v)| (k, *v))
    }
}

/// The identities a node's agent has handed out, carried from one translation to the next.
#[derive(Debug, Clone)]
pub struct Identities {
    pub labels: Allocator<LabelSet>,
    pub prefixes: Allocator<Ipv4Network>,
}

impl Default for Identities {
    fn default() -> Self {
        Self {
            labels: Allocator::new(FIRST_LABEL, FIRST_PREFIX),
            prefixes: Allocator::new(FIRST_PREFIX, u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_keep_their_ids_and_retired_ids_are_not_reused() {
        let mut a: Allocator<&str> = Allocator::new(10, 20);
        a.assign(["b", "a"]);
        assert_eq!((a.get(&"a"), a.get(&"b")), (Some(10), Some(11)));
        a.assign(["b", "c"]);
        assert_eq!(a.get(&"a"), None);
        assert_eq!(a.get(&"b"), Some(11));
        assert_eq!(
            a.get(&"c"),
            Some(12),
            "10 was a's and is not handed out again yet"
        );
    }

    #[test]
    fn adopted_ids_are_kept_and_new_ones_follow_them() {
        let mut a: Allocator<&str> = Allocator::new(10, 20);
        a.adopt([("x", 14), ("y", 12), ("z", 14), ("w", 99)]);
        assert_eq!((a.get(&"x"), a.get(&"y")), (Some(14), Some(12)));
        assert_eq!(a.get(&"z"), None, "an id taken twice is adopted once");
        assert_eq!(a.get(&"w"), None, "an id out of range is not adopted");
        a.assign(["x", "y", "new"]);
        assert_eq!((a.get(&"x"), a.get(&"y"), a.get(&"new")), (Some(14), Some(12), Some(15)));
    }

    #[test]
    fn ids_wrap_around_skipping_live_ones() {
        let mut a: Allocator<u32> = Allocator::new(0, 3);
        a.assign([1, 2, 3]);
        a.assign([3, 4]); // 3 keeps 2; 4 wraps to 0
        assert_eq!(a.get(&3), Some(2));
        assert_eq!(a.get(&4), Some(0));
        a.assign([3, 4, 5]);
        assert_eq!(a.get(&5), Some(1));
    }
}
