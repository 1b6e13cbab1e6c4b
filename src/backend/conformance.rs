//! One conformance suite for every [`Backend`] (restic's `backend/test`).
//!
//! [`run_all`] states the trait's contract as executable checks and runs against each
//! implementation: the in-memory store and a local folder. Checks that only make sense for a
//! folder (file layout, leftover temporary files, permissions, opening a missing folder) follow
//! it as local-only tests. Wrappers (retry, fault injection) are tested in their own modules.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use super::opendal::OpendalBackend;
use super::{Backend, BackendError, ErrorKind, FileType};
use crate::id::Id;

/// Deterministic, seed-dependent bytes and the id they would be stored under.
fn object(seed: u8, len: usize) -> (Id, Vec<u8>) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    // Mixing the seed in keeps two empty objects from sharing an id.
    let mut named = bytes.clone();
    named.push(seed);
    (Id::of_stored(&named), bytes)
}

/// The kind of the error `r` must be.
fn kind_of<T: Debug>(r: Result<T, BackendError>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind,
    }
}

fn sorted(mut v: Vec<(Id, u64)>) -> Vec<(Id, u64)> {
    v.sort();
    v
}

/// Runs every backend-independent check against `b`, which must be empty and not yet created.
pub fn run_all(b: &dyn Backend) {
    create_and_empty_lists(b);
    round_trip_every_type(b);
    config_ignores_the_id(b);
    replace_config_swaps_it_whole(b);
    empty_object(b);
    write_parts_joins_in_order(b);
    read_range(b);
    list_returns_ids_and_sizes(b);
    write_never_overwrites(b);
    missing_objects_are_not_found(b);
    delete_then_list(b);
    concurrent_writers(b);
}

fn create_and_empty_lists(b: &dyn Backend) {
    b.create().expect("create");
    for t in FileType::ALL {
        assert_eq!(
            b.list(t).expect("list"),
            vec![],
            "{t:?} of a new repository"
        );
    }
    assert!(!b.location().is_empty());
}

fn write_parts_joins_in_order(b: &dyn Backend) {
    let (id, bytes) = object(90, 3000);
    let parts = vec![
        bytes[..1].to_vec(),
        Vec::new(),
        bytes[1..1000].to_vec(),
        bytes[1000..].to_vec(),
    ];
    b.write_parts(FileType::Pack, &id, parts)
        .expect("write_parts");
    assert_eq!(b.read(FileType::Pack, &id).expect("read"), bytes);
    let again = b.write_parts(FileType::Pack, &id, vec![bytes.clone()]);
    assert_eq!(again.map_err(|e| e.kind), Err(ErrorKind::AlreadyExists));
    b.delete(FileType::Pack, &id).expect("delete");
}

fn round_trip_every_type(b: &dyn Backend) {
    for (i, t) in FileType::ALL.into_iter().enumerate() {
        let (id, bytes) = object(10 + i as u8, 100 + 37 * i);
        b.write(t, &id, bytes.clone()).expect("write");
        assert_eq!(b.read(t, &id).expect("read"), bytes, "{t:?}");
        assert_eq!(b.size(t, &id).expect("size"), bytes.len() as u64, "{t:?}");
    }
    // A second config is refused whatever id it is written under.
    let (other, _) = object(99, 1);
    assert_eq!(
        kind_of(b.write(FileType::Config, &other, b"x".to_vec())),
        ErrorKind::AlreadyExists
    );
    assert_eq!(kind_of(b.create()), ErrorKind::AlreadyExists);
}

fn config_ignores_the_id(b: &dyn Backend) {
    let (written_under, bytes) = object(10, 100);
    let (other, _) = object(77, 3);
    assert_eq!(b.read(FileType::Config, &other).expect("read"), bytes);
    assert_eq!(b.size(FileType::Config, &other).expect("size"), 100);
    // Listed once, under the zero id, not under the id it happened to be written with.
    let listed = b.list(FileType::Config).expect("list");
    assert_eq!(listed, vec![(Id::default(), 100)]);
    assert_ne!(listed[0].0, written_under);
}

