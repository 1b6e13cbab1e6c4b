//! Index files: writing them, loading them into one in-memory [`Index`], and finding again
//! from pack headers what a damaged or missing index file described.
//!
//! One loader for every command (docs/FORMAT.md §14, §18): readers skip superseded files and
//! damaged ones (recording them in the index, so the CLI can warn and `check` can report);
//! when a file was damaged, the packs no readable file names are indexed in memory from their
//! headers, so one bad index file costs nothing that the packs still hold. Backups go further
//! and adopt orphan packs durably, but only after reading each one whole
//! ([`Repository::adopt_orphan_packs`]): a blob that will be deduplicated against must be
//! known to open.

use std::collections::HashSet;
use std::sync::Mutex;

use rayon::prelude::*;

use super::index::IndexBuilder;
use super::{INDEX_FILE_BLOBS, Index, Repository};
use crate::backend::{ErrorKind, FileType, PackHint};
use crate::compress;
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack, MAX_INDEX_LEN, ObsoletePack};
use crate::format::pack::{MAX_PACK_LEN, PackHeader};
use crate::format::{ObjectKind, split_payload};
use crate::id::{Id, IndexId, PackId};

/// What adopting orphan packs did.
#[derive(Debug, Default)]
pub struct Adoption {
    /// Packs verified and written into a new index file.
    pub adopted: usize,
    /// Packs that failed verification: not adopted, their blobs are not reused.
    pub rejected: Vec<(PackId, Error)>,
}

/// Writes index files from packs given one at a time, so a whole index is never held
/// decoded: a file is stored whenever the next pack would take it past [`INDEX_FILE_BLOBS`]
/// entries. `supersedes` goes only into the last file, written after all the others
/// (FORMAT §14): a reader that sees it has already got every file it completes, so the
/// files it replaces are never ignored before their content is visible elsewhere.
#[derive(Debug)]
pub struct IndexWriter<'r> {
    repo: &'r Repository,
    file: IndexFile,
    blobs: usize,
    written: Vec<IndexId>,
}

impl IndexWriter<'_> {
    fn make_room(&mut self, n: usize) -> Result<()> {
        if self.blobs + n > INDEX_FILE_BLOBS && self.blobs > 0 {
            let file = std::mem::take(&mut self.file);
            self.written.push(self.repo.write_index_file(&file)?);
            self.blobs = 0;
        }
        self.blobs += n;
        Ok(())
    }

    /// Adds a live pack.
    pub fn add_live(&mut self, pack: IndexPack) -> Result<()> {
        self.make_room(pack.blobs.len())?;
        self.file.packs.push(pack);
        Ok(())
    }

    /// Adds a pack pending deletion.
    pub fn add_obsolete(&mut self, pack: ObsoletePack) -> Result<()> {
        self.make_room(pack.blobs.len())?;
        self.file.obsolete.push(pack);
        Ok(())
    }

    /// Stores the last file, naming `supersedes` (a file with no packs when only that is
    /// left to say), and returns every file written, in order. With nothing added and
    /// nothing superseded, nothing is written.
    pub fn finish(mut self, supersedes: Vec<IndexId>) -> Result<Vec<IndexId>> {
        let f = &self.file;
        if self.blobs > 0 || !supersedes.is_empty() || !f.packs.is_empty() || !f.obsolete.is_empty()
        {
            self.file.supersedes = supersedes;
            self.written.push(self.repo.write_index_file(&self.file)?);
        }
        Ok(self.written)
    }
}

/// At most this many index files are read and decoded at once, whatever the number of
/// cores: each costs up to twice its size in transient memory (the file, decrypted in place,
/// and its decoded form), so loading holds the index plus at most
/// `2 × MAX_PARALLEL_LOADS × largest file` beside it (docs/DESIGN.md, "Index").
const MAX_PARALLEL_LOADS: usize = 4;

