//! The metadata cache: a [`Backend`] wrapper that keeps a local copy of a repository's key
//! files, index files, snapshots and whole tree packs, so a second `snapshots`, `ls`, `find`
//! or backup against a remote repository downloads no metadata it already has.
//!
//! Owns what is cached and when a copy is trusted; the files themselves are [`store`]'s.
//! Never cached: the config (the one object that is replaced, and not named by its hash, so
//! a copy could not be told stale) and locks (short-lived, and their whole point is being
//! current). Data packs are not cached either: a restore reads each once.
//!
//! Why a copy can never make an operation wrong, only slower (docs/DESIGN.md, "Cache"):
//!
//! - Every object is named by the BLAKE3 of its bytes (FORMAT §3), so a copy is checked
//!   against its name before it is served: a metadata object on every read, a tree pack once
//!   per process before its first range is served (streamed through the hash; the blob's
//!   own authentication still covers each range). A copy that fails is removed and the
//!   object fetched from storage.
//! - A metadata object is served from its copy only if this process knows it exists in
//!   storage: named in the latest listing of its type, or written or read here since. So a
//!   snapshot another machine forgot is never shown; a listing also removes copies it does
//!   not name. Tree packs are served only while the index just loaded names them tree-only
//!   ([`PackHint::TreePacks`], which also removes copies of packs it no longer names), and a
//!   listing of `data/` removes copies of packs gone from storage. Even a copy of a pack a
//!   prune deleted after the index was loaded holds the right bytes for every blob the
//!   index places in it.
//! - Every cache failure (a full disk, a permission, a file removed by another process) is
//!   a miss: the call goes to storage, whose answer is returned as it is.
//!
//! `repair` does not use the cache (the CLI decides): it must see storage. `check` uses a
//! fresh one in a temporary folder, so it reads everything from storage, and tree packs once.

pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{Backend, BackendError, ErrorKind, FileType, PackHint, TempFile};
use crate::format::pack::MAX_PACK_LEN;
use crate::id::Id;
pub use store::{CacheRoot, RepoCache};

/// What the cache did, for the diagnostics line and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from a copy (a tree pack counts each range).
    pub hits: u64,
    /// Objects fetched from storage and kept.
    pub stored: u64,
    /// Copies removed because they did not match their name or size.
    pub dropped_corrupt: u64,
    /// Copies removed because storage no longer has the object.
    pub dropped_stale: u64,
}

impl std::fmt::Display for CacheStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cache.hits={} cache.stored={} cache.dropped_corrupt={} cache.dropped_stale={}",
            self.hits, self.stored, self.dropped_corrupt, self.dropped_stale
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    stored: AtomicU64,
    dropped_corrupt: AtomicU64,
    dropped_stale: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Whether whole objects of this type are cached.
fn is_metadata(t: FileType) -> bool {
    matches!(t, FileType::Key | FileType::Index | FileType::Snapshot)
}

/// Caches metadata of `inner` in one repository's cache folder; see the module header.
#[derive(Debug)]
pub struct CacheBackend {
    inner: Arc<dyn Backend>,
    store: RepoCache,
    /// Per metadata type, the objects known to exist in storage with their sizes: the
    /// latest listing, plus what this process wrote or read since, less what it deleted.
    known: Mutex<HashMap<FileType, HashMap<Id, u64>>>,
    /// Tree-only packs of the loaded index, and those this process is writing.
    tree_packs: RwLock<HashSet<Id>>,
    /// Tree packs whose copy matched its name in this process.
    verified: Mutex<HashSet<Id>>,
    /// Tree packs that could not be kept (a full cache disk, a damaged pack in storage):
    /// read by range from storage, not fetched whole again and again.
    uncacheable: Mutex<HashSet<Id>>,
    /// One whole-pack fetch per pack at a time (the others wait for it and use the copy).
    fetching: Mutex<HashMap<Id, Arc<Mutex<()>>>>,
    /// Listings started by [`Backend::list_ahead`], each taken by the next `list` of its type.
    ahead: Mutex<HashMap<FileType, Ahead>>,
    counters: Counters,
}

