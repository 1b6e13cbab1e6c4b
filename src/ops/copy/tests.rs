//! Copies through the library on in-memory storage: failures of the target's storage part
//! way leave no snapshot and a target that checks clean, and the next copy completes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::backend::fault::{FaultBackend, Op};
use crate::backend::opendal::OpendalBackend;
use crate::backend::{Backend, FileType};
use crate::ops::NoProgress;
use crate::ops::backup::{self, BackupOptions, Source};
use crate::ops::check::{self, CheckOptions};
use crate::repo::InitOptions;
use crate::repo::tests::cheap_options;

fn small() -> InitOptions {
    InitOptions {
        chunker: crate::format::config::ChunkerParams {
            min: 4096,
            avg: 16384,
            max: 65536,
        },
        pack_size: 1 << 20,
        ..cheap_options()
    }
}

fn source_with_backup(dir: &Path) -> Repository {
    for i in 0..12u64 {
        let data = crate::format::vectors::samples::pseudo_random(250_000, 7 + i);
        std::fs::write(dir.join(format!("f{i}")), data).unwrap();
    }
    let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
    let repo = Repository::init(mem, b"pw", &small()).unwrap();
    let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
    backup::run(
        &repo,
        Source::Paths(vec![dir.to_path_buf()]),
        None,
        &BackupOptions::default(),
        &NoProgress,
        &cancel,
    )
    .unwrap();
    repo
}

fn copy(source: &Repository, target: &Repository) -> Result<CopyOutcome> {
    let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
    run(
        source,
        target,
        &CopyOptions::default(),
        &NoProgress,
        &cancel,
    )
}

#[test]
fn a_target_failing_part_way_keeps_no_snapshot_and_the_next_copy_completes() {
    let d = tempfile::tempdir().unwrap();
    let source = source_with_backup(d.path());
    for shared in [true, false] {
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let target = if shared {
            Repository::init_sharing_keys(mem.clone(), b"pw2", &small(), &source).unwrap()
        } else {
            Repository::init(mem.clone(), b"pw2", &small()).unwrap()
        };
        // Writes fail after two packs (and the locks and index files around them).
        let faulty =
            Arc::new(FaultBackend::new(mem.clone()).fail_writes_of_after(FileType::Pack, 2));
        let broken = Repository::open(faulty.clone(), b"pw2").unwrap();
        assert!(copy(&source, &broken).is_err(), "shared {shared}");
        assert!(faulty.calls(Op::Write) > 2);
        assert!(
            target.list_snapshots().unwrap().is_empty(),
            "shared {shared}"
        );
        let r = check::run(&target, &CheckOptions::default()).unwrap();
        assert!(r.is_ok(), "shared {shared}: {:?}", r.findings);

        let done = copy(&source, &target).unwrap();
        assert_eq!(done.shared_keys, shared);
        assert_eq!(done.copied.len(), 1);
        let r = check::run(&target, &CheckOptions::read_all()).unwrap();
        assert!(r.is_ok(), "shared {shared}: {:?}", r.findings);
        assert_eq!(target.list_snapshots().unwrap().len(), 1);
    }
}

#[test]
fn a_stop_request_writes_no_snapshot_and_copying_into_itself_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let source = source_with_backup(d.path());
    let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
    let target = Repository::init_sharing_keys(mem, b"pw2", &small(), &source).unwrap();
    let cancel: CancelFlag = Arc::new(AtomicBool::new(true));
    let e = run(
        &source,
        &target,
        &CopyOptions::default(),
        &NoProgress,
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Interrupted), "{e}");
    assert!(target.list_snapshots().unwrap().is_empty());
    let e = copy(&source, &source).unwrap_err();
    assert!(e.to_string().contains("same repository"), "{e}");
}
