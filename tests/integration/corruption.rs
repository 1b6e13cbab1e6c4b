//! Corruption harness: a small repository with two snapshots is copied for each trial, one
//! random repository file gets one random change (a flipped byte, a truncation, or deletion),
//! and then:
//!
//! - `check --read-data` must report it (exit non-zero). Every object but `config` is named
//!   by the hash of its bytes and `config` is authenticated, so no byte is ignorable (a pack's
//!   padding included). The one change no check can see is the deletion of a whole snapshot
//!   (nothing else names snapshots); it is counted apart, as undetectable by design.
//! - `restore` of every remaining snapshot never writes a wrong byte: each file is either
//!   exactly the source's or not restored at all.
//! - `repair index` then `check` behave: no panic, and damage confined to index files is
//!   always recovered (check passes after the repair and every snapshot restores exactly).
//!
//! `CISTA_CORRUPTION_TRIALS` sets the number of trials (default 20, seconds in CI);
//! `scripts/corruption.sh` runs the full count and prints the tally. `CISTA_CORRUPTION_SEED`
//! reproduces a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::harness::{Repo, Rng};

/// One snapshot's expected content: path below the source -> bytes.
type Tree = BTreeMap<PathBuf, Vec<u8>>;

struct Base {
    repo: Repo,
    src: PathBuf,
    /// Snapshot id (full hex) -> what it holds.
    snapshots: Vec<(String, Tree)>,
}

fn read_tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn build_base() -> Base {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("big"), Rng::new(1).bytes(120 << 10)).unwrap();
    std::fs::write(src.join("d/mid"), Rng::new(2).bytes(30 << 10)).unwrap();
    std::fs::write(src.join("d/text"), b"small and compressible ".repeat(50)).unwrap();
    let mut snapshots = Vec::new();
    let s = repo.backup(&[&src]);
    snapshots.push((
        s["snapshot_id"].as_str().unwrap().to_owned(),
        read_tree(&src),
    ));
    // The second snapshot changes one file and adds one: it shares most blobs with the first.
    let mut big = Rng::new(1).bytes(120 << 10);
    big[60 << 10] ^= 0xff;
    std::fs::write(src.join("big"), big).unwrap();
    std::fs::write(src.join("d/new"), Rng::new(3).bytes(9000)).unwrap();
    let s = repo.backup(&[&src]);
    snapshots.push((
        s["snapshot_id"].as_str().unwrap().to_owned(),
        read_tree(&src),
    ));
    Base {
        repo,
        src,
        snapshots,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (p, q) = (e.path(), to.join(e.file_name()));
        if p.is_dir() {
            copy_dir(&p, &q);
        } else {
            std::fs::copy(&p, &q).unwrap();
        }
    }
}

/// Every file of the repository (config, keys, snapshots, index files, packs).
fn repo_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = read_tree(root).into_keys().collect();
    v.sort();
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Flip,
    Truncate,
    Delete,
}

#[derive(Debug, Default)]
struct Tally {
    trials: usize,
    detected: usize,
    /// Whole snapshots deleted: no check can see it.
    undetectable: usize,
    /// Detected damage that `repair index` repaired entirely (check passes after it).
    recovered: usize,
    /// Index-only damage (every such trial must be recovered).
    index_only: usize,
    /// Files restored exactly / refused (never wrong).
    files_exact: usize,
    files_refused: usize,
}

/// Restores every snapshot still listed and compares each file with the source it came
/// from; panics on any wrong byte. Returns (exact, refused) file counts.
fn restore_all(repo: &Repo, base: &Base, tag: &str) -> (usize, usize) {
    let (mut exact, mut refused) = (0, 0);
    for (i, (id, tree)) in base.snapshots.iter().enumerate() {
        let target = repo.scratch(&format!("restore-{tag}-{i}"));
        let r = repo.run(&[
            "restore".as_ref(),
            std::ffi::OsStr::new(&id[..16]),
            "--target".as_ref(),
            target.as_os_str(),
        ]);
        assert!(r.code.is_some(), "restore was killed: {}", r.stderr);
        let out = super::fixture::restored_path(&target, &base.src);
        for (path, want) in tree {
            match std::fs::read(out.join(path)) {
                Ok(got) => {
                    assert!(
                        got == *want,
                        "{tag}: restore wrote wrong bytes to {} (exit {:?}): {}",
                        path.display(),
                        r.code,
                        r.stderr
                    );
                    exact += 1;
                }
                Err(_) => refused += 1,
            }
        }
        // Nothing but the snapshot's files, and no temporary leftovers.
        if out.exists() {
            for p in read_tree(&out).into_keys() {
                assert!(tree.contains_key(&p), "{tag}: restore left {}", p.display());
            }
        }
        let _ = std::fs::remove_dir_all(&target);
    }
    (exact, refused)
}

