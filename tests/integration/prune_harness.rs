//! The crash and concurrency harnesses of prune (issue 8), in the test suite so CI runs them
//! in a reduced form; `scripts/harness.sh` runs the full counts.
//!
//! - Crash: backup, `forget --prune` and `rewrite`, each SIGKILLed at a random moment; after
//!   every kill `check` passes and every snapshot restores byte-identical to the source state
//!   it recorded. `CISTA_HARNESS_KILLS` sets the number of kills (default 9); each kill
//!   lands at a random moment within the operation's measured running time.
//! - Concurrency: four backup processes in loops against one repository (different hosts,
//!   sharing content so they reuse each other's blobs) while `forget --prune` runs in a loop;
//!   no backup waits or fails, and every snapshot that completed restores exactly.
//!   `CISTA_HARNESS_SECONDS` sets how long (default 6).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Repo, Rng};

fn env_count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// File path (relative) -> BLAKE3 of its content, for every regular file below `dir`.
type Digest = BTreeMap<PathBuf, [u8; 32]>;

fn digest(dir: &Path) -> Digest {
    let mut out = Digest::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    *blake3::hash(&bytes).as_bytes(),
                );
            }
        }
    }
    out
}

/// A source tree that changes a little each "night": some files shared by every source (so
/// backups of different hosts reuse each other's blobs), some its own.
struct Source {
    root: PathBuf,
    rng: Rng,
    next: u64,
}

impl Source {
    fn new(root: PathBuf, seed: u64) -> Self {
        std::fs::create_dir_all(root.join("shared")).unwrap();
        std::fs::create_dir_all(root.join("own/deep/er")).unwrap();
        let mut shared = Rng::new(7);
        for i in 0..6 {
            let n = 20_000 + (shared.next_u64() % 120_000) as usize;
            std::fs::write(root.join(format!("shared/s{i}.bin")), shared.bytes(n)).unwrap();
        }
        let mut s = Self {
            root,
            rng: Rng::new(seed),
            next: 0,
        };
        for _ in 0..8 {
            s.add();
        }
        s
    }

    fn add(&mut self) {
        let n = 1_000 + (self.rng.next_u64() % 150_000) as usize;
        let dir = ["own", "own/deep", "own/deep/er"][(self.next % 3) as usize];
        let ext = if self.next.is_multiple_of(4) {
            "tmp"
        } else {
            "dat"
        };
        let p = self.root.join(format!("{dir}/f{}.{ext}", self.next));
        std::fs::write(p, self.rng.bytes(n)).unwrap();
        self.next += 1;
    }

    /// One night of change: a file rewritten, one added, one removed.
    fn change(&mut self) {
        let files: Vec<PathBuf> = digest(&self.root.join("own"))
            .into_keys()
            .map(|p| self.root.join("own").join(p))
            .collect();
        if let Some(p) = files.get((self.rng.next_u64() % files.len().max(1) as u64) as usize) {
            let n = 1_000 + (self.rng.next_u64() % 100_000) as usize;
            std::fs::write(p, self.rng.bytes(n)).unwrap();
        }
        self.add();
        if files.len() > 6 {
            let victim = &files[(self.rng.next_u64() % files.len() as u64) as usize];
            let _ = std::fs::remove_file(victim);
        }
    }
}