fn replace_config_swaps_it_whole(b: &dyn Backend) {
    let before = b.read(FileType::Config, &Id::default()).expect("read");
    let (_, new) = object(55, 140);
    b.replace_config(new.clone()).expect("replace");
    assert_eq!(b.read(FileType::Config, &Id::default()).expect("read"), new);
    assert_eq!(
        b.list(FileType::Config).expect("list"),
        vec![(Id::default(), 140)]
    );
    // Still never replaced by a plain write.
    assert_eq!(
        kind_of(b.write(FileType::Config, &Id::default(), before.clone())),
        ErrorKind::AlreadyExists
    );
    b.replace_config(before.clone()).expect("replace back");
    assert_eq!(
        b.read(FileType::Config, &Id::default()).expect("read"),
        before
    );
}

fn empty_object(b: &dyn Backend) {
    let (id, bytes) = object(20, 0);
    b.write(FileType::Index, &id, bytes).expect("write");
    assert_eq!(
        b.read(FileType::Index, &id).expect("read"),
        Vec::<u8>::new()
    );
    assert_eq!(b.size(FileType::Index, &id).expect("size"), 0);
    assert!(b.list(FileType::Index).expect("list").contains(&(id, 0)));
    assert_eq!(
        b.read_range(FileType::Index, &id, 0, 0).expect("range"),
        Vec::<u8>::new()
    );
    assert_eq!(
        kind_of(b.read_range(FileType::Index, &id, 0, 1)),
        ErrorKind::Permanent
    );
}

fn read_range(b: &dyn Backend) {
    let (id, bytes) = object(30, 1000);
    b.write(FileType::Pack, &id, bytes.clone()).expect("write");
    let r = |off: u64, len: u64| b.read_range(FileType::Pack, &id, off, len);
    assert_eq!(r(0, 10).expect("start"), bytes[..10]);
    assert_eq!(r(500, 17).expect("middle"), bytes[500..517]);
    assert_eq!(r(990, 10).expect("end"), bytes[990..]);
    assert_eq!(r(0, 1000).expect("whole"), bytes);
    assert_eq!(r(0, 0).expect("empty at start"), Vec::<u8>::new());
    assert_eq!(r(500, 0).expect("empty in middle"), Vec::<u8>::new());
    assert_eq!(r(1000, 0).expect("empty at end"), Vec::<u8>::new());
    // Short reads and ranges past the end are errors, never truncated data.
    assert_eq!(kind_of(r(995, 10)), ErrorKind::Permanent, "short read");
    assert_eq!(kind_of(r(0, 1001)), ErrorKind::Permanent, "one past end");
    assert_eq!(kind_of(r(1000, 1)), ErrorKind::Permanent, "starts at end");
    assert_eq!(kind_of(r(2000, 5)), ErrorKind::Permanent, "starts past end");
    assert_eq!(kind_of(r(1001, 0)), ErrorKind::Permanent, "empty past end");
    assert_eq!(kind_of(r(u64::MAX, 2)), ErrorKind::Permanent, "overflow");
    let (missing, _) = object(31, 1);
    assert_eq!(
        kind_of(b.read_range(FileType::Pack, &missing, 0, 1)),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(b.read_range(FileType::Pack, &missing, 0, 0)),
        ErrorKind::NotFound
    );
    b.delete(FileType::Pack, &id).expect("delete");
}

fn list_returns_ids_and_sizes(b: &dyn Backend) {
    let before: Vec<Vec<(Id, u64)>> = FileType::ALL
        .iter()
        .map(|t| sorted(b.list(*t).expect("list")))
        .collect();
    let mut packs = Vec::new();
    for seed in 40..60u8 {
        let (id, bytes) = object(seed, usize::from(seed) * 3);
        packs.push((id, bytes.len() as u64));
        b.write(FileType::Pack, &id, bytes).expect("write pack");
    }
    let mut snapshots = Vec::new();
    for seed in 60..63u8 {
        let (id, bytes) = object(seed, 50);
        snapshots.push((id, 50));
        b.write(FileType::Snapshot, &id, bytes)
            .expect("write snapshot");
    }
    let expect = |i: usize, added: &[(Id, u64)]| {
        let mut v = before[i].clone();
        v.extend_from_slice(added);
        sorted(v)
    };
    for (i, t) in FileType::ALL.into_iter().enumerate() {
        let added: &[(Id, u64)] = match t {
            FileType::Pack => &packs,
            FileType::Snapshot => &snapshots,
            _ => &[],
        };
        assert_eq!(sorted(b.list(t).expect("list")), expect(i, added), "{t:?}");
    }
    for (id, _) in packs.iter().chain(&snapshots) {
        let t = if packs.iter().any(|(p, _)| p == id) {
            FileType::Pack
        } else {
            FileType::Snapshot
        };
        b.delete(t, id).expect("delete");
    }
    for (i, t) in FileType::ALL.into_iter().enumerate() {
        assert_eq!(sorted(b.list(t).expect("list")), before[i], "{t:?}");
    }
}

