//! Unit tests of the cache over an in-memory store with a request counter below it.

use std::sync::Arc;

use super::*;
use crate::backend::counting::{CountingBackend, Op};
use crate::backend::opendal::OpendalBackend;

struct Rig {
    _dir: tempfile::TempDir,
    root: CacheRoot,
    /// Storage itself, bypassing the counter (what another machine does).
    storage: Arc<dyn Backend>,
    counted: Arc<CountingBackend>,
}

const REPO: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = CacheRoot::open(dir.path()).unwrap();
        let storage: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        storage.create().unwrap();
        let counted = Arc::new(CountingBackend::new(storage.clone()));
        Self {
            _dir: dir,
            root,
            storage,
            counted,
        }
    }

    /// A cache as a new process would open it.
    fn cache(&self) -> CacheBackend {
        CacheBackend::new(self.counted.clone(), self.root.repo(REPO).unwrap())
    }

    fn reads(&self, t: FileType) -> u64 {
        self.counted.stats().reads(t)
    }
}

fn object(seed: &str) -> (Id, Vec<u8>) {
    let bytes = format!("object {seed}").repeat(50).into_bytes();
    (Id::of_stored(&bytes), bytes)
}

fn flip_a_byte(path: &std::path::Path) {
    let mut b = std::fs::read(path).unwrap();
    b[10] ^= 1;
    std::fs::write(path, b).unwrap();
}

#[test]
fn metadata_written_or_read_once_is_served_from_the_copy() {
    let rig = Rig::new();
    let (a, abytes) = object("a");
    let (b, bbytes) = object("b");
    let c = rig.cache();
    c.write(FileType::Snapshot, &a, abytes.clone()).unwrap();
    rig.storage
        .write(FileType::Snapshot, &b, bbytes.clone())
        .unwrap();
    c.list(FileType::Snapshot).unwrap();
    assert_eq!(c.read(FileType::Snapshot, &a).unwrap(), abytes);
    assert_eq!(rig.reads(FileType::Snapshot), 0, "written through: cached");
    assert_eq!(c.read(FileType::Snapshot, &b).unwrap(), bbytes);
    assert_eq!(rig.reads(FileType::Snapshot), 1);
    // A new process: one listing, no reads, sizes from the listing.
    let c = rig.cache();
    c.list(FileType::Snapshot).unwrap();
    assert_eq!(c.size(FileType::Snapshot, &b).unwrap(), bbytes.len() as u64);
    assert_eq!(c.read(FileType::Snapshot, &a).unwrap(), abytes);
    assert_eq!(c.read(FileType::Snapshot, &b).unwrap(), bbytes);
    assert_eq!(rig.reads(FileType::Snapshot), 1);
    assert_eq!(rig.counted.stats().calls(Op::Size, FileType::Snapshot), 0);
    assert_eq!(c.stats().hits, 2);
}

#[test]
fn a_corrupt_copy_is_dropped_and_fetched_again() {
    let rig = Rig::new();
    let (a, abytes) = object("a");
    let c = rig.cache();
    c.write(FileType::Index, &a, abytes.clone()).unwrap();
    flip_a_byte(&c.store().path(FileType::Index, &a).unwrap());
    let c = rig.cache();
    c.list(FileType::Index).unwrap();
    assert_eq!(c.read(FileType::Index, &a).unwrap(), abytes);
    assert_eq!(rig.reads(FileType::Index), 1);
    assert_eq!(c.stats().dropped_corrupt, 1);
    // Fetched again and kept: the next process reads nothing.
    let c = rig.cache();
    c.list(FileType::Index).unwrap();
    assert_eq!(c.read(FileType::Index, &a).unwrap(), abytes);
    assert_eq!(rig.reads(FileType::Index), 1);
    // A truncated copy is damage too.
    let p = c.store().path(FileType::Index, &a).unwrap();
    std::fs::write(&p, &abytes[..10]).unwrap();
    assert_eq!(c.read(FileType::Index, &a).unwrap(), abytes);
    assert_eq!(rig.reads(FileType::Index), 2);
}

#[test]
fn a_copy_of_an_object_gone_from_storage_is_never_served() {
    let rig = Rig::new();
    let (a, abytes) = object("a");
    let c = rig.cache();
    c.write(FileType::Snapshot, &a, abytes).unwrap();
    // Another machine forgets it.
    rig.storage.delete(FileType::Snapshot, &a).unwrap();
    // A new process that has not listed yet does not trust the copy: storage says gone.
    let c = rig.cache();
    let e = c.read(FileType::Snapshot, &a).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(c.size(FileType::Snapshot, &a).is_err());
    // A listing removes the copy.
    assert!(c.list(FileType::Snapshot).unwrap().is_empty());
    assert!(c.store().ids(FileType::Snapshot).is_empty());
    assert_eq!(c.stats().dropped_stale, 1);
}

