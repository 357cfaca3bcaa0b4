//! rtnetlink handles: one socket for the daemon's own netns (a second one there for
//! forwarding and neighbour entries in bulk, `crate::entries`, and a third for large dumps,
//! `crate::dumper`), and one per sandbox netns,
//! opened on a throwaway thread that entered the netns, then cached by path.
//!
//! The sandbox cache is bounded (least recently used out): each socket is a file descriptor
//! and some buffers, and an open socket keeps its netns alive, so thousands of idle
//! sandboxes must not each hold one. Re-opening an evicted socket costs one thread and
//! `setns` (about 0.1 ms).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cove_drivers::plan::Netns;
use rtnetlink::Handle;

use crate::error::Cause;
use crate::netns::{self, NsId};

/// The daemon's netlink handles.
#[derive(Debug)]
pub(crate) struct Handles {
    rt: tokio::runtime::Handle,
    host: Handle,
    nsfs_dev: u64,
    netns: Mutex<Cache>,
    reaper: std::sync::Arc<crate::reaper::Reaper>,
    entries: crate::entries::Entries,
    dumper: crate::dumper::Dumper,
}

/// How many sandbox sockets stay open at most.
const CACHE_CAPACITY: usize = 64;

/// Sandbox handles by netns path, with a use clock for LRU eviction.
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<PathBuf, Entry>,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    id: NsId,
    handle: Handle,
    last_use: u64,
}

impl Cache {
    fn get(&mut self, path: &Path, id: NsId) -> Option<Handle> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.entries.get_mut(path)?;
        if e.id != id {
            // Another netns is mounted there now: the old socket must not pin the old one.
            self.entries.remove(path);
            return None;
        }
        e.last_use = clock;
        Some(e.handle.clone())
    }

    fn insert(&mut self, path: &Path, id: NsId, handle: Handle) {
        self.clock += 1;
        if self.entries.len() >= CACHE_CAPACITY && !self.entries.contains_key(path) {
            let oldest =
                self.entries.iter().min_by_key(|(_, e)| e.last_use).map(|(p, _)| p.clone());
            if let Some(p) = oldest {
                self.entries.remove(&p);
            }
        }
        self.entries.insert(path.to_owned(), Entry { id, handle, last_use: self.clock });
    }
}

/// Open an rtnetlink socket in the calling thread's netns, driven by `rt`.
///
/// The connection task ends, closing the socket (and releasing its netns), once every clone
/// of the returned handle is dropped.
pub(crate) fn connect(rt: &tokio::runtime::Handle) -> Result<Handle, Cause> {
    let _enter = rt.enter();
    let (mut conn, handle, unsolicited) = rtnetlink::new_connection()?;
    // Our dump loop sees NLMSG_DONE, which can carry NLM_F_DUMP_INTR.
    conn.set_forward_done(true);
    // Nothing subscribes to multicast groups; a closed channel lets the connection end.
    drop(unsolicited);
    rt.spawn(conn);
    Ok(handle)
}

impl Handles {
    /// Handles for the calling thread's netns; must run inside a tokio runtime.
    pub(crate) fn new() -> Result<Self, Cause> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| Cause::Protocol(format!("cove-kernel needs a tokio runtime: {e}")))?;
        let nsfs_dev = netns::nsfs_dev()?;
        let host = connect(&rt)?;
        let reaper = crate::reaper::Reaper::spawn(&rt, host.clone());
        let entries = crate::entries::Entries::connect(&rt)?;
        let dumper = {
            let _enter = rt.enter();
            crate::dumper::Dumper::open()?
        };
        Ok(Self {
            rt,
            host,
            nsfs_dev,
            netns: Mutex::new(Cache::default()),
            reaper,
            entries,
            dumper,
        })
    }

    /// The runtime the connections run on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    /// The device number of nsfs (to tell netns mounts from plain files).
    pub(crate) fn nsfs_dev(&self) -> u64 {
        self.nsfs_dev
    }

    /// The reaper of condemned links.
    pub(crate) fn reaper(&self) -> &crate::reaper::Reaper {
        &self.reaper
    }

    /// The daemon's netns socket for forwarding and neighbour entries in bulk.
    pub(crate) fn entries(&self) -> &crate::entries::Entries {
        &self.entries
    }

    /// The daemon's netns socket for the large dumps (every link, address, route), read
    /// one datagram at a time (`crate::dumper`).
    pub(crate) fn dumper(&self) -> &crate::dumper::Dumper {
        &self.dumper
    }

    /// The daemon's own netns handle.
    pub(crate) fn host(&self) -> &Handle {
        &self.host
    }

    /// The handle for `ns`, connecting (on a throwaway thread) if needed.
    pub(crate) async fn get(&self, ns: &Netns) -> Result<Handle, Cause> {
        match ns {
            Netns::Host => Ok(self.host.clone()),
            Netns::Path(p) => self.for_path(p).await,
        }
    }

    /// The handle for the netns mounted at `path`. The cache entry is checked against the
    /// namespace currently mounted there, so a path reused for a new netns gets a new socket.
    pub(crate) async fn for_path(&self, path: &Path) -> Result<Handle, Cause> {
        let id = match netns::ns_id(path, self.nsfs_dev) {
            Ok(id) => id,
            Err(c) => {
                // Unmounted behind our back: do not keep its netns alive.
                self.forget(path);
                return Err(c);
            }
        };
        if let Some(h) = self.lock().get(path, id) {
            return Ok(h);
        }
        let (rt, dev, p) = (self.rt.clone(), self.nsfs_dev, path.to_owned());
        let (id, h) = netns::on_thread(move || {
            netns::enter(&p, dev)?;
            // Identity of what we actually entered (the mount could change in between).
            let id = netns::ns_id(Path::new("/proc/thread-self/ns/net"), dev)?;
            Ok((id, connect(&rt)?))
        })
        .await?;
        self.insert(path, id, h.clone());
        Ok(h)
    }

    /// Cache `handle` for the netns `id` mounted at `path`.
    pub(crate) fn insert(&self, path: &Path, id: NsId, handle: Handle) {
        self.lock().insert(path, id, handle);
    }

    /// Drop the cached handle for `path` (its socket closes once in-flight requests finish).
    pub(crate) fn forget(&self, path: &Path) {
        self.lock().entries.remove(path);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.netns.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cache_is_bounded_lru_and_checks_identity() {
        let rt = tokio::runtime::Handle::current();
        let h = connect(&rt).unwrap();
        let mut c = Cache::default();
        let path = |i: usize| PathBuf::from(format!("/run/netns/s{i}"));
        for i in 0..CACHE_CAPACITY {
            c.insert(&path(i), (1, i as u64), h.clone());
        }
        assert!(c.get(&path(0), (1, 0)).is_some()); // s0 is now the most recent
        c.insert(&path(CACHE_CAPACITY), (1, 999), h.clone());
        assert_eq!(c.entries.len(), CACHE_CAPACITY);
        assert!(c.entries.contains_key(&path(0)));
        assert!(!c.entries.contains_key(&path(1)), "least recently used is evicted");
        // A different netns mounted at a cached path is a miss and drops the stale entry.
        assert!(c.get(&path(2), (1, 12345)).is_none());
        assert!(!c.entries.contains_key(&path(2)));
    }
}