fn write_never_overwrites(b: &dyn Backend) {
    for t in [FileType::Pack, FileType::Key, FileType::Lock] {
        let (id, bytes) = object(70, 64);
        b.write(t, &id, bytes.clone()).expect("first write");
        let err = b.write(t, &id, vec![0xff; 10]).expect_err("second write");
        assert_eq!(err.kind, ErrorKind::AlreadyExists, "{t:?}: {err}");
        assert_eq!(b.read(t, &id).expect("read"), bytes, "{t:?} was replaced");
        assert_eq!(b.size(t, &id).expect("size"), 64);
        b.delete(t, &id).expect("delete");
    }
    let (_, config) = object(10, 100);
    assert_eq!(
        b.read(FileType::Config, &Id::default()).expect("config"),
        config
    );
}

fn missing_objects_are_not_found(b: &dyn Backend) {
    let (id, _) = object(80, 5);
    for t in FileType::ALL.into_iter().filter(|t| *t != FileType::Config) {
        assert_eq!(kind_of(b.read(t, &id)), ErrorKind::NotFound, "read {t:?}");
        assert_eq!(kind_of(b.size(t, &id)), ErrorKind::NotFound, "size {t:?}");
        assert_eq!(
            kind_of(b.delete(t, &id)),
            ErrorKind::NotFound,
            "delete {t:?}"
        );
    }
}

fn delete_then_list(b: &dyn Backend) {
    let before = b.list(FileType::Lock).expect("list");
    let with = |extra: &[(Id, u64)]| {
        let mut v = before.clone();
        v.extend_from_slice(extra);
        sorted(v)
    };
    let (a, bytes_a) = object(90, 10);
    let (c, bytes_c) = object(91, 20);
    b.write(FileType::Lock, &a, bytes_a).expect("write");
    b.write(FileType::Lock, &c, bytes_c).expect("write");
    assert_eq!(
        sorted(b.list(FileType::Lock).expect("list")),
        with(&[(a, 10), (c, 20)])
    );
    b.delete(FileType::Lock, &a).expect("delete");
    assert_eq!(
        sorted(b.list(FileType::Lock).expect("list")),
        with(&[(c, 20)])
    );
    assert_eq!(kind_of(b.read(FileType::Lock, &a)), ErrorKind::NotFound);
    assert_eq!(kind_of(b.delete(FileType::Lock, &a)), ErrorKind::NotFound);
    // A deleted name can be written again.
    let (_, again) = object(90, 10);
    b.write(FileType::Lock, &a, again.clone()).expect("rewrite");
    assert_eq!(b.read(FileType::Lock, &a).expect("read"), again);
    b.delete(FileType::Lock, &a).expect("delete");
    b.delete(FileType::Lock, &c).expect("delete");
    assert_eq!(sorted(b.list(FileType::Lock).expect("list")), with(&[]));
}