fn trial(base: &Base, rng: &mut Rng, n: usize, tally: &mut Tally) {
    let dir = tempfile::Builder::new()
        .prefix("cista-corrupt-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("repo");
    copy_dir(&base.repo.path, &path);
    let repo = Repo {
        dir,
        path,
        password: base.repo.password.clone(),
    };
    let files = repo_files(&repo.path);
    let victim = files[(rng.next_u64() % files.len() as u64) as usize].clone();
    let full = repo.path.join(&victim);
    let mut bytes = std::fs::read(&full).unwrap();
    let change = match rng.next_u64() % 3 {
        0 => Change::Flip,
        1 => Change::Truncate,
        _ => Change::Delete,
    };
    match change {
        Change::Flip => {
            let at = (rng.next_u64() % bytes.len() as u64) as usize;
            bytes[at] ^= (rng.next_u64() % 255 + 1) as u8;
            std::fs::write(&full, &bytes).unwrap();
        }
        Change::Truncate => {
            bytes.truncate((rng.next_u64() % bytes.len() as u64) as usize);
            std::fs::write(&full, &bytes).unwrap();
        }
        Change::Delete => std::fs::remove_file(&full).unwrap(),
    }
    let tag = format!("trial {n}: {change:?} {}", victim.display());
    let folder = victim.iter().next().unwrap().to_string_lossy().into_owned();
    tally.trials += 1;

    let check = repo.run(&["check", "--read-data"]);
    let code = check.code.unwrap_or(-1);
    let undetectable = folder == "snapshots" && change == Change::Delete;
    if undetectable {
        tally.undetectable += 1;
    } else {
        assert_ne!(
            code, 0,
            "{tag}: check --read-data missed it: {}",
            check.stderr
        );
        tally.detected += 1;
    }

    let (exact, refused) = restore_all(&repo, base, &tag);
    tally.files_exact += exact;
    tally.files_refused += refused;

    let repair = repo.run(&["repair", "index"]);
    assert!(repair.code.is_some(), "{tag}: repair killed");
    let after = repo.run(&["check", "--read-data"]);
    assert!(after.code.is_some(), "{tag}: check killed");
    if folder == "index" {
        tally.index_only += 1;
        assert_eq!(
            repair.code,
            Some(0),
            "{tag}: repair index: {}",
            repair.stderr
        );
        assert_eq!(
            after.code,
            Some(0),
            "{tag}: not recovered: {}",
            after.stderr
        );
        let (_, refused) = restore_all(&repo, base, &format!("{tag} after repair"));
        assert_eq!(refused, 0, "{tag}: files lost after repairing the index");
    }
    if after.code == Some(0) && !undetectable {
        tally.recovered += 1;
    }
}

#[test]
fn random_damage_is_detected_and_never_restored_as_data() {
    let trials: usize = std::env::var("CISTA_CORRUPTION_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CISTA_CORRUPTION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let base = build_base();
    base.repo.run(&["check", "--read-data"]).ok();
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    for n in 0..trials {
        trial(&base, &mut rng, n, &mut tally);
    }
    eprintln!(
        "corruption: {} trials (seed {seed}), {} detected, {} undetectable by design (a whole snapshot deleted), {} recovered by `repair index` (all {} index-only), restored files: {} exact, {} refused, 0 wrong",
        tally.trials,
        tally.detected,
        tally.undetectable,
        tally.recovered,
        tally.index_only,
        tally.files_exact,
        tally.files_refused
    );
    assert_eq!(tally.detected + tally.undetectable, tally.trials);
}
