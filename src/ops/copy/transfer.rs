//! Copying with shared content keys: blob ids are the same in both repositories, so trees
//! are copied as they are and a blob the target has is never moved. Each missing blob is
//! read from its source pack (neighbours in one ranged read, [`super::ranges`]), opened and
//! verified with the source key, and sealed again with the target key straight into the
//! target's packer ([`Repository::reseal_blob_for`]): nothing is recompressed or staged on
//! disk.
//!
//! Memory: `readers` reads in flight ([`READERS`] unless the source's `-o connections` says
//! otherwise), each at most [`super::ranges::MAX_READ`] (or one blob
//! when larger) plus its re-sealed blobs, beside the packer's bound and the two indexes.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::bounded;

use super::ranges::{self, ReadGroup};
use super::{CopyStats, Counters};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::pack::BlobType;
use crate::format::tree::NodeKind;
use crate::id::BlobId;
use crate::ops::{CancelFlag, Progress};
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{BlobLocation, Index, Repository};

/// Ranged reads of the source in flight at once unless the caller says: enough to hide an
/// object store's latency, few enough to bound memory.
pub const READERS: usize = 4;
/// Sealed tree bytes read and decoded at once while walking (one level of the tree at a
/// time, in batches of about this size).
pub const TREE_BATCH: u64 = 16 << 20;

/// The two repositories and their indexes, and what this run has scheduled already.
pub(crate) struct Mover<'a> {
    pub source: &'a Repository,
    pub src_index: &'a Index,
    pub target: &'a Repository,
    pub dst_index: &'a Index,
    /// Blobs this run has scheduled for the target (not yet in `dst_index`).
    pub claimed: HashSet<BlobId>,
    /// Trees this run has walked.
    visited: HashSet<BlobId>,
    /// Ranged reads of the source in flight at once.
    readers: usize,
}

impl<'a> Mover<'a> {
    pub fn new(
        source: &'a Repository,
        src_index: &'a Index,
        target: &'a Repository,
        dst_index: &'a Index,
        readers: usize,
    ) -> Self {
        Self {
            source,
            src_index,
            target,
            dst_index,
            claimed: HashSet::new(),
            visited: HashSet::new(),
            readers: readers.max(1),
        }
    }

    /// Whether this blob still has to be moved, claiming it if so.
    fn claim(&mut self, id: &BlobId) -> bool {
        !self.dst_index.contains(id) && self.claimed.insert(*id)
    }

    fn location(&self, id: &BlobId) -> Result<BlobLocation> {
        self.src_index
            .get(id)
            .ok_or_else(|| Error::corrupt("blob", id, "not in any index of the source"))
    }