fn concurrent_writers(b: &dyn Backend) {
    const THREADS: u8 = 8;
    const EACH: u8 = 6;
    let before = b.list(FileType::Pack).expect("list").len();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for k in 0..EACH {
                    let (id, bytes) = object(100 + t * EACH + k, 2000 + usize::from(t));
                    b.write(FileType::Pack, &id, bytes.clone()).expect("write");
                    assert_eq!(b.read(FileType::Pack, &id).expect("read"), bytes);
                }
            });
        }
    });
    let listed = b.list(FileType::Pack).expect("list");
    assert_eq!(listed.len(), before + usize::from(THREADS * EACH));
    for t in 0..THREADS {
        for k in 0..EACH {
            let (id, bytes) = object(100 + t * EACH + k, 2000 + usize::from(t));
            assert!(listed.contains(&(id, bytes.len() as u64)));
        }
    }

    // Racing writers of one content-addressed name: every call either stores it or reports
    // that it is already there, and the stored bytes are whole.
    let (id, bytes) = object(200, 50_000);
    let results: Vec<Result<(), BackendError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| s.spawn(|| b.write(FileType::Pack, &id, bytes.clone())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    assert!(results.iter().any(Result::is_ok), "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        }
    }
    assert_eq!(b.read(FileType::Pack, &id).expect("read"), bytes);
}

#[test]
fn memory_backend_conforms() {
    run_all(&OpendalBackend::memory().expect("memory"));
}

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = OpendalBackend::local(dir.path().join("repo")).expect("open");
    run_all(&b);
    assert_no_stray_files(&dir.path().join("repo"), &b);
}

/// Every file under `root` is `config` or an object at the path its type and id give, and
/// `tmp/` is empty: no write left a temporary file behind.
fn assert_no_stray_files(root: &Path, b: &dyn Backend) {
    let mut expected: BTreeSet<PathBuf> = BTreeSet::new();
    for t in FileType::ALL {
        for (id, _) in b.list(t).expect("list") {
            expected.insert(root.join(t.path(&id)));
        }
    }
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.insert(p);
            }
        }
    }
    assert_eq!(found, expected);
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp")).expect("tmp").collect();
    assert!(tmp.is_empty(), "tmp/ holds {tmp:?}");
}

/// A created local repository in a fresh temporary folder.
fn local_repo() -> (tempfile::TempDir, PathBuf, OpendalBackend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    let b = OpendalBackend::local(&root).expect("open");
    b.create().expect("create");
    (dir, root, b)
}

#[test]
fn local_packs_land_in_two_hex_digit_folders() {
    let (_dir, root, b) = local_repo();
    for seed in 0..20 {
        let (id, bytes) = object(seed, 10);
        b.write(FileType::Pack, &id, bytes.clone()).expect("write");
        let hex = id.to_hex();
        let file = root.join("data").join(&hex[..2]).join(&hex);
        assert_eq!(std::fs::read(&file).expect("pack file"), bytes);
    }
    let (id, bytes) = object(50, 10);
    b.write(FileType::Key, &id, bytes.clone()).expect("write");
    assert_eq!(
        std::fs::read(root.join("keys").join(id.to_hex())).expect("key"),
        bytes
    );
    b.write(FileType::Config, &id, b"cfg".to_vec())
        .expect("config");
    assert_eq!(std::fs::read(root.join("config")).expect("config"), b"cfg");
    assert_no_stray_files(&root, &b);
}

#[test]
fn local_list_ignores_foreign_names_and_tmp() {
    let (_dir, root, b) = local_repo();
    let (id, bytes) = object(1, 10);
    b.write(FileType::Pack, &id, bytes).expect("write");
    b.write(FileType::Key, &id, vec![1; 7]).expect("write");
    let (stray, _) = object(2, 1);
    let hex = stray.to_hex();
    let foreign = [
        "keys/README".to_owned(),
        format!("keys/{hex}.partial"),
        format!("keys/{}", &hex[..63]),
        format!("keys/{}", hex.to_uppercase().replace('A', "G")),
        // A hex name in the wrong place is not an object of any type.
        format!("tmp/{hex}"),
        format!("data/{hex}"),
        format!("data/zz/{hex}"),
        format!(
            "data/{}/{hex}",
            if hex.starts_with("00") { "01" } else { "00" }
        ),
        format!("index/sub/{hex}"),
        hex.clone(),
    ];
    for name in &foreign {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, b"junk").expect("write foreign");
    }
    assert_eq!(b.list(FileType::Pack).expect("list"), vec![(id, 10)]);
    assert_eq!(b.list(FileType::Key).expect("list"), vec![(id, 7)]);
    assert_eq!(b.list(FileType::Index).expect("list"), vec![]);
    assert_eq!(b.list(FileType::Config).expect("list"), vec![]);
}