/// Runs `f` on every item with `min(cores, MAX_PARALLEL_LOADS)` threads; the first error
/// stops the others from starting new items and is returned.
fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = cores.clamp(1, MAX_PARALLEL_LOADS).min(items.len());
    if workers <= 1 {
        return items.iter().try_for_each(f);
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if let Err(e) = f(item) {
                        failed.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner().map_err(|_| poisoned())? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn poisoned() -> Error {
    Error::InvalidInput("a thread loading the index panicked".into())
}

/// Most listings of `index/` one load takes while files keep appearing (a prune writing
/// beside it); past this the load goes on with what it has, which is what any single
/// listing would have given.
const MAX_INDEX_LISTINGS: usize = 8;

impl Repository {
    /// Stores index files describing `packs`, split so no file exceeds
    /// [`INDEX_FILE_BLOBS`] blobs (well under the 64 MiB cap); returns their ids.
    pub fn save_index(&self, packs: Vec<IndexPack>) -> Result<Vec<IndexId>> {
        let mut w = self.index_writer();
        for p in packs {
            w.add_live(p)?;
        }
        w.finish(Vec::new())
    }

    /// A writer of index files that replace others (prune, repair): see [`IndexWriter`].
    pub fn index_writer(&self) -> IndexWriter<'_> {
        IndexWriter {
            repo: self,
            file: IndexFile::default(),
            blobs: 0,
            written: Vec::new(),
        }
    }

    fn write_index_file(&self, file: &IndexFile) -> Result<IndexId> {
        let plain = file.encode();
        // Verify after write (STYLE 9): what is stored must decode under the reader's checks.
        IndexFile::decode(&plain).map_err(|e| Error::InvalidInput(format!("index file: {e}")))?;
        let bytes = self.seal_object(ObjectKind::Index, &self.frame_payload(&plain))?;
        let id = Id::of_stored(&bytes);
        self.backend().write(FileType::Index, &id, bytes)?;
        Ok(IndexId(id))
    }

    /// Loads one index file. `listed` is its size from a listing, if known (else it is
    /// stat'ed): the stored-size cap is checked before the file is read.
    pub fn load_index_file(&self, id: &Id, listed: Option<u64>) -> Result<IndexFile> {
        // Each buffer is released as soon as the next exists (the index loads several files
        // at once, and these copies are most of its transient memory): the file is decrypted
        // in place, and an uncompressed body is decoded where it lies rather than copied.
        let mut bytes = self.read_metadata_object(FileType::Index, id, listed, MAX_INDEX_LEN)?;
        let plain = self.open_object_in_place(ObjectKind::Index, id, &mut bytes)?;
        let corrupt = |e| Error::corrupt("index file", id, e);
        let (compressed, body) = split_payload(&bytes[plain], "index file").map_err(corrupt)?;
        if compressed {
            let body =
                compress::decompress_capped(body, MAX_INDEX_LEN, "index file").map_err(corrupt)?;
            drop(bytes);
            IndexFile::decode(&body).map_err(corrupt)
        } else {
            IndexFile::decode(body).map_err(corrupt)
        }
    }

    /// Loads every readable index file into one in-memory index, skipping files another
    /// index file supersedes. A damaged file is recorded in [`Index::damaged`] and skipped;
    /// then the packs no readable file names (live or obsolete) are indexed from their
    /// headers (in memory only: readers verify every blob they open, and writing is left to
    /// backups).
    pub fn load_index(&self) -> Result<Index> {
        self.load(true)
    }

    /// [`Repository::load_index`] without the recovery from pack headers: exactly what the
    /// readable index files say. Backups start from this and adopt orphans verified.
    pub fn load_index_files(&self) -> Result<Index> {
        self.load(false)
    }

    fn load(&self, recover: bool) -> Result<Index> {
        // A listing taken while a prune writes its new index files and deletes the old ones
        // may name neither (a directory read or an object store's listing is not a snapshot
        // of the folder): list again after loading until a listing names nothing new, so a
        // file that replaced others is never missed. A file listed but gone when read is fine
        // only because a newer file supersedes it (checked below).
        let builder = Mutex::new(IndexBuilder::new());
        let mut seen: HashSet<Id> = HashSet::new();
        let mut vanished = Vec::new();
        for _ in 0..MAX_INDEX_LISTINGS {
            let new: Vec<(Id, u64)> = self
                .backend()
                .list(FileType::Index)?
                .into_iter()
                .filter(|(id, _)| seen.insert(*id))
                .collect();
            if new.is_empty() {
                break;
            }
            vanished.extend(self.add_index_files(&builder, &new)?);
        }
        let mut builder = builder.into_inner().map_err(|_| poisoned())?;
        for id in vanished {
            if !builder.is_superseded(&id) {
                builder.note_damaged(
                    id,
                    "it vanished while the index was loaded and no index file supersedes it".into(),
                );
            }
        }
        if builder.overflowed() {
            return Err(Error::InvalidInput(
                "the index names more than 2^27 packs (134 million), more than this version can hold".into(),
            ));
        }
        let mut recovered = Vec::new();
        if recover && !builder.damaged().is_empty() {
            for p in self.packs_from_headers(&builder)? {
                builder.add_recovered(&p);
                recovered.push(p.id);
            }
        }
        let index = builder.build(recovered);
        // A metadata cache keeps these whole and drops the tree packs a prune removed.
        let trees: Vec<Id> = index.tree_packs().into_iter().map(|p| p.0).collect();
        self.backend().hint(PackHint::TreePacks(&trees));
        Ok(index)
    }

    /// Reads the listed index files in parallel, adding each to `builder` as soon as it is
    /// decoded (so at most one decoded file per loading thread is in memory beside the index).
    /// Returns the files that were listed but gone when read.
    fn add_index_files(
        &self,
        builder: &Mutex<IndexBuilder>,
        listed: &[(Id, u64)],
    ) -> Result<Vec<IndexId>> {
        let vanished = Mutex::new(Vec::new());
        let load_one = |(id, len): &(Id, u64)| -> Result<()> {
            let id = IndexId(*id);
            let r = self.load_index_file(&id.0, Some(*len));
            let mut b = builder.lock().map_err(|_| poisoned())?;
            match r {
                Ok(f) => b.add_file(id, f),
                Err(Error::Corrupt { reason, .. }) => b.note_damaged(id, reason),
                Err(e) if e.is_not_found() => {
                    vanished.lock().map_err(|_| poisoned())?.push(id);
                }
                // One file that cannot be read (an I/O error, a permission) is skipped like a
                // damaged one; a transient failure still fails the load (try again).
                Err(Error::Backend(e)) if e.kind == ErrorKind::Permanent => {
                    b.note_damaged(id, format!("unreadable: {e}"));
                }
                Err(e) => return Err(e),
            }
            Ok(())
        };
        in_parallel(listed, load_one)?;
        vanished.into_inner().map_err(|_| poisoned())
    }

    /// Packs in storage that no loaded index file names, live or obsolete, with their
    /// listed sizes. Obsolete packs are not orphans (FORMAT §18 rule 6).
    pub fn orphan_packs(&self, index: &Index) -> Result<Vec<(PackId, u64)>> {
        Ok(self
            .backend()
            .list(FileType::Pack)?
            .into_iter()
            .map(|(id, len)| (PackId(id), len))
            .filter(|(id, _)| !index.has_pack(id))
            .collect())
    }

    /// The headers of the packs no readable index file names; packs whose header does not
    /// open stay unindexed (and `check` reports them).
    fn packs_from_headers(&self, builder: &IndexBuilder) -> Result<Vec<IndexPack>> {
        let named = builder.named_packs();
        let orphans: Vec<(PackId, u64)> = self
            .backend()
            .list(FileType::Pack)?
            .into_iter()
            .map(|(id, len)| (PackId(id), len))
            .filter(|(id, _)| !named.contains(id))
            .collect();
        Ok(orphans
            .par_iter()
            .filter_map(|(id, len)| {
                self.read_pack_header(id, *len).ok().map(|h| IndexPack {
                    id: *id,
                    blobs: h.entries,
                })
            })
            .collect())
    }

    /// Reads a pack whole and verifies everything a later reader relies on: its size within
    /// the cap (before reading), its name is the hash of its bytes, its header opens, and
    /// every blob it lists opens and matches its id. Returns the header.
    pub fn verify_pack(&self, id: &PackId, listed: u64) -> Result<PackHeader> {
        if listed > MAX_PACK_LEN {
            return Err(Error::corrupt(
                "pack",
                id,
                format!("{listed} bytes, more than the {MAX_PACK_LEN}-byte cap"),
            ));
        }
        let bytes = self.backend().read(FileType::Pack, &id.0)?;
        if bytes.len() as u64 != listed || Id::of_stored(&bytes) != id.0 {
            return Err(Error::corrupt(
                "pack",
                id,
                "contents do not match the name (bit rot or tampering)",
            ));
        }
        let header = self.pack_header_from_bytes(id, &bytes)?;
        for e in &header.entries {
            let sealed = bytes
                .get(e.offset as usize..e.end() as usize)
                .ok_or_else(|| Error::corrupt("pack", id, "a blob lies outside the pack"))?;
            self.open_blob(e, sealed)?;
        }
        Ok(header)
    }

    /// Indexes durably the packs no index file names (left by an interrupted backup, or
    /// named only by a damaged index file), so their blobs are reused instead of uploaded
    /// again. Each is read whole and verified first ([`Repository::verify_pack`]); one that
    /// fails is not adopted and is returned in [`Adoption::rejected`]. Call with a shared lock
    /// held and an index from [`Repository::load_index_files`].
    pub fn adopt_orphan_packs(&self, index: &mut Index) -> Result<Adoption> {
        let orphans = self.orphan_packs(index)?;
        if orphans.is_empty() {
            return Ok(Adoption::default());
        }
        let checked: Vec<(PackId, Result<PackHeader>)> = orphans
            .par_iter()
            .map(|(id, len)| (*id, self.verify_pack(id, *len)))
            .collect();
        let mut adopted = Vec::new();
        let mut rejected = Vec::new();
        for (id, r) in checked {
            match r {
                Ok(h) => adopted.push(IndexPack {
                    id,
                    blobs: h.entries,
                }),
                // Deleted since the listing: nothing to adopt.
                Err(Error::Backend(b)) if b.kind == ErrorKind::NotFound => {}
                Err(e @ Error::Corrupt { .. }) => rejected.push((id, e)),
                Err(e) => return Err(e),
            }
        }
        for p in &adopted {
            index.add_pack(p);
        }
        let n = adopted.len();
        if n > 0 {
            self.save_index(adopted)?;
        }
        Ok(Adoption {
            adopted: n,
            rejected,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::backend::opendal::OpendalBackend;
    use crate::backend::{Backend, BackendError, FileType};
    use crate::error::Error;
    use crate::format::index::{IndexPack, ObsoletePack};
    use crate::format::pack::BlobType;
    use crate::id::{BlobId, Id, IndexId};
    use crate::repo::Repository;
    use crate::repo::packer::{SealedBlob, assemble};
    use crate::repo::tests::{repo, repo_on};

    fn stored_pack(r: &crate::repo::Repository, tag: &str) -> (IndexPack, BlobId) {
        let data = format!("blob of {tag}").into_bytes();
        let id = r.blob_id(&data);
        let sealed = r.seal_blob(BlobType::Data, &id, &data).unwrap();
        let p = assemble(
            r,
            vec![SealedBlob {
                blob_type: BlobType::Data,
                id,
                raw_len: data.len() as u32,
                sealed,
            }],
        )
        .unwrap();
        r.backend()
            .write_parts(FileType::Pack, &p.id.0, p.parts)
            .unwrap();
        (
            IndexPack {
                id: p.id,
                blobs: p.entries,
            },
            id,
        )
    }

    #[test]
    fn damaged_index_file_is_skipped_and_its_packs_found_from_headers() {
        let r = repo();
        let (a, blob_a) = stored_pack(&r, "a");
        let (b, blob_b) = stored_pack(&r, "b");
        r.save_index(vec![a]).unwrap();
        let b_id = b.id;
        let bad = r.save_index(vec![b]).unwrap()[0];
        // Replace the second index file by garbage under the same name.
        r.backend().delete(FileType::Index, &bad.0).unwrap();
        r.backend()
            .write(FileType::Index, &bad.0, b"garbage".to_vec())
            .unwrap();

        let files_only = r.load_index_files().unwrap();
        assert!(files_only.contains(&blob_a) && !files_only.contains(&blob_b));
        assert_eq!(files_only.damaged().len(), 1);

        let index = r.load_index().unwrap();
        assert!(index.contains(&blob_a) && index.contains(&blob_b));
        assert_eq!(index.damaged()[0].0, bad);
        assert_eq!(index.recovered(), &[b_id][..]);
    }

    #[test]
    fn orphan_pack_is_adopted_only_when_every_byte_verifies() {
        let r = repo();
        let (good, good_blob) = stored_pack(&r, "good");
        let (bad, bad_blob) = stored_pack(&r, "bad");
        // Damage one pack: same name, one byte changed.
        let mut bytes = r.backend().read(FileType::Pack, &bad.id.0).unwrap();
        bytes[12] ^= 1;
        r.backend().delete(FileType::Pack, &bad.id.0).unwrap();
        r.backend().write(FileType::Pack, &bad.id.0, bytes).unwrap();

        let mut index = r.load_index_files().unwrap();
        let adoption = r.adopt_orphan_packs(&mut index).unwrap();
        assert_eq!(adoption.adopted, 1);
        assert_eq!(adoption.rejected.len(), 1);
        assert_eq!(adoption.rejected[0].0, bad.id);
        assert!(matches!(adoption.rejected[0].1, Error::Corrupt { .. }));
        assert!(index.contains(&good_blob) && !index.contains(&bad_blob));
        // The adoption is durable: a fresh load finds the good pack, not the bad one.
        let again = r.load_index_files().unwrap();
        assert!(again.has_pack(&good.id) && !again.has_pack(&bad.id));
    }

    type Hook = Box<dyn FnOnce() + Send>;

    /// Runs `hook` once, right before the first index file is read: a prune replacing the
    /// index between a reader's listing and its reads.
    struct BeforeIndexRead {
        inner: Arc<dyn Backend>,
        hook: Mutex<Option<Hook>>,
    }

    impl std::fmt::Debug for BeforeIndexRead {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("BeforeIndexRead")
        }
    }

    impl Backend for BeforeIndexRead {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> Result<(), BackendError> {
            self.inner.create()
        }
        fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
            self.inner.list(t)
        }
        fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
            if t == FileType::Index
                && let Some(h) = self.hook.lock().unwrap().take()
            {
                h();
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
            self.inner.read_range(t, id, offset, len)
        }
        fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
            self.inner.size(t, id)
        }
        fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
            self.inner.write(t, id, bytes)
        }
        fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
            self.inner.delete(t, id)
        }
    }

    /// A repository on memory storage whose first index read runs `hook` (given a
    /// repository on the same storage without the hook), with one pack indexed by one file.
    fn replaced_during_load(
        replace: impl FnOnce(&Repository, IndexId, IndexPack) + Send + 'static,
    ) -> (Repository, BlobId) {
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let plain = repo_on(mem.clone());
        let (a, blob) = stored_pack(&plain, "a");
        let old = plain.save_index(vec![a.clone()]).unwrap()[0];
        let hook: Hook = Box::new(move || replace(&plain, old, a));
        let hooked: Arc<dyn Backend> = Arc::new(BeforeIndexRead {
            inner: mem,
            hook: Mutex::new(Some(hook)),
        });
        (Repository::open(hooked, b"pw").unwrap(), blob)
    }

    #[test]
    fn a_file_replaced_between_listing_and_reading_is_found_in_its_superseder() {
        let (r, blob) = replaced_during_load(|plain, old, a| {
            let mut w = plain.index_writer();
            w.add_live(a).unwrap();
            w.finish(vec![old]).unwrap();
            plain.backend().delete(FileType::Index, &old.0).unwrap();
        });
        let index = r.load_index().unwrap();
        assert!(index.damaged().is_empty(), "{:?}", index.damaged());
        assert!(index.contains(&blob));
    }

    #[test]
    fn a_file_that_vanished_with_no_superseder_is_damage() {
        let (r, blob) = replaced_during_load(|plain, old, _| {
            plain.backend().delete(FileType::Index, &old.0).unwrap();
        });
        let index = r.load_index().unwrap();
        assert_eq!(index.damaged().len(), 1);
        assert!(index.damaged()[0].1.contains("no index file supersedes it"));
        // What it described is found again from the pack's header.
        assert!(index.contains(&blob) && index.recovered().len() == 1);
    }

    fn retire(r: &Repository, p: &IndexPack) -> IndexId {
        let mut w = r.index_writer();
        w.add_obsolete(ObsoletePack {
            id: p.id,
            marked_unix_ns: 1,
            armed: false,
            waiting_for: Vec::new(),
            blobs: p.blobs.clone(),
        })
        .unwrap();
        w.finish(Vec::new()).unwrap()[0]
    }

    #[test]
    fn an_obsolete_pack_is_neither_adopted_nor_recovered() {
        let r = repo();
        let (old, old_blob) = stored_pack(&r, "old");
        let (orphan, orphan_blob) = stored_pack(&r, "orphan");
        retire(&r, &old);
        // A damaged file makes readers look at headers: the obsolete pack is not among them.
        r.backend()
            .write(FileType::Index, &Id([7; 32]), b"garbage".to_vec())
            .unwrap();
        let index = r.load_index().unwrap();
        assert_eq!(index.recovered(), &[orphan.id][..]);
        assert!(index.is_obsolete(&old.id));
        assert!(!index.contains(&old_blob) && index.contains_any(&old_blob));
        // A reader still reads the obsolete copy.
        assert_eq!(r.read_blob(&index, &old_blob).unwrap(), b"blob of old");

        let mut index = r.load_index_files().unwrap();
        let adoption = r.adopt_orphan_packs(&mut index).unwrap();
        assert_eq!(adoption.adopted, 1);
        assert!(index.contains(&orphan_blob));
        assert!(!index.contains(&old_blob), "adoption undid a prune");
        let again = r.load_index_files().unwrap();
        assert!(again.is_obsolete(&old.id) && again.is_live(&orphan.id));
    }

    #[test]
    fn the_writer_splits_files_and_supersedes_in_the_last_only() {
        let r = repo();
        let (a, _) = stored_pack(&r, "a");
        let first = r.save_index(vec![a.clone()]).unwrap()[0];
        let big = |tag: u8| IndexPack {
            id: crate::id::PackId(Id([tag; 32])),
            blobs: vec![a.blobs[0]; crate::repo::INDEX_FILE_BLOBS / 2 + 1],
        };
        let mut w = r.index_writer();
        w.add_live(big(1)).unwrap();
        w.add_live(big(2)).unwrap();
        w.add_obsolete(ObsoletePack {
            id: a.id,
            marked_unix_ns: 5,
            armed: true,
            waiting_for: vec![[1; 16]],
            blobs: a.blobs.clone(),
        })
        .unwrap();
        let ids = w.finish(vec![first]).unwrap();
        assert_eq!(ids.len(), 2);
        let f0 = r.load_index_file(&ids[0].0, None).unwrap();
        let f1 = r.load_index_file(&ids[1].0, None).unwrap();
        assert!(f0.supersedes.is_empty() && f1.supersedes == vec![first]);
        assert_eq!(
            (f0.packs.len(), f1.packs.len(), f1.obsolete.len()),
            (1, 1, 1)
        );
        let index = r.load_index_files().unwrap();
        assert!(index.is_obsolete(&a.id));
        assert!(r.index_writer().finish(Vec::new()).unwrap().is_empty());
    }
}
