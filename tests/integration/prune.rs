//! `cista prune` end to end: it frees what no snapshot needs and everything kept restores; a
//! pack a running process may still need is retired, not deleted, until that process ends;
//! a snapshot that reused a retired pack's blob makes the next prune keep the pack; backups
//! never reuse a retired blob; two maintenance operations exclude each other; doubt (a
//! missing pack) stops prune before it changes anything; `--dry-run` changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::harness::{Repo, Rng, num};
use super::lock_sessions::Holder;

/// Every file of the repository with its size (what prune may change).
fn repo_files(repo: &Repo) -> BTreeMap<PathBuf, u64> {
    ["data", "index", "snapshots"]
        .iter()
        .flat_map(|d| repo.files_in(d))
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect()
}

fn data_bytes(repo: &Repo) -> u64 {
    repo.files_in("data")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

fn write_files(dir: &Path, seed: u64, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(seed);
    for n in names {
        std::fs::write(dir.join(n), rng.bytes(300_000)).unwrap();
    }
}

/// Removes a snapshot's file (what `forget` does), returning its bytes.
fn drop_snapshot(repo: &Repo, id: &str) -> Vec<u8> {
    let p = repo.path.join("snapshots").join(id);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    bytes
}

fn snapshot_id(summary: &serde_json::Value) -> String {
    summary["snapshot_id"].as_str().unwrap().to_owned()
}

#[track_caller]
fn restores_exactly(repo: &Repo, id: &str, src: &Path) {
    let target = repo.scratch(&format!("restored-{id}"));
    repo.run(&[
        "restore".as_ref(),
        id.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ])
    .ok();
    let inside = target.join(src.strip_prefix("/").unwrap());
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let got = std::fs::read(inside.join(e.file_name())).unwrap();
        assert_eq!(got, std::fs::read(e.path()).unwrap(), "{:?}", e.file_name());
    }
    std::fs::remove_dir_all(&target).unwrap();
}

/// Two snapshots sharing one file; the first is dropped, so its own files are garbage.
fn two_nights(repo: &Repo) -> (PathBuf, String, String) {
    let src = repo.scratch("src");
    write_files(&src, 1, &["a", "b", "keep"]);
    let first = snapshot_id(&repo.backup(&[&src]));
    std::fs::remove_file(src.join("a")).unwrap();
    std::fs::remove_file(src.join("b")).unwrap();
    write_files(&src, 2, &["c"]);
    let second = snapshot_id(&repo.backup(&[&src]));
    (src, first, second)
}

#[test]
fn prune_frees_unused_data_and_every_kept_snapshot_restores() {
    let repo = Repo::new();
    let (src, first, second) = two_nights(&repo);
    drop_snapshot(&repo, &first);
    let before = data_bytes(&repo);
    let r = repo.run(&["prune", "--max-unused", "0%"]).ok();
    assert!(r.stdout_str().contains("to repack:"), "{}", r.stdout_str());
    let after = data_bytes(&repo);
    assert!(
        after < before - 500_000,
        "prune freed too little: {before} -> {after}"
    );
    repo.run(&["check", "--read-data"]).ok();
    restores_exactly(&repo, &second, &src);
    // A second prune has nothing left to do and changes nothing.
    let files = repo_files(&repo);
    repo.run(&["prune", "--max-unused", "0%"]).ok();
    assert_eq!(repo_files(&repo), files);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let repo = Repo::new();
    let (_, first, _) = two_nights(&repo);
    drop_snapshot(&repo, &first);
    let files = repo_files(&repo);
    let r = repo.run(&["prune", "--dry-run", "--json"]).ok();
    let v = r.json();
    assert_eq!(v["dry_run"], true);
    assert!(num(&v, "unused_size") > 500_000, "{v}");
    assert_eq!(repo_files(&repo), files);
}