#[test]
fn local_open_missing_folder_does_not_create_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("missing");
    let b = OpendalBackend::local(&root).expect("open");
    assert!(!root.exists(), "opening created the folder");
    let (id, _) = object(1, 1);
    assert_eq!(kind_of(b.read(FileType::Config, &id)), ErrorKind::NotFound);
    assert_eq!(kind_of(b.size(FileType::Config, &id)), ErrorKind::NotFound);
    for t in FileType::ALL {
        assert_eq!(kind_of(b.list(t)), ErrorKind::NotFound, "list {t:?}");
    }
    assert_eq!(
        kind_of(b.write(FileType::Key, &id, vec![1])),
        ErrorKind::NotFound
    );
    assert_eq!(kind_of(b.delete(FileType::Key, &id)), ErrorKind::NotFound);
    assert!(!root.exists(), "a failed operation created the folder");

    // `create` is what makes it a repository.
    b.create().expect("create");
    b.write(FileType::Config, &id, b"cfg".to_vec())
        .expect("write config");
    assert_eq!(b.read(FileType::Config, &id).expect("read"), b"cfg");
}

#[test]
fn local_open_plain_folder_is_not_a_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
    let b = OpendalBackend::local(dir.path()).expect("open");
    let (id, _) = object(1, 1);
    assert_eq!(kind_of(b.read(FileType::Config, &id)), ErrorKind::NotFound);
    assert!(!dir.path().join("tmp").exists(), "opening added tmp/");
}

#[test]
fn local_create_refuses_existing_config() {
    let (_dir, root, b) = local_repo();
    b.write(FileType::Config, &Id::default(), b"cfg".to_vec())
        .expect("config");
    assert_eq!(kind_of(b.create()), ErrorKind::AlreadyExists);
    let reopened = OpendalBackend::local(&root).expect("reopen");
    assert_eq!(kind_of(reopened.create()), ErrorKind::AlreadyExists);
    assert_eq!(
        reopened
            .read(FileType::Config, &Id::default())
            .expect("read"),
        b"cfg"
    );
}

#[test]
fn local_objects_survive_reopening() {
    let (_dir, root, b) = local_repo();
    let (id, bytes) = object(3, 4096);
    b.write(FileType::Snapshot, &id, bytes.clone())
        .expect("write");
    drop(b);
    let reopened = OpendalBackend::local(&root).expect("reopen");
    assert_eq!(reopened.read(FileType::Snapshot, &id).expect("read"), bytes);
    assert_eq!(
        reopened.list(FileType::Snapshot).expect("list"),
        vec![(id, 4096)]
    );
}

/// Regression: `create` on a backend opened before the folder existed left it writing objects
/// in place, not through `tmp/`, so a crash could leave a torn object under its final name.
#[test]
fn local_writes_after_create_go_through_tmp() {
    let (_dir, root, b) = local_repo();
    // With `tmp/` replaced by a file, a write through it must fail.
    std::fs::remove_dir(root.join("tmp")).expect("rmdir");
    std::fs::write(root.join("tmp"), b"").expect("file");
    let (id, bytes) = object(4, 10);
    assert!(b.write(FileType::Index, &id, bytes.clone()).is_err());
    assert!(!root.join(FileType::Index.path(&id)).exists());
    std::fs::remove_file(root.join("tmp")).expect("rm");
    std::fs::create_dir(root.join("tmp")).expect("mkdir");
    b.write(FileType::Index, &id, bytes).expect("write");
    assert_no_stray_files(&root, &b);
}

#[test]
fn local_read_only_repository_refuses_writes() {
    use std::os::unix::fs::PermissionsExt;
    if nix::unistd::geteuid().is_root() {
        // Root ignores permission bits: nothing to test.
        return;
    }
    let (_dir, root, b) = local_repo();
    let set = |mode: u32| {
        for d in ["", "tmp", "keys"] {
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
    };
    set(0o555);
    let (id, bytes) = object(5, 10);
    let err = b.write(FileType::Key, &id, bytes);
    set(0o755);
    let err = err.expect_err("write into a read-only folder");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert_eq!(kind_of(b.read(FileType::Key, &id)), ErrorKind::NotFound);
}