#[test]
fn deleting_through_the_cache_removes_the_copy() {
    let rig = Rig::new();
    let (a, abytes) = object("a");
    let c = rig.cache();
    c.write(FileType::Key, &a, abytes).unwrap();
    assert_eq!(c.store().ids(FileType::Key), vec![a]);
    c.delete(FileType::Key, &a).unwrap();
    assert!(c.store().ids(FileType::Key).is_empty());
    assert_eq!(
        c.read(FileType::Key, &a).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn config_locks_and_data_packs_are_not_cached() {
    let rig = Rig::new();
    let (a, abytes) = object("a");
    let c = rig.cache();
    c.write(FileType::Lock, &a, abytes.clone()).unwrap();
    c.write(FileType::Pack, &a, abytes.clone()).unwrap();
    c.list(FileType::Lock).unwrap();
    c.read(FileType::Lock, &a).unwrap();
    c.read(FileType::Lock, &a).unwrap();
    c.read_range(FileType::Pack, &a, 0, 5).unwrap();
    c.read_range(FileType::Pack, &a, 0, 5).unwrap();
    assert_eq!(rig.reads(FileType::Lock), 2);
    assert_eq!(rig.reads(FileType::Pack), 2);
    assert!(c.store().ids(FileType::Pack).is_empty());
}

#[test]
fn tree_packs_are_fetched_whole_once_and_ranges_served_from_the_copy() {
    let rig = Rig::new();
    let (p, pbytes) = object("tree pack");
    rig.storage
        .write(FileType::Pack, &p, pbytes.clone())
        .unwrap();
    let c = rig.cache();
    c.hint(PackHint::TreePacks(&[p]));
    assert_eq!(
        c.read_range(FileType::Pack, &p, 3, 7).unwrap(),
        &pbytes[3..10]
    );
    assert_eq!(
        c.read_range(FileType::Pack, &p, 20, 5).unwrap(),
        &pbytes[20..25]
    );
    // One stat and one whole read.
    assert_eq!(rig.reads(FileType::Pack), 1);
    assert_eq!(rig.counted.stats().calls(Op::Size, FileType::Pack), 1);
    // A range past the end is storage's error, as without a cache.
    assert!(
        c.read_range(FileType::Pack, &p, pbytes.len() as u64, 1)
            .is_err()
    );
    // The next process: nothing from storage.
    let before = rig.counted.stats().requests();
    let c = rig.cache();
    c.hint(PackHint::TreePacks(&[p]));
    assert_eq!(
        c.read_range(FileType::Pack, &p, 0, 8).unwrap(),
        &pbytes[..8]
    );
    assert_eq!(c.read(FileType::Pack, &p).unwrap(), pbytes);
    assert_eq!(rig.counted.stats().requests(), before);
    // An index without the pack (pruned): the copy goes.
    let c = rig.cache();
    c.hint(PackHint::TreePacks(&[]));
    assert!(c.store().ids(FileType::Pack).is_empty());
}

#[test]
fn a_corrupt_tree_pack_copy_is_dropped_and_fetched_again() {
    let rig = Rig::new();
    let (p, pbytes) = object("tree pack");
    rig.storage
        .write(FileType::Pack, &p, pbytes.clone())
        .unwrap();
    let c = rig.cache();
    c.hint(PackHint::TreePacks(&[p]));
    c.read_range(FileType::Pack, &p, 0, 1).unwrap();
    flip_a_byte(&c.store().path(FileType::Pack, &p).unwrap());
    let c = rig.cache();
    c.hint(PackHint::TreePacks(&[p]));
    assert_eq!(
        c.read_range(FileType::Pack, &p, 8, 4).unwrap(),
        &pbytes[8..12]
    );
    assert_eq!(c.stats().dropped_corrupt, 1);
    assert_eq!(rig.reads(FileType::Pack), 2);
    assert_eq!(c.store().hash(FileType::Pack, &p).unwrap(), p);
}

#[test]
fn a_damaged_tree_pack_in_storage_is_read_by_range_and_not_kept() {
    let rig = Rig::new();
    let (p, mut pbytes) = object("tree pack");
    pbytes[30] ^= 1; // stored bytes no longer match the name
    rig.storage
        .write(FileType::Pack, &p, pbytes.clone())
        .unwrap();
    let c = rig.cache();
    c.hint(PackHint::TreePacks(&[p]));
    // What storage holds, as without a cache (the blob's authentication decides).
    assert_eq!(
        c.read_range(FileType::Pack, &p, 28, 4).unwrap(),
        &pbytes[28..32]
    );
    assert!(c.store().ids(FileType::Pack).is_empty());
    // Not fetched whole again: plain ranged reads from now on.
    assert_eq!(
        c.read_range(FileType::Pack, &p, 0, 4).unwrap(),
        &pbytes[..4]
    );
    assert_eq!(rig.counted.stats().calls(Op::Read, FileType::Pack), 0);
    assert_eq!(rig.counted.stats().calls(Op::ReadRange, FileType::Pack), 2);
}

#[test]
fn tree_packs_written_through_the_cache_are_kept() {
    let rig = Rig::new();
    let (t, tbytes) = object("tree pack");
    let (d, dbytes) = object("data pack");
    let c = rig.cache();
    c.hint(PackHint::TreePacks(&[]));
    c.hint(PackHint::NewTreePack(&t));
    let halves = |b: &[u8]| vec![b[..7].to_vec(), b[7..].to_vec()];
    c.write_parts(FileType::Pack, &t, halves(&tbytes)).unwrap();
    c.write_parts(FileType::Pack, &d, halves(&dbytes)).unwrap();
    assert_eq!(c.store().ids(FileType::Pack), vec![t]);
    assert_eq!(
        c.read_range(FileType::Pack, &t, 2, 9).unwrap(),
        &tbytes[2..11]
    );
    assert_eq!(rig.reads(FileType::Pack), 0);
    assert_eq!(rig.storage.read(FileType::Pack, &t).unwrap(), tbytes);
    // A listing of data/ that no longer names it (deleted elsewhere) removes the copy.
    rig.storage.delete(FileType::Pack, &t).unwrap();
    c.list(FileType::Pack).unwrap();
    assert!(c.store().ids(FileType::Pack).is_empty());
}

#[test]
fn a_failed_write_keeps_no_copy_and_leaves_no_temporary_file() {
    let rig = Rig::new();
    let (a, abytes) = object("a");
    let c = rig.cache();
    // Bytes that do not match the name are written (storage's business) but never kept.
    let (other, _) = object("other");
    c.write(FileType::Snapshot, &other, abytes.clone()).unwrap();
    assert!(c.store().ids(FileType::Snapshot).is_empty());
    // A write storage refuses (the object exists with other bytes... here: the same name
    // again is AlreadyExists, which is success for a content-named object).
    c.write(FileType::Snapshot, &a, abytes.clone()).unwrap();
    let e = c.write(FileType::Snapshot, &a, abytes).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    assert_eq!(c.store().ids(FileType::Snapshot), vec![a]);
    assert_eq!(
        std::fs::read_dir(c.store().dir().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

/// The trait's contract holds through the cache (the suite's objects are not named by their
/// bytes, so they pass through; the tests above cover what is kept).
#[test]
fn conformance_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let root = CacheRoot::open(dir.path()).unwrap();
    let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
    let c = CacheBackend::new(mem, root.repo(REPO).unwrap());
    crate::backend::conformance::run_all(&c);
}

#[test]
fn a_listing_started_ahead_answers_the_next_list_only() {
    let rig = Rig::new();
    let (a, abytes) = object("a");
    let (b, bbytes) = object("b");
    rig.storage.write(FileType::Index, &a, abytes).unwrap();
    let c = rig.cache();
    let lists = || rig.counted.stats().calls(Op::List, FileType::Index);
    c.list_ahead(FileType::Index);
    // A later hint replaces the earlier one; both listed, only the last is used.
    c.list_ahead(FileType::Index);
    let first = c.list(FileType::Index).unwrap();
    assert_eq!(first.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [a]);
    // Taken: the next list asks storage again and sees what was written since.
    rig.storage.write(FileType::Index, &b, bbytes).unwrap();
    let before = lists();
    let second = c.list(FileType::Index).unwrap();
    assert_eq!(lists(), before + 1);
    assert_eq!(second.len(), 2);
    // A hint for one type leaves the others alone.
    c.list_ahead(FileType::Snapshot);
    let before = lists();
    assert_eq!(c.list(FileType::Index).unwrap().len(), 2);
    assert_eq!(lists(), before + 1);
    assert!(c.list(FileType::Snapshot).unwrap().is_empty());
}