/// A listing running in its own thread.
type Ahead = std::thread::JoinHandle<Result<Vec<(Id, u64)>, BackendError>>;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The sets only ever grow or shrink by whole entries: a panic elsewhere cannot leave
    // one half-updated, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CacheBackend {
    /// Caches `inner`'s metadata in `store`.
    pub fn new(inner: Arc<dyn Backend>, store: RepoCache) -> Self {
        Self {
            inner,
            store,
            known: Mutex::default(),
            tree_packs: RwLock::default(),
            verified: Mutex::default(),
            uncacheable: Mutex::default(),
            fetching: Mutex::default(),
            ahead: Mutex::default(),
            counters: Counters::default(),
        }
    }

    /// The cache folder.
    pub fn store(&self) -> &RepoCache {
        &self.store
    }

    /// What the cache did so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            stored: c.stored.load(Ordering::Relaxed),
            dropped_corrupt: c.dropped_corrupt.load(Ordering::Relaxed),
            dropped_stale: c.dropped_stale.load(Ordering::Relaxed),
        }
    }

    fn known_len(&self, t: FileType, id: &Id) -> Option<u64> {
        locked(&self.known).get(&t)?.get(id).copied()
    }

    fn note_exists(&self, t: FileType, id: &Id, len: u64) {
        locked(&self.known).entry(t).or_default().insert(*id, len);
    }

    fn drop_corrupt(&self, t: FileType, id: &Id) {
        self.store.remove(t, id);
        locked(&self.verified).remove(id);
        bump(&self.counters.dropped_corrupt);
    }

    /// Removes the copies of type `t` that `present` does not name. Built from the copies
    /// (few) rather than from `present` (a listing of every pack may be long).
    fn drop_absent<'a>(&self, t: FileType, present: impl Iterator<Item = &'a Id>) {
        let mut gone: HashSet<Id> = self.store.ids(t).into_iter().collect();
        if gone.is_empty() {
            return;
        }
        for id in present {
            gone.remove(id);
        }
        for id in gone {
            self.store.remove(t, &id);
            locked(&self.verified).remove(&id);
            bump(&self.counters.dropped_stale);
        }
    }

    fn is_tree_pack(&self, id: &Id) -> bool {
        self.tree_packs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    /// A metadata object from its copy when storage is known to have it and the copy
    /// matches its name, else from storage (and then kept).
    fn read_metadata(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
        if let Some(len) = self.known_len(t, id) {
            match self.store.get(t, id, len) {
                Some(bytes) if Id::of_stored(&bytes) == *id => {
                    bump(&self.counters.hits);
                    return Ok(bytes);
                }
                Some(_) => self.drop_corrupt(t, id),
                // Present with another size: damaged (a listing gives the stored size).
                None if self.store.len(t, id).is_some() => self.drop_corrupt(t, id),
                None => {}
            }
        }
        let bytes = self.inner.read(t, id)?;
        if Id::of_stored(&bytes) == *id {
            self.note_exists(t, id, bytes.len() as u64);
            if self.store.put(t, id, &[&bytes]).is_ok() {
                bump(&self.counters.stored);
            }
        }
        Ok(bytes)
    }

    /// Whether the tree pack's copy can be served: checked against its name once per
    /// process (a copy that fails is removed).
    fn usable_pack(&self, id: &Id) -> bool {
        if locked(&self.verified).contains(id) {
            return true;
        }
        if self.store.len(FileType::Pack, id).is_none() {
            return false;
        }
        match self.store.hash(FileType::Pack, id) {
            Ok(h) if h == *id => {
                locked(&self.verified).insert(*id);
                true
            }
            Ok(_) => {
                self.drop_corrupt(FileType::Pack, id);
                false
            }
            Err(_) => false,
        }
    }

    /// A range of a tree pack: from its copy, fetching the pack whole first when there is
    /// none. `None` means "ask storage for the range" (the pack cannot be kept, or the copy
    /// vanished), so storage's own answer, error included, is what the caller sees.
    fn tree_pack_range(&self, id: &Id, offset: u64, len: u64) -> Option<Vec<u8>> {
        if locked(&self.uncacheable).contains(id) {
            return None;
        }
        if !self.usable_pack(id) {
            let gate = locked(&self.fetching).entry(*id).or_default().clone();
            let _one_fetch = locked(&gate);
            if !self.usable_pack(id) {
                return self.fetch_pack(id, offset, len);
            }
        }
        match self.store.read_range(FileType::Pack, id, offset, len) {
            Ok(b) => {
                bump(&self.counters.hits);
                Some(b)
            }
            Err(_) => {
                // Removed by another process, or shorter than the range: verify again next
                // time; storage answers this one.
                locked(&self.verified).remove(id);
                None
            }
        }
    }

    /// Fetches a tree pack whole (its size first, so nothing over the pack cap is read),
    /// keeps it if it matches its name, and returns the range asked for from the bytes.
    fn fetch_pack(&self, id: &Id, offset: u64, len: u64) -> Option<Vec<u8>> {
        let size = self.inner.size(FileType::Pack, id).ok()?;
        if size > MAX_PACK_LEN {
            locked(&self.uncacheable).insert(*id);
            return None;
        }
        let bytes = self.inner.read_range(FileType::Pack, id, 0, size).ok()?;
        let kept =
            Id::of_stored(&bytes) == *id && self.store.put(FileType::Pack, id, &[&bytes]).is_ok();
        if kept {
            bump(&self.counters.stored);
            locked(&self.verified).insert(*id);
        } else {
            locked(&self.uncacheable).insert(*id);
        }
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        bytes.get(start..end).map(<[u8]>::to_vec)
    }

    /// Writes through to storage, keeping a copy of what storage accepted: staged while the
    /// upload runs (no second buffer of a pack), published only when storage has the object.
    fn write_through(
        &self,
        t: FileType,
        id: &Id,
        parts: Vec<Vec<u8>>,
        upload: impl FnOnce(Vec<Vec<u8>>) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let keep = is_metadata(t) || (t == FileType::Pack && self.is_tree_pack(id));
        if !keep {
            return upload(parts);
        }
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let mut h = blake3::Hasher::new();
        for s in &slices {
            h.update(s);
        }
        // Bytes not named by their hash are never kept (not a cista object).
        let named = Id(*h.finalize().as_bytes()) == *id;
        let staged = named
            .then(|| self.store.stage(t, id, &slices).ok())
            .flatten();
        drop(slices);
        let r = upload(parts);
        // "Already exists" is success for a named object: storage holds these very bytes.
        // For anything else it says nothing about what storage holds.
        let landed = match &r {
            Ok(()) => true,
            Err(e) => named && e.kind == ErrorKind::AlreadyExists,
        };
        if landed {
            if is_metadata(t) {
                self.note_exists(t, id, len);
            }
            if let Some(s) = staged
                && s.publish().is_ok()
            {
                bump(&self.counters.stored);
                if t == FileType::Pack {
                    locked(&self.verified).insert(*id);
                }
            }
        }
        r
    }
}

