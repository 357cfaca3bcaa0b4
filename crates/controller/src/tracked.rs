//! Record maps that remember which containers (and whether any network) changed since the
//! firewall last looked, so the firewall is updated from what changed alone: its cost per
//! operation does not grow with the number of containers on the host.
//!
//! Reads go through `Deref` to the underlying `BTreeMap`; the only ways to change a map
//! are [`Tracked::insert`] and [`Tracked::remove`], which record the change, so no change
//! can slip past the firewall.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::Mutex;

use std::borrow::Borrow;

use cove_model::{
    ContainerId, ContainerRecord, EndpointId, EndpointRecord, NetworkId, NetworkRecord,
};

/// What changed since the last [`Tracked::take_changes`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Containers whose record or endpoints changed.
    pub(crate) containers: BTreeSet<String>,
    /// Whether any network was created, changed or removed.
    pub(crate) networks: bool,
}

impl Changes {
    /// Fold `other` into `self`.
    pub(crate) fn merge(&mut self, other: Changes) {
        self.containers.extend(other.containers);
        self.networks |= other.networks;
    }
}

/// A record type whose changes matter to the firewall.
pub(crate) trait Touches {
    /// The record's id type, its key in the map.
    type Key: Ord + Clone + Borrow<str> + std::fmt::Debug;
    /// Record in `changes` what a change of this record (stored under `key`) affects.
    fn touch(&self, key: &str, changes: &mut Changes);
    /// The group the record is indexed under (an endpoint's container), if any.
    fn group(&self) -> Option<&str> {
        None
    }
}

impl Touches for ContainerRecord {
    type Key = ContainerId;
    fn touch(&self, key: &str, changes: &mut Changes) {
        changes.containers.insert(key.to_string());
    }
}

impl Touches for EndpointRecord {
    type Key = EndpointId;
    fn touch(&self, _key: &str, changes: &mut Changes) {
        changes.containers.insert(self.container_id.to_string());
    }
    fn group(&self) -> Option<&str> {
        Some(&self.container_id)
    }
}

impl Touches for NetworkRecord {
    type Key = NetworkId;
    fn touch(&self, _key: &str, changes: &mut Changes) {
        changes.networks = true;
    }
}

/// A map of records by id that tracks its changes and indexes records by group.
#[derive(Debug)]
pub(crate) struct Tracked<V: Touches> {
    map: BTreeMap<V::Key, V>,
    by_group: HashMap<String, BTreeSet<V::Key>>,
    changes: Mutex<Changes>,
}

impl<V: Touches> Default for Tracked<V> {
    fn default() -> Self {
        Tracked { map: BTreeMap::new(), by_group: HashMap::new(), changes: Mutex::default() }
    }
}

impl<V: Touches> Deref for Tracked<V> {
    type Target = BTreeMap<V::Key, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<V: Touches> FromIterator<(V::Key, V)> for Tracked<V> {
    fn from_iter<I: IntoIterator<Item = (V::Key, V)>>(iter: I) -> Self {
        let mut t = Tracked::default();
        for (k, v) in iter {
            t.insert(k, v);
        }
        t
    }
}

impl<V: Touches> Tracked<V> {
    fn note(&mut self, key: &str, v: &V) {
        v.touch(key, self.changes.get_mut().unwrap_or_else(|p| p.into_inner()));
    }

    /// Insert or replace a record.
    pub(crate) fn insert(&mut self, key: V::Key, value: V) -> Option<V> {
        self.note(key.borrow(), &value);
        if let Some(g) = value.group() {
            self.by_group.entry(g.to_string()).or_default().insert(key.clone());
        }
        let old = self.map.insert(key.clone(), value);
        if let Some(o) = &old {
            self.note(key.borrow(), o);
            self.ungroup(key.borrow(), o);
        }
        old
    }

    /// Remove a record.
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let old = self.map.remove(key)?;
        self.note(key, &old);
        self.ungroup(key, &old);
        Some(old)
    }

    fn ungroup(&mut self, key: &str, old: &V) {
        let Some(g) = old.group() else { return };
        // The replacement may sit in the same group under the same key.
        if self.map.get(key).and_then(Touches::group) == Some(g) {
            return;
        }
        if let Some(set) = self.by_group.get_mut(g) {
            set.remove(key);
            if set.is_empty() {
                self.by_group.remove(g);
            }
        }
    }

    /// The records of group `g` (an endpoint's container), in key order.
    pub(crate) fn in_group<'a>(&'a self, g: &str) -> impl Iterator<Item = &'a V> + 'a {
        let keys = self.by_group.get(g).into_iter().flatten();
        keys.filter_map(|k| self.map.get(k.borrow()))
    }

    /// What changed since the last call (and forget it).
    pub(crate) fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-hex id made of one repeated character.
    fn id<T: std::str::FromStr>(c: char) -> T
    where
        T::Err: std::fmt::Debug,
    {
        c.to_string().repeat(64).parse().unwrap()
    }

    fn ep(e: char, container: char) -> EndpointRecord {
        EndpointRecord {
            id: id(e),
            network_id: id('f'),
            container_id: id(container),
            ifname: "eth0".into(),
            host_ifname: Some("cv0".into()),
            mac: cove_model::MacAddr([2, 0x42, 0, 0, 0, 1]),
            ipv4: None,
            ipv6: None,
            gateway4: None,
            gateway6: None,
            aliases: vec![],
        }
    }

    #[test]
    fn changes_and_groups_follow_inserts_and_removes() {
        let (c1, c2, c3) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let mut t: Tracked<EndpointRecord> = Tracked::default();
        t.insert(id('1'), ep('1', 'a'));
        t.insert(id('2'), ep('2', 'a'));
        t.insert(id('3'), ep('3', 'b'));
        let ch = t.take_changes();
        assert_eq!(ch.containers.into_iter().collect::<Vec<_>>(), [c1.clone(), c2]);
        assert_eq!(t.take_changes(), Changes::default(), "taking forgets");
        assert_eq!(
            t.in_group(&c1).map(|e| e.id.clone()).collect::<Vec<_>>(),
            [id::<EndpointId>('1'), id('2')]
        );
        // An endpoint moving to another container touches both.
        t.insert(id('2'), ep('2', 'c'));
        let ch = t.take_changes();
        assert_eq!(ch.containers.into_iter().collect::<Vec<_>>(), [c1.clone(), c3.clone()]);
        assert_eq!(t.in_group(&c1).count(), 1);
        assert_eq!(t.in_group(&c3).count(), 1);
        t.remove(&"1".repeat(64));
        assert_eq!(t.in_group(&c1).count(), 0);
        assert!(t.take_changes().containers.contains(&c1));
        assert!(t.remove("nope").is_none());
        assert_eq!(t.take_changes(), Changes::default());
    }
}
