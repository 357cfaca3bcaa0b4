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

use cove_model::{ContainerRecord, EndpointRecord, NetworkRecord};

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
    /// Record in `changes` what a change of this record (stored under `key`) affects.
    fn touch(&self, key: &str, changes: &mut Changes);
    /// The group the record is indexed under (an endpoint's container), if any.
    fn group(&self) -> Option<&str> {
        None
    }
}

impl Touches for ContainerRecord {
    fn touch(&self, key: &str, changes: &mut Changes) {
        changes.containers.insert(key.to_string());
    }
}

impl Touches for EndpointRecord {
    fn touch(&self, _key: &str, changes: &mut Changes) {
        changes.containers.insert(self.container_id.clone());
    }
    fn group(&self) -> Option<&str> {
        Some(&self.container_id)
    }
}

impl Touches for NetworkRecord {
    fn touch(&self, _key: &str, changes: &mut Changes) {
        changes.networks = true;
    }
}

/// A map of records by id that tracks its changes and indexes records by group.
#[derive(Debug)]
pub(crate) struct Tracked<V> {
    map: BTreeMap<String, V>,
    by_group: HashMap<String, BTreeSet<String>>,
    changes: Mutex<Changes>,
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked { map: BTreeMap::new(), by_group: HashMap::new(), changes: Mutex::default() }
    }
}

impl<V> Deref for Tracked<V> {
    type Target = BTreeMap<String, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<V: Touches> FromIterator<(String, V)> for Tracked<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
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
    pub(crate) fn insert(&mut self, key: String, value: V) -> Option<V> {
        self.note(&key, &value);
        if let Some(g) = value.group() {
            self.by_group.entry(g.to_string()).or_default().insert(key.clone());
        }
        let old = self.map.insert(key.clone(), value);
        if let Some(o) = &old {
            self.note(&key, o);
            self.ungroup(&key, o);
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
        keys.filter_map(|k| self.map.get(k))
    }

    /// What changed since the last call (and forget it).
    pub(crate) fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, container: &str) -> EndpointRecord {
        EndpointRecord {
            id: id.into(),
            network_id: "n".into(),
            container_id: container.into(),
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
        let mut t: Tracked<EndpointRecord> = Tracked::default();
        t.insert("e1".into(), ep("e1", "c1"));
        t.insert("e2".into(), ep("e2", "c1"));
        t.insert("e3".into(), ep("e3", "c2"));
        let ch = t.take_changes();
        assert_eq!(ch.containers.into_iter().collect::<Vec<_>>(), ["c1", "c2"]);
        assert_eq!(t.take_changes(), Changes::default(), "taking forgets");
        assert_eq!(t.in_group("c1").map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e1", "e2"]);
        // An endpoint moving to another container touches both.
        t.insert("e2".into(), ep("e2", "c3"));
        let ch = t.take_changes();
        assert_eq!(ch.containers.into_iter().collect::<Vec<_>>(), ["c1", "c3"]);
        assert_eq!(t.in_group("c1").count(), 1);
        assert_eq!(t.in_group("c3").count(), 1);
        t.remove("e1");
        assert_eq!(t.in_group("c1").count(), 0);
        assert!(t.take_changes().containers.contains("c1"));
        assert!(t.remove("nope").is_none());
        assert_eq!(t.take_changes(), Changes::default());
    }
}