    /// Walks every tree below `root` that this run has not walked yet and returns the
    /// source locations of the blobs the target lacks. Every tree is walked even when the
    /// target holds it: a tree in the target does not prove that its blobs are there (an
    /// interrupted copy or backup indexes tree packs before some data packs).
    ///
    /// Level by level, each level's trees read in batches of at most [`TREE_BATCH`] bytes
    /// with neighbours coalesced ([`super::ranges`]): tree blobs live in tree-only packs, so
    /// a snapshot's trees cost a few requests, not one each. Each tree is read once per run,
    /// so a hostile tree costs at most the trees stored; nothing recurses.
    pub fn missing_below(
        &mut self,
        root: &BlobId,
        c: &Counters,
        cancel: &CancelFlag,
    ) -> Result<Vec<BlobLocation>> {
        let mut out = Vec::new();
        let mut level = Vec::new();
        if self.visited.insert(*root) {
            level.push(self.location(root)?);
        }
        while !level.is_empty() {
            let mut next = Vec::new();
            let mut rest = level.as_slice();
            while !rest.is_empty() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                let mut n = 0;
                let mut bytes = 0u64;
                while n < rest.len() && (n == 0 || bytes < TREE_BATCH) {
                    bytes += u64::from(rest[n].entry.length);
                    n += 1;
                }
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                for (loc, tree) in self.read_trees(batch, c)? {
                    if self.claim(&loc.entry.id) {
                        out.push(loc);
                    }
                    for node in &tree.nodes {
                        match &node.kind {
                            NodeKind::File { content, .. } => {
                                for id in content {
                                    if self.claim(id) {
                                        out.push(self.location(id)?);
                                    }
                                }
                            }
                            NodeKind::Dir { .. } | NodeKind::DirParts { .. } => {
                                for sub in node.kind.dir_parts().unwrap_or(&[]) {
                                    if self.visited.insert(*sub) {
                                        next.push(self.location(sub)?);
                                    }
                                }
                            }
                            NodeKind::Symlink { .. } | NodeKind::Fifo => {}
                        }
                    }
                }
            }
            level = next;
        }
        Ok(out)
    }

    /// Reads, verifies and decodes the trees at `locations` with coalesced reads; a tree
    /// whose copy there is damaged is read from any other copy the source holds.
    fn read_trees(
        &self,
        locations: &[BlobLocation],
        c: &Counters,
    ) -> Result<Vec<(BlobLocation, crate::format::tree::Tree)>> {
        let mut out = Vec::with_capacity(locations.len());
        for g in ranges::group(locations.to_vec()) {
            let bytes =
                self.source
                    .backend()
                    .read_range(FileType::Pack, &g.pack.0, g.offset, g.len)?;
            c.tree_requests.fetch_add(1, Ordering::Relaxed);
            for e in &g.entries {
                let start = (u64::from(e.offset) - g.offset) as usize;
                let opened = match bytes.get(start..start + e.length as usize) {
                    Some(b) => self.source.open_blob(e, b),
                    None => Err(Error::corrupt("pack", g.pack, "a read came back short")),
                };
                let plain = match opened {
                    Ok(p) => p,
                    Err(Error::Corrupt { .. }) => self.source.read_blob(self.src_index, &e.id)?,
                    Err(err) => return Err(err),
                };
                let tree = crate::format::tree::Tree::decode(&plain)
                    .map_err(|err| Error::corrupt("tree", e.id, err))?;
                out.push((
                    BlobLocation {
                        pack: g.pack,
                        entry: *e,
                    },
                    tree,
                ));
            }
        }
        Ok(out)
    }

    /// Counts what moving `locations` would cost, moving nothing (`--dry-run`).
    pub fn count(&self, locations: &[BlobLocation], c: &Counters) {
        for l in locations {
            c.add_blob(
                l.entry.blob_type,
                u64::from(l.entry.raw_len),
                u64::from(l.entry.length),
            );
        }
        let groups = ranges::group(locations.to_vec());
        c.read_requests
            .fetch_add(groups.len() as u64, Ordering::Relaxed);
        c.bytes_read
            .fetch_add(groups.iter().map(|g| g.len).sum::<u64>(), Ordering::Relaxed);
    }

    /// Moves `locations` into `packer`: `readers` threads each take one coalesced read at
    /// a time, re-seal its blobs and hand them to the packer. The first error stops the
    /// others and is returned.
    pub fn transfer(
        &self,
        locations: Vec<BlobLocation>,
        packer: &Packer,
        c: &Counters,
        progress: &dyn Progress,
        cancel: &CancelFlag,
    ) -> Result<()> {
        let groups = ranges::group(locations);
        let (tx, rx) = bounded::<ReadGroup>(self.readers);
        let stop = AtomicBool::new(false);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.readers {
                let rx = rx.clone();
                let (stop, first_error) = (&stop, &first_error);
                s.spawn(move || {
                    for g in rx {
                        if stop.load(Ordering::Relaxed) {
                            continue; // drain, so the sender never blocks
                        }
                        let r = if cancel.load(Ordering::Relaxed) {
                            Err(Error::Interrupted)
                        } else {
                            self.move_group(&g, packer, c, progress)
                        };
                        if let Err(e) = r {
                            stop.store(true, Ordering::Relaxed);
                            if let Ok(mut f) = first_error.lock() {
                                f.get_or_insert(e);
                            }
                        }
                    }
                });
            }
            drop(rx);
            for g in groups {
                if stop.load(Ordering::Relaxed) || tx.send(g).is_err() {
                    break;
                }
            }
            drop(tx);
        });
        match first_error.into_inner() {
            Ok(Some(e)) => Err(e),
            Ok(None) => Ok(()),
            Err(_) => Err(Error::InvalidInput("a copy reader panicked".into())),
        }
    }

    fn move_group(
        &self,
        g: &ReadGroup,
        packer: &Packer,
        c: &Counters,
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut bytes =
            self.source
                .backend()
                .read_range(FileType::Pack, &g.pack.0, g.offset, g.len)?;
        c.read_requests.fetch_add(1, Ordering::Relaxed);
        c.bytes_read.fetch_add(g.len, Ordering::Relaxed);
        progress.bytes(g.len);
        for e in &g.entries {
            let start = (u64::from(e.offset) - g.offset) as usize;
            let end = start + e.length as usize;
            let sealed = match bytes.get_mut(start..end) {
                Some(b) => self.source.reseal_blob_for(self.target, e, b),
                None => Err(Error::corrupt("pack", g.pack, "a read came back short")),
            };
            let sealed = match sealed {
                Ok(s) => s,
                // A damaged copy: any other copy the source holds will do.
                Err(first @ Error::Corrupt { .. }) => self.reseal_other_copy(g, e, first, c)?,
                Err(e) => return Err(e),
            };
            packer.add(SealedBlob {
                blob_type: e.blob_type,
                id: e.id,
                raw_len: e.raw_len,
                sealed,
            })?;
            c.add_blob(e.blob_type, u64::from(e.raw_len), u64::from(e.length));
        }
        Ok(())
    }

    fn reseal_other_copy(
        &self,
        g: &ReadGroup,
        e: &crate::format::pack::PackEntry,
        first: Error,
        c: &Counters,
    ) -> Result<Vec<u8>> {
        for other in self.src_index.locations(&e.id) {
            if other.pack == g.pack && other.entry.offset == e.offset {
                continue;
            }
            let Ok(mut b) = self.source.backend().read_range(
                FileType::Pack,
                &other.pack.0,
                u64::from(other.entry.offset),
                u64::from(other.entry.length),
            ) else {
                continue;
            };
            c.read_requests.fetch_add(1, Ordering::Relaxed);
            if let Ok(s) = self
                .source
                .reseal_blob_for(self.target, &other.entry, &mut b)
            {
                return Ok(s);
            }
        }
        Err(first)
    }
}

impl Counters {
    pub(crate) fn add_blob(&self, t: BlobType, raw: u64, sealed: u64) {
        match t {
            BlobType::Data => &self.data_blobs,
            BlobType::Tree => &self.tree_blobs,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.bytes_raw.fetch_add(raw, Ordering::Relaxed);
        self.bytes_sealed.fetch_add(sealed, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CopyStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CopyStats {
            data_blobs: l(&self.data_blobs),
            tree_blobs: l(&self.tree_blobs),
            bytes_raw: l(&self.bytes_raw),
            bytes_sealed: l(&self.bytes_sealed),
            bytes_read: l(&self.bytes_read),
            read_requests: l(&self.read_requests),
            tree_requests: l(&self.tree_requests),
            files_rechunked: l(&self.files_rechunked),
            packs_written: l(&self.packs_written),
            packs_adopted: l(&self.packs_adopted),
        }
    }
}
