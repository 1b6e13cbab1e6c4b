//! Locks held by another process: an exclusive lock stops a backup with exit 11, a shared one
//! does not, and `unlock --remove-all` clears them.

use cista::format::lock::LockMode;
use cista::host::Host;

use super::harness::Repo;

fn source(repo: &Repo) -> std::path::PathBuf {
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"locked out").unwrap();
    src
}

fn backup(repo: &Repo, src: &std::path::Path) -> super::harness::Run {
    repo.run(&["backup".as_ref(), "-q".as_ref(), src.as_os_str()])
}

#[test]
fn exclusive_lock_blocks_backup_with_exit_11() {
    let repo = Repo::new();
    let src = source(&repo);
    let lib = repo.open();
    let guard = lib
        .lock(LockMode::Exclusive, &Host::this_process())
        .unwrap();
    let r = backup(&repo, &src).expect_code(11);
    assert!(r.stderr.contains("locked"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&std::process::id().to_string()),
        "holder not named: {}",
        r.stderr
    );
    assert!(repo.snapshots(&["--no-lock"]).is_empty());
    // check and every reading command take a shared lock, which conflicts too...
    repo.run(&["check"]).expect_code(11);
    repo.run(&["snapshots"]).expect_code(11);
    // ...unless told to take none (read-only storage).
    repo.run(&["--no-lock", "snapshots"]).ok();

    drop(guard);
    assert!(
        repo.files_in("locks").is_empty(),
        "lock not released on drop"
    );
    backup(&repo, &src).ok();
    assert_eq!(repo.snapshots(&[]).len(), 1);
    assert!(repo.files_in("locks").is_empty(), "backup left its lock");
}

#[test]
fn shared_lock_does_not_block_backup() {
    let repo = Repo::new();
    let src = source(&repo);
    let lib = repo.open();
    let guard = lib.lock(LockMode::Shared, &Host::this_process()).unwrap();
    backup(&repo, &src).ok();
    repo.run(&["check"]).ok();
    // But it does block an exclusive locker.
    assert!(matches!(
        lib.lock(LockMode::Exclusive, &Host::this_process()),
        Err(cista::Error::Locked { .. })
    ));
    drop(guard);
    drop(
        lib.lock(LockMode::Exclusive, &Host::this_process())
            .unwrap(),
    );
}

#[test]
fn unlock_remove_all_clears_live_locks() {
    let repo = Repo::new();
    let src = source(&repo);
    let lib = repo.open();
    let guard = lib
        .lock(LockMode::Exclusive, &Host::this_process())
        .unwrap();
    assert_eq!(repo.files_in("locks").len(), 1);
    // A live lock is not stale: plain unlock keeps it.
    let r = repo.run(&["unlock"]).ok();
    assert!(
        r.stdout_str().contains("successfully removed 0 locks"),
        "{}",
        r.stdout_str()
    );
    backup(&repo, &src).expect_code(11);

    let r = repo.run(&["unlock", "--remove-all"]).ok();
    assert!(
        r.stdout_str().contains("successfully removed 1 locks"),
        "{}",
        r.stdout_str()
    );
    assert!(repo.files_in("locks").is_empty());
    backup(&repo, &src).ok();
    drop(guard);
    assert!(repo.files_in("locks").is_empty());
}
