//! One conformance suite for every [`Backend`] (restic's `backend/test`).
//!
//! [`run_all`] states the trait's contract as executable checks and runs against each
//! implementation: the in-memory store and a local folder (unit tests), and an S3 server and
//! an OpenSSH sftp server (integration tests, which is why this module is built with the
//! `testing` feature). Checks that only make sense for a folder (file layout, leftover
//! temporary files, permissions) are local-only tests in `backend::local`. Wrappers (retry,
//! fault injection) are tested in their own modules.
//!
//! A failed check panics with what it expected: this is test code, compiled into the library
//! only under `testing`, never into a release build.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fmt::Debug;

use super::{Backend, BackendError, ErrorKind, FileType};
use crate::id::Id;

/// Deterministic, seed-dependent bytes and the id they would be stored under.
pub fn object(seed: u8, len: usize) -> (Id, Vec<u8>) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    // Mixing the seed in keeps two empty objects from sharing an id.
    let mut named = bytes.clone();
    named.push(seed);
    (Id::of_stored(&named), bytes)
}

/// The kind of the error `r` must be.
pub fn kind_of<T: Debug>(r: Result<T, BackendError>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind,
    }
}

fn sorted(mut v: Vec<(Id, u64)>) -> Vec<(Id, u64)> {
    v.sort();
    v
}

/// Objects [`run_all`] lists in one folder: past S3's and Azure's 1000-key page, so a backend
/// that reads only the first page of a listing fails.
pub const MANY: usize = 2500;

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
    many_objects_list_completely(b, MANY);
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

/// Replacing the config swaps it whole, or (storage that cannot replace atomically, such as
/// sftp) is refused and leaves it as it was.
fn replace_config_swaps_it_whole(b: &dyn Backend) {
    let before = b.read(FileType::Config, &Id::default()).expect("read");
    let (_, new) = object(55, 140);
    if let Err(e) = b.replace_config(new.clone()) {
        assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
        assert!(e.message.contains("cannot replace"), "{e}");
        assert_eq!(
            b.read(FileType::Config, &Id::default()).expect("read"),
            before
        );
        return;
    }
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
    // Every case also through `read_range_into`, into one buffer that starts out holding
    // something else and is reused: it must end up holding exactly the range, or fail alike.
    let reused = std::cell::RefCell::new(vec![0xAB; 4096]);
    let into = |id: &Id, off: u64, len: u64, one: &Result<Vec<u8>, BackendError>| {
        let mut buf = reused.borrow_mut();
        let other = b.read_range_into(FileType::Pack, id, off, len, &mut buf);
        match (one, other) {
            (Ok(v), Ok(())) => assert_eq!(*buf, *v, "read_range_into {off}+{len}"),
            (Err(e), Err(f)) => assert_eq!(e.kind, f.kind, "read_range_into {off}+{len}"),
            (one, other) => panic!("read_range {one:?} but read_range_into {other:?}"),
        }
    };
    let r = |off: u64, len: u64| {
        let one = b.read_range(FileType::Pack, &id, off, len);
        into(&id, off, len, &one);
        one
    };
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
    for len in [1, 0] {
        let one = b.read_range(FileType::Pack, &missing, 0, len);
        into(&missing, 0, len, &one);
        assert_eq!(kind_of(one), ErrorKind::NotFound);
    }
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
        assert_eq!(
            kind_of(b.read_range(t, &id, 0, 1)),
            ErrorKind::NotFound,
            "read_range {t:?}"
        );
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

/// `count` objects in one folder are all listed, with their sizes (a listing is paged by
/// object stores), and stat agrees with the listing.
pub fn many_objects_list_completely(b: &dyn Backend, count: usize) {
    let before = b.list(FileType::Snapshot).expect("list").len();
    let objects: Vec<(Id, Vec<u8>)> = (0..count)
        .map(|i| {
            let bytes = format!("many-{i}").into_bytes();
            (Id::of_stored(&bytes), bytes)
        })
        .collect();
    // A few writers at once, as a backup does: the count is what a slow server makes costly.
    std::thread::scope(|s| {
        for chunk in objects.chunks(count.div_ceil(8).max(1)) {
            s.spawn(move || {
                for (id, bytes) in chunk {
                    b.write(FileType::Snapshot, id, bytes.clone())
                        .expect("write");
                }
            });
        }
    });
    let listed = sorted(b.list(FileType::Snapshot).expect("list"));
    assert_eq!(listed.len(), before + count, "every object listed once");
    for (id, bytes) in &objects {
        assert!(
            listed.binary_search(&(*id, bytes.len() as u64)).is_ok(),
            "{id:?} listed with its size"
        );
    }
    let (id, bytes) = &objects[count / 2];
    assert_eq!(
        b.size(FileType::Snapshot, id).expect("stat"),
        bytes.len() as u64
    );
}