/// Restores `id` and compares it with what its source held.
#[track_caller]
fn assert_restores(repo: &Repo, id: &str, source: &Path, expected: &Digest, what: &str) {
    let target = repo.scratch(&format!("restore-{id}"));
    let _ = std::fs::remove_dir_all(&target);
    let r = repo.run(&[
        "restore".as_ref(),
        id.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    assert_eq!(
        r.code,
        Some(0),
        "{what}: restore of {id} failed: {}",
        r.stderr
    );
    let inside = target.join(source.strip_prefix("/").unwrap());
    let got = digest(&inside);
    assert!(
        &got == expected,
        "{what}: snapshot {id} restored different bytes: {} files expected, {} restored",
        expected.len(),
        got.len()
    );
    std::fs::remove_dir_all(&target).unwrap();
}

#[track_caller]
fn assert_check(repo: &Repo, what: &str) {
    let r = repo.run(&["check"]);
    assert_eq!(
        r.code,
        Some(0),
        "{what}: check failed:\n{}{}",
        r.stdout_str(),
        r.stderr
    );
}

/// Snapshot ids (full) with their `original` (set by rewrite) and host.
fn snapshot_ids(repo: &Repo) -> Vec<(String, Option<String>, String)> {
    repo.snapshots(&[])
        .into_iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["original"].as_str().map(str::to_owned),
                s["hostname"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn without_tmp(d: &Digest) -> Digest {
    d.iter()
        .filter(|(p, _)| p.extension().is_none_or(|e| e != "tmp"))
        .map(|(p, h)| (p.clone(), *h))
        .collect()
}

fn spawn(repo: &Repo, args: &[&str]) -> Child {
    repo.cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_at_random_moments_never_loses_a_completed_snapshot() {
    let kills = env_count("CISTA_HARNESS_KILLS", 9);
    let base = Path::new("/var/tmp");
    let repo = Repo::new_in(base);
    let src_root = repo.dir.path().join("src");
    let mut src = Source::new(src_root.clone(), 42);
    let mut rng = Rng::new(kills ^ 0x5eed);
    // Snapshot id -> the source state it holds.
    let mut expected: HashMap<String, Digest> = HashMap::new();
    let known = |repo: &Repo, expected: &mut HashMap<String, Digest>, state: &Digest| {
        for (id, original, _) in snapshot_ids(repo) {
            if expected.contains_key(&id) {
                continue;
            }
            // A rewrite's result holds its original minus the excluded files; a new backup
            // holds the state it was started on.
            let e = match original.and_then(|o| expected.get(&o).cloned()) {
                Some(orig) => without_tmp(&orig),
                None => state.clone(),
            };
            expected.insert(id, e);
        }
    };
    for _ in 0..3 {
        src.change();
        repo.backup(&[&src_root]);
        let state = digest(&src_root);
        known(&repo, &mut expected, &state);
    }
    // Each operation's time when left alone, so kills land anywhere inside it: measured once
    // here, then kept up to date from the trials that finished before their kill.
    let mut took = [Duration::from_millis(200); 3];
    let mut killed = [0u64; 3];
    let mut trials = 0u64;
    while killed.iter().sum::<u64>() < kills && trials < kills * 4 + 10 {
        let k = trials;
        trials += 1;
        let op = (k % 3) as usize;
        if op == 0 {
            src.change();
        }
        let state = digest(&src_root);
        let src_arg = src_root.to_str().unwrap().to_owned();
        let args: Vec<&str> = match op {
            0 => vec!["backup", &src_arg],
            1 => vec![
                "forget",
                "--keep-last",
                "3",
                "--prune",
                "--max-unused",
                "0%",
            ],
            _ => vec!["rewrite", "--exclude", "*.tmp", "latest"],
        };
        let started = Instant::now();
        let mut child = spawn(&repo, &args);
        // The first round of each operation runs to the end, to learn how long it takes.
        let span = took[op].as_micros().max(1000) as u64;
        let delay = if k < 3 {
            Duration::from_secs(3600)
        } else {
            Duration::from_micros(rng.next_u64() % span)
        };
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() >= delay {
                break None;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        match finished {
            Some(_) => took[op] = (took[op] + started.elapsed()) / 2,
            None => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
                child.wait().unwrap();
                killed[op] += 1;
            }
        }
        let what = format!("trial {k} ({}, killed after {delay:?})", args.join(" "));
        assert_check(&repo, &what);
        known(&repo, &mut expected, &state);
        // Every snapshot there is restores what it recorded (the newest two each trial, all
        // of them every tenth trial, to keep the reduced run short).
        let ids = snapshot_ids(&repo);
        let sample: Vec<&(String, Option<String>, String)> = if k % 10 == 9 {
            ids.iter().collect()
        } else {
            ids.iter().rev().take(2).collect()
        };
        for (id, ..) in sample {
            assert_restores(&repo, id, &src_root, &expected[id], &what);
        }
    }
    // A last uninterrupted prune finishes every job the kills left, and all is still there.
    repo.run(&["prune", "--max-unused", "0%"]).ok();
    assert_check(&repo, "after the final prune");
    for (id, ..) in snapshot_ids(&repo) {
        assert_restores(
            &repo,
            &id,
            &src_root,
            &expected[&id],
            "after the final prune",
        );
    }
    eprintln!(
        "crash harness: {trials} trials, {} kills (backup {}, forget --prune {}, rewrite {}), check passed and every snapshot restored after each",
        killed.iter().sum::<u64>(),
        killed[0],
        killed[1],
        killed[2]
    );
    assert!(
        killed.iter().sum::<u64>() >= kills,
        "only {killed:?} kills in {trials} trials"
    );
}

#[test]
fn backups_running_beside_a_prune_loop_never_wait_and_never_lose_data() {
    let seconds = env_count("CISTA_HARNESS_SECONDS", 6);
    let repo = Arc::new(Repo::new_in(Path::new("/var/tmp")));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // (snapshot id, source root, state) of every backup that completed.
    let completed: Arc<Mutex<Vec<(String, PathBuf, Digest)>>> = Arc::default();
    let mut workers = Vec::new();
    for h in 0..4u64 {
        let (repo, completed) = (repo.clone(), completed.clone());
        workers.push(std::thread::spawn(move || {
            let root = repo.dir.path().join(format!("src{h}"));
            let mut src = Source::new(root.clone(), 100 + h);
            let host = format!("host{h}");
            let mut runs = 0;
            while Instant::now() < deadline || runs == 0 {
                src.change();
                let state = digest(&root);
                let r = repo.run(&[
                    "backup".as_ref(),
                    "--json".as_ref(),
                    "--host".as_ref(),
                    host.as_ref(),
                    root.as_os_str(),
                ]);
                assert_eq!(
                    r.code,
                    Some(0),
                    "{host}: backup failed beside prune: {}",
                    r.stderr
                );
                let id = crate::harness::summary_of(&r)["snapshot_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                completed.lock().unwrap().push((id, root.clone(), state));
                runs += 1;
            }
            runs
        }));
    }
    let pruner = {
        let repo = repo.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            while Instant::now() < deadline {
                let r = repo.run(&[
                    "forget",
                    "--keep-last",
                    "2",
                    "--prune",
                    "--max-unused",
                    "0%",
                ]);
                if r.code != Some(0) {
                    // Keep the repository for a post-mortem.
                    let keep = std::path::Path::new("/var/tmp/cista-harness-failed");
                    let _ = std::process::Command::new("cp")
                        .arg("-a")
                        .arg(&repo.path)
                        .arg(keep)
                        .status();
                }
                assert_eq!(r.code, Some(0), "forget --prune failed: {}", r.stderr);
                runs += 1;
            }
            runs
        })
    };
    let backups: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let prunes = pruner.join().unwrap();
    assert_check(&repo, "after the concurrent runs");
    let present: Vec<String> = snapshot_ids(&repo).into_iter().map(|s| s.0).collect();
    let completed = completed.lock().unwrap();
    let mut restored = 0;
    for (id, root, state) in completed.iter() {
        if present.contains(id) {
            assert_restores(&repo, id, root, state, "concurrent");
            restored += 1;
        }
    }
    // Two more prunes sweep what waited for the backups; everything kept still restores.
    repo.run(&["prune", "--max-unused", "0%"]).ok();
    repo.run(&["prune", "--max-unused", "0%"]).ok();
    assert_check(&repo, "after the sweeping prunes");
    for (id, root, state) in completed.iter() {
        if present.contains(id) {
            assert_restores(&repo, id, root, state, "after sweeping");
        }
    }
    eprintln!(
        "concurrency harness: {backups} backups on 4 hosts, {prunes} forget --prune runs, {restored} snapshots restored"
    );
    assert!(prunes > 0 && backups >= 4);
}