#[test]
fn packs_a_running_process_may_need_wait_until_it_has_ended() {
    let repo = Repo::new();
    let (src, first, second) = two_nights(&repo);
    drop_snapshot(&repo, &first);
    let mut reader = Holder::start(&repo, "shared", &[]);
    let before = data_bytes(&repo);
    let r = repo.run(&["prune", "--max-unused", "0%", "--json"]).ok();
    let v = r.json();
    assert_eq!(num(&v, "packs_deleted"), 0, "{v}");
    assert!(num(&v, "packs_waiting") > 0, "{v}");
    assert_eq!(num(&v, "waiting_for_processes"), 1, "{v}");
    // Retired packs are still there for the reader; the repository is whole meanwhile.
    assert!(data_bytes(&repo) >= before);
    repo.run(&["check"]).ok();
    restores_exactly(&repo, &second, &src);
    // A prune while the reader still runs deletes nothing it may need.
    let v = repo.run(&["prune", "--json"]).ok().json();
    assert_eq!(num(&v, "packs_deleted"), 0, "{v}");
    reader.kill9();
    let v = repo.run(&["prune", "--json"]).ok().json();
    assert!(num(&v, "packs_deleted") > 0, "{v}");
    assert!(data_bytes(&repo) < before - 500_000);
    repo.run(&["check", "--read-data"]).ok();
    restores_exactly(&repo, &second, &src);
}

#[test]
fn a_snapshot_that_reused_a_retired_pack_makes_the_next_prune_keep_it() {
    // A backup that started before the prune (its lock is the holder) reused blobs of the
    // first snapshot; the prune retires their packs; the backup then commits a snapshot
    // that needs them (here: the first snapshot's own bytes, written back).
    let repo = Repo::new();
    let (src, first, _) = two_nights(&repo);
    let snapshot_bytes = drop_snapshot(&repo, &first);
    let mut backup = Holder::start(&repo, "shared", &[]);
    let v = repo
        .run(&["prune", "--max-unused", "0%", "--json"])
        .ok()
        .json();
    assert!(num(&v, "packs_waiting") > 0, "{v}");
    std::fs::write(repo.path.join("snapshots").join(&first), snapshot_bytes).unwrap();
    // Readers find the retired blobs meanwhile: the snapshot restores at once.
    let target = repo.scratch("early");
    repo.run(&[
        "restore".as_ref(),
        first.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ])
    .ok();
    backup.kill9();
    let v = repo
        .run(&["prune", "--max-unused", "0%", "--json"])
        .ok()
        .json();
    assert!(num(&v, "obsolete_resurrected") > 0, "{v}");
    repo.run(&["check", "--read-data"]).ok();
    let first_src = repo.scratch("first-src");
    write_files(&first_src, 1, &["a", "b", "keep"]);
    let restored = repo.scratch("first-restored");
    repo.run(&[
        "restore".as_ref(),
        first.as_ref(),
        "--target".as_ref(),
        restored.as_os_str(),
    ])
    .ok();
    let inside = restored.join(src.strip_prefix("/").unwrap());
    for n in ["a", "b", "keep"] {
        assert_eq!(
            std::fs::read(inside.join(n)).unwrap(),
            std::fs::read(first_src.join(n)).unwrap(),
            "{n}"
        );
    }
}

#[test]
fn a_backup_never_reuses_a_blob_of_a_retired_pack() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    write_files(&src, 5, &["x"]);
    let first = snapshot_id(&repo.backup(&[&src]));
    drop_snapshot(&repo, &first);
    let _reader = Holder::start(&repo, "shared", &[]);
    let v = repo.run(&["prune", "--json"]).ok().json();
    assert!(num(&v, "packs_waiting") > 0, "{v}");
    // The same content again: its blobs are only in retired packs, so they are stored anew.
    let s = repo.backup(&[&src]);
    assert!(num(&s, "data_added") >= 300_000, "{s}");
    repo.run(&["check"]).ok();
    restores_exactly(&repo, &snapshot_id(&s), &src);
}

#[test]
fn a_second_maintenance_operation_exits_11_naming_the_holder() {
    let repo = Repo::new();
    let (_, first, _) = two_nights(&repo);
    drop_snapshot(&repo, &first);
    let holder = Holder::start(&repo, "maintenance", &[]);
    let r = repo.run(&["prune"]).expect_code(11);
    assert!(
        r.stderr.contains(&format!("pid {}", holder.pid())),
        "{}",
        r.stderr
    );
}

#[test]
fn a_missing_needed_pack_stops_prune_before_it_changes_anything() {
    let repo = Repo::new();
    let (_, first, _) = two_nights(&repo);
    drop_snapshot(&repo, &first);
    // Every pack gone, so some pack a snapshot needs is surely among them.
    for p in repo.files_in("data") {
        std::fs::remove_file(p).unwrap();
    }
    let files = repo_files(&repo);
    let r = repo.run(&["prune", "--max-unused", "0%"]).expect_code(1);
    assert!(
        r.stderr.contains("prune stopped before changing anything"),
        "{}",
        r.stderr
    );
    assert_eq!(repo_files(&repo), files);
}