impl Backend for CacheBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.inner.create()
    }

    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
        let pending = locked(&self.ahead).remove(&t);
        // A listing thread that panicked answered nothing: list again here.
        let listed = match pending.map(std::thread::JoinHandle::join) {
            Some(Ok(listed)) => listed?,
            Some(Err(_)) | None => self.inner.list(t)?,
        };
        if is_metadata(t) || t == FileType::Pack {
            self.drop_absent(t, listed.iter().map(|(id, _)| id));
        }
        if is_metadata(t) {
            locked(&self.known).insert(t, listed.iter().copied().collect());
        }
        Ok(listed)
    }

    /// Lists `t` in a thread of its own (storage's round trips overlap the caller's), for the
    /// next `list(t)`; no thread, no hint.
    fn list_ahead(&self, t: FileType) {
        let inner = self.inner.clone();
        if let Ok(h) = std::thread::Builder::new()
            .name("cista-list".into())
            .spawn(move || inner.list(t))
        {
            // A replaced listing finishes on its own; nobody waits for it.
            locked(&self.ahead).insert(t, h);
        }
    }

    fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
        if is_metadata(t) {
            return self.read_metadata(t, id);
        }
        // A whole tree pack (a prune's repacking): the copy, checked as it is read.
        if t == FileType::Pack
            && self.is_tree_pack(id)
            && let Some(len) = self.store.len(t, id)
        {
            match self.store.get(t, id, len) {
                Some(bytes) if Id::of_stored(&bytes) == *id => {
                    bump(&self.counters.hits);
                    return Ok(bytes);
                }
                _ => self.drop_corrupt(t, id),
            }
        }
        self.inner.read(t, id)
    }

    fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BackendError> {
        crate::backend::range_through_into(self, t, id, offset, len)
    }

    fn read_range_into(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        if t == FileType::Pack
            && self.is_tree_pack(id)
            && let Some(b) = self.tree_pack_range(id, offset, len)
        {
            *buf = b;
            return Ok(());
        }
        self.inner.read_range_into(t, id, offset, len, buf)
    }

    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
        if is_metadata(t)
            && let Some(len) = self.known_len(t, id)
        {
            return Ok(len);
        }
        let n = self.inner.size(t, id)?;
        if is_metadata(t) {
            self.note_exists(t, id, n);
        }
        Ok(n)
    }

    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
        self.write_through(t, id, vec![bytes], |mut p| {
            self.inner.write(t, id, p.pop().unwrap_or_default())
        })
    }

    fn write_parts(&self, t: FileType, id: &Id, parts: Vec<Vec<u8>>) -> Result<(), BackendError> {
        self.write_through(t, id, parts, |p| self.inner.write_parts(t, id, p))
    }

    fn replace_config(&self, bytes: Vec<u8>) -> Result<(), BackendError> {
        self.inner.replace_config(bytes)
    }

    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
        let r = self.inner.delete(t, id);
        self.store.remove(t, id);
        if let Some(m) = locked(&self.known).get_mut(&t) {
            m.remove(id);
        }
        locked(&self.verified).remove(id);
        r
    }

    fn temp_files(&self) -> Result<Vec<TempFile>, BackendError> {
        self.inner.temp_files()
    }

    fn hint(&self, hint: PackHint<'_>) {
        match hint {
            PackHint::TreePacks(ids) => {
                self.drop_absent(FileType::Pack, ids.iter());
                let set: HashSet<Id> = ids.iter().copied().collect();
                *self
                    .tree_packs
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = set;
            }
            PackHint::NewTreePack(id) => {
                self.tree_packs
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(*id);
            }
        }
        self.inner.hint(hint);
    }
}

#[cfg(test)]
mod tests;
