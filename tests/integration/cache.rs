//! The metadata cache through the real binary, proved with the request counts of
//! `CISTA_DEBUG_BACKEND_STATS=1`: a second `snapshots`, `ls` or incremental backup reads no
//! index file, snapshot, key file or tree pack it already has; corrupt and stale copies only
//! cost a download; `--no-cache` creates nothing; `check` looks at storage through a fresh
//! temporary cache, not the user's.
//! Local repositories are cached only with the hidden `CISTA_CACHE_LOCAL=1`, as here.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::harness::{Repo, Run, contents, run_cmd};

/// One run's request counts (`snapshot.read`, `cache.hits`, `requests`, ...); absent keys are
/// zero.
#[derive(Debug, Default)]
struct Counts(BTreeMap<String, u64>);

impl Counts {
    fn of(run: &Run) -> Self {
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with("backend stats "))
            .unwrap_or_else(|| panic!("no stats line in stderr:\n{}", run.stderr));
        let (_, tokens) = line.split_once(": ").expect("stats line has a colon");
        Self(
            tokens
                .split_whitespace()
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.parse().expect("a count")))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Whole and ranged reads of objects of `kind`.
    fn reads(&self, kind: &str) -> u64 {
        self.get(&format!("{kind}.read")) + self.get(&format!("{kind}.read_range"))
    }

    /// Reads of the metadata the cache keeps.
    fn metadata_reads(&self) -> u64 {
        ["key", "index", "snapshot", "pack"]
            .iter()
            .map(|k| self.reads(k))
            .sum()
    }
}

/// A repository and a cache folder beside it.
struct Rig {
    repo: Repo,
    cache: PathBuf,
}

impl Rig {
    fn new() -> Self {
        let repo = Repo::new();
        let cache = repo.scratch("cache");
        Self { repo, cache }
    }

    /// A command with the cache on (for this local repository) and the stats printed.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.repo.cmd(args);
        c.env("CISTA_CACHE_LOCAL", "1")
            .env("CISTA_DEBUG_BACKEND_STATS", "1")
            .env("CISTA_CACHE_DIR", &self.cache);
        c
    }

    fn run(&self, args: &[&str]) -> (Run, Counts) {
        let r = run_cmd(self.cmd(args), None).ok();
        let c = Counts::of(&r);
        (r, c)
    }

    /// The same command without the cache (as another machine, or the uncached baseline).
    fn uncached(&self, args: &[&str]) -> (Run, Counts) {
        let mut full = vec!["--no-cache"];
        full.extend_from_slice(args);
        self.run(&full)
    }

    fn repo_cache(&self) -> PathBuf {
        self.cache.join(self.repo.open().id_hex())
    }

    fn cached_files(&self, sub: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.repo_cache().join(sub))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A source tree of a few folders and files.
    fn source(&self) -> PathBuf {
        let src = self.repo.scratch("src");
        for d in ["a", "a/b", "c"] {
            std::fs::create_dir_all(src.join(d)).unwrap();
            for i in 0..5 {
                std::fs::write(
                    src.join(d).join(format!("f{i}")),
                    format!("{d}/{i} ").repeat(200 * (i + 1)),
                )
                .unwrap();
            }
        }
        src
    }

    fn backup(&self, src: &Path) -> (Run, Counts) {
        self.run(&["backup", "--json", src.to_str().unwrap()])
    }
}

fn flip_a_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_second_snapshots_reads_no_snapshot_or_key() {
    let rig = Rig::new();
    let src = rig.source();
    for _ in 0..3 {
        rig.uncached(&["backup", "--force", src.to_str().unwrap()]);
    }
    let (base_run, base) = rig.uncached(&["snapshots", "--json"]);
    assert_eq!(base.reads("snapshot"), 3, "{base:?}");
    assert!(base.reads("key") >= 1);
    let (first_run, first) = rig.run(&["snapshots", "--json"]);
    assert_eq!(first.reads("snapshot"), 3);
    // The first run found no cache for this location until the config named the
    // repository: its key file is fetched once more into the cache.
    assert_eq!(first.reads("key"), 2);
    assert_eq!(first.get("cache.stored"), 3 + 1);
    let (second_run, second) = rig.run(&["snapshots", "--json"]);
    assert_eq!(second.metadata_reads(), 0, "{second:?}");
    // Not even a stat: sizes come from the listing.
    assert_eq!(second.get("snapshot.size"), 0);
    assert_eq!(second.get("cache.hits"), 3 + 1);
    assert!(
        second.get("snapshot.list") >= 1,
        "listing is how staleness is seen"
    );
    // The same answer every time.
    assert_eq!(second_run.json(), base_run.json());
    assert_eq!(first_run.json(), base_run.json());
}

#[test]
fn a_second_ls_reads_no_tree_pack_index_or_snapshot() {
    let rig = Rig::new();
    let src = rig.source();
    rig.uncached(&["backup", src.to_str().unwrap()]);
    let (base_run, base) = rig.uncached(&["ls", "--json", "latest", "--recursive"]);
    assert!(base.reads("pack") >= 4, "one read per tree: {base:?}");
    let (first_run, first) = rig.run(&["ls", "--json", "latest", "--recursive"]);
    // Tree packs are fetched whole: one read each, not one per tree.
    assert!(first.reads("pack") < base.reads("pack"), "{first:?}");
    assert!(!rig.cached_files("data").is_empty());
    let (second_run, second) = rig.run(&["ls", "--json", "latest", "--recursive"]);
    assert_eq!(second.metadata_reads(), 0, "{second:?}");
    assert_eq!(second.get("pack.size"), 0);
    assert_eq!(second_run.stdout, base_run.stdout);
    assert_eq!(first_run.stdout, base_run.stdout);
    // Restore still reads data from storage, and gets the same bytes.
    let target = rig.repo.scratch("target");
    let (_, restore) = rig.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(restore.reads("pack") >= 1);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("a/b/f3")).unwrap(),
        std::fs::read(src.join("a/b/f3")).unwrap()
    );
}

#[test]
fn an_incremental_backup_downloads_no_metadata_it_has() {
    let rig = Rig::new();
    let src = rig.source();
    // The first backup, from another machine: nothing cached here.
    rig.uncached(&["backup", src.to_str().unwrap()]);
    std::fs::write(src.join("a/b/f1"), "changed").unwrap();
    let (_, base) = rig.uncached(&["backup", src.to_str().unwrap()]);
    assert!(
        base.reads("index") >= 1 && base.reads("pack") >= 1,
        "{base:?}"
    );
    // First cached backup: fetches what it lacks, keeps what it writes.
    std::fs::write(src.join("c/f2"), "changed too").unwrap();
    let (_, first) = rig.backup(&src);
    assert!(first.metadata_reads() > 0);
    // Next night: the index files, the parent snapshot and its trees are all here already
    // (the previous backup's own were kept as they were written).
    std::fs::write(src.join("a/f0"), "changed again").unwrap();
    let (r, next) = rig.backup(&src);
    assert_eq!(next.metadata_reads(), 0, "{next:?}\n{}", r.stderr);
    assert!(next.get("pack.write") >= 1, "it did write the change");
    // And the result is right.
    let target = rig.repo.scratch("target");
    rig.repo.restore_latest(&target);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("a/f0")).unwrap(),
        b"changed again"
    );
    assert_eq!(
        std::fs::read(restored.join("c/f2")).unwrap(),
        b"changed too"
    );
    rig.repo.run(&["check", "--read-data"]).ok();
}

#[test]
fn corrupt_copies_are_dropped_and_fetched_again() {
    let rig = Rig::new();
    let src = rig.source();
    rig.backup(&src);
    let (want, _) = rig.uncached(&["ls", "--json", "latest", "--recursive"]);
    rig.run(&["ls", "latest"]);
    let snaps = rig.cached_files("snapshots");
    let packs = rig.cached_files("data");
    let indexes = rig.cached_files("index");
    let keys = rig.cached_files("keys");
    assert_eq!(snaps.len(), 1);
    assert!(!packs.is_empty() && !indexes.is_empty() && !keys.is_empty());
    for f in snaps.iter().chain(&packs).chain(&indexes).chain(&keys) {
        flip_a_byte(f);
    }
    let (got, counts) = rig.run(&["ls", "--json", "latest", "--recursive"]);
    assert_eq!(got.stdout, want.stdout);
    let flipped = (snaps.len() + packs.len() + indexes.len() + keys.len()) as u64;
    assert_eq!(counts.get("cache.dropped_corrupt"), flipped, "{counts:?}");
    assert_eq!(counts.reads("snapshot"), 1);
    // Fetched again and kept: the next run reads nothing.
    let (_, again) = rig.run(&["ls", "--json", "latest", "--recursive"]);
    assert_eq!(again.metadata_reads(), 0, "{again:?}");
    // A truncated copy, and one replaced by another object's bytes, are damage too.
    std::fs::write(&snaps[0], b"short").unwrap();
    std::fs::copy(&indexes[0], &packs[0]).unwrap();
    let (got, counts) = rig.run(&["ls", "--json", "latest", "--recursive"]);
    assert_eq!(got.stdout, want.stdout);
    assert_eq!(counts.get("cache.dropped_corrupt"), 2, "{counts:?}");
}

#[test]
fn stale_copies_are_never_served_and_are_dropped() {
    let rig = Rig::new();
    let src = rig.source();
    rig.backup(&src);
    std::fs::remove_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("c/new"), "new file").unwrap();
    rig.backup(&src);
    rig.run(&["ls", "latest"]);
    assert_eq!(rig.cached_files("snapshots").len(), 2);
    let packs_before = rig.cached_files("data");
    // Another machine forgets the first snapshot and prunes its data and trees.
    rig.uncached(&["forget", "--keep-last", "1", "--prune"]);
    let pruned: Vec<_> = packs_before
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap();
            !rig.repo
                .files_in("data")
                .iter()
                .any(|f| f.file_name() == Some(name))
        })
        .collect();
    assert!(!pruned.is_empty(), "the prune rewrote a cached tree pack");
    let (r, counts) = rig.run(&["snapshots", "--json"]);
    assert_eq!(
        r.json().as_array().unwrap().len(),
        1,
        "the forgotten one is not shown"
    );
    assert_eq!(rig.cached_files("snapshots").len(), 1);
    assert!(counts.get("cache.dropped_stale") >= 1);
    // Tree packs the prune deleted (or rewrote) are dropped once the index shows it; ls
    // is right.
    let (ls, _) = rig.run(&["ls", "--json", "latest", "--recursive"]);
    let (want, _) = rig.uncached(&["ls", "--json", "latest", "--recursive"]);
    assert_eq!(ls.stdout, want.stdout);
    let in_storage: Vec<String> = rig
        .repo
        .files_in("data")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for p in rig.cached_files("data") {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            in_storage.contains(&name),
            "cached pack {name} is gone from storage"
        );
    }
    let cached_index = rig.cached_files("index");
    assert_eq!(cached_index.len(), rig.repo.files_in("index").len());
}

#[test]
fn check_reads_storage_not_the_cache() {
    let rig = Rig::new();
    let src = rig.source();
    rig.backup(&src);
    rig.run(&["ls", "latest"]);
    // Storage's snapshot rots; the cache still holds a good copy.
    let stored = rig.repo.files_in("snapshots");
    flip_a_byte(&stored[0]);
    let tmp = rig.repo.scratch("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let before = contents(&rig.cache);
    let mut c = rig.cmd(&["check"]);
    c.env("TMPDIR", &tmp);
    let r = run_cmd(c, None).expect_code(1);
    assert!(r.stderr.contains("snapshot"), "{}", r.stderr);
    // Its own temporary cache, fresh (nothing stored there before this run), gone after;
    // the user's cache is neither read nor changed.
    let counts = Counts::of(&r);
    assert_eq!(counts.get("cache.dropped_corrupt"), 0);
    assert_eq!(
        contents(&rig.cache),
        before,
        "the user's cache is untouched"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temporary cache removed"
    );
}

#[test]
fn check_reads_each_tree_pack_once_through_its_temporary_cache() {
    let rig = Rig::new();
    let src = rig.source();
    // 600 directories: more trees than check's read-ahead takes at once (256), all in one
    // small tree pack in random order.
    for i in 0..600 {
        let d = src.join(format!("d{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), format!("file {i}")).unwrap();
    }
    rig.backup(&src);
    let (_, cached) = rig.run(&["check"]);
    // The read-ahead's ranges (a few hundred trees each) come from the copy.
    assert!(cached.get("cache.hits") >= 3, "{cached:?}");
    assert_eq!(cached.reads("pack"), 1, "the tree pack, once: {cached:?}");
    let (_, uncached) = rig.run(&["--no-cache", "check"]);
    assert!(uncached.reads("pack") >= 3, "{uncached:?}");
}

#[test]
fn no_cache_and_local_repositories_create_no_cache_folder() {
    let rig = Rig::new();
    let src = rig.source();
    let xdg = rig.repo.scratch("xdg");
    // --no-cache, even with the cache forced on for local repositories.
    let mut c = rig.cmd(&["--no-cache", "backup", src.to_str().unwrap()]);
    c.env("XDG_CACHE_HOME", &xdg);
    run_cmd(c, None).ok();
    assert!(!rig.cache.exists());
    assert!(!xdg.exists());
    // A local repository without CISTA_CACHE_LOCAL: no cache either.
    let mut c = rig.repo.cmd(&["snapshots"]);
    c.env("CISTA_CACHE_DIR", &rig.cache)
        .env("XDG_CACHE_HOME", &xdg);
    run_cmd(c, None).ok();
    assert!(!rig.cache.exists());
    assert!(!xdg.exists());
    // Without --cache-dir: $XDG_CACHE_HOME/cista.
    let mut c = rig.repo.cmd(&["snapshots"]);
    c.env("CISTA_CACHE_LOCAL", "1").env("XDG_CACHE_HOME", &xdg);
    run_cmd(c, None).ok();
    assert!(xdg.join("cista/CACHEDIR.TAG").is_file());
}

#[test]
fn the_cache_folder_is_private_and_tagged() {
    let rig = Rig::new();
    let src = rig.source();
    rig.backup(&src);
    let tag = std::fs::read_to_string(rig.cache.join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&rig.cache), 0o700);
    let dir = rig.repo_cache();
    assert_eq!(mode(&dir), 0o700);
    for sub in ["keys", "index", "snapshots", "data"] {
        assert_eq!(mode(&dir.join(sub)), 0o700);
        for f in rig.cached_files(sub) {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    // What a backup wrote is cached: its index, snapshot and tree packs; never data packs,
    // locks or the config.
    assert_eq!(rig.cached_files("snapshots").len(), 1);
    assert!(!rig.cached_files("index").is_empty());
    assert!(!rig.cached_files("data").is_empty());
    assert!(rig.cached_files("data").len() < rig.repo.files_in("data").len());
    assert!(!dir.join("locks").exists() && !dir.join("config").exists());
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
}

#[test]
fn cleanup_cache_removes_only_old_caches_of_other_repositories() {
    let rig = Rig::new();
    rig.run(&["snapshots"]);
    let old = rig.cache.join("ab".repeat(32));
    let recent = rig.cache.join("cd".repeat(32));
    for d in [&old, &recent] {
        std::fs::create_dir_all(d.join("index")).unwrap();
    }
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(31 * 24 * 3600);
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    // Told, not removed, without the flag.
    let (r, _) = rig.run(&["snapshots"]);
    assert!(
        r.stderr.contains("found 1 old cache directories") && r.stderr.contains("--cleanup-cache"),
        "{}",
        r.stderr
    );
    assert!(old.exists());
    let (r, _) = rig.run(&["--cleanup-cache", "snapshots"]);
    assert!(
        r.stderr.contains("removed 1 old cache directories"),
        "{}",
        r.stderr
    );
    assert!(!old.exists());
    assert!(recent.exists());
    assert!(rig.repo_cache().is_dir());
}

#[test]
fn processes_sharing_a_cache_agree() {
    let rig = Rig::new();
    let src = rig.source();
    rig.uncached(&["backup", src.to_str().unwrap()]);
    let (want, _) = rig.uncached(&["ls", "--json", "latest", "--recursive"]);
    // Four readers filling an empty cache at once: each publishes complete files only.
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = rig.cmd(&["ls", "--json", "latest", "--recursive"]);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, want.stdout);
    }
    let (_, after) = rig.run(&["ls", "--json", "latest", "--recursive"]);
    assert_eq!(after.metadata_reads(), 0, "{after:?}");
    assert_eq!(
        std::fs::read_dir(rig.repo_cache().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_cache_that_cannot_be_written_only_costs_downloads() {
    let rig = Rig::new();
    let src = rig.source();
    rig.backup(&src);
    let (want, _) = rig.uncached(&["ls", "--json", "latest", "--recursive"]);
    // A folder squatting on a snapshot's copy: the copy can be neither read nor replaced.
    let snap = rig.cached_files("snapshots").pop().unwrap();
    std::fs::remove_file(&snap).unwrap();
    std::fs::create_dir(&snap).unwrap();
    // Tree packs cannot be kept: their folder is a file (permissions would not stop root).
    let data = rig.repo_cache().join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a folder").unwrap();
    let r = run_cmd(rig.cmd(&["ls", "--json", "latest", "--recursive"]), None).ok();
    assert_eq!(r.stdout, want.stdout);
    assert!(r.stderr.contains("warning: cache disabled"), "{}", r.stderr);
    // With the folder back but the squatter still there: the snapshot is read from storage
    // each time, the trees are cached again, and the answer is the same.
    std::fs::remove_file(&data).unwrap();
    for _ in 0..2 {
        let (r, counts) = rig.run(&["ls", "--json", "latest", "--recursive"]);
        assert_eq!(r.stdout, want.stdout);
        assert_eq!(counts.reads("snapshot"), 1, "{counts:?}");
    }
    let (_, counts) = rig.run(&["ls", "--json", "latest", "--recursive"]);
    assert_eq!(counts.reads("pack"), 0, "{counts:?}");
}

#[test]
fn a_new_repository_at_a_cached_location_gets_its_own_cache() {
    let rig = Rig::new();
    let src = rig.source();
    rig.backup(&src);
    let first = rig.repo_cache();
    rig.run(&["snapshots"]);
    // The folder is emptied and a new repository made there: the recorded id is wrong now.
    std::fs::remove_dir_all(&rig.repo.path).unwrap();
    rig.repo
        .run(&["init", "--kdf-params", super::harness::CHEAP_KDF])
        .ok();
    let (r, counts) = rig.run(&["snapshots", "--json"]);
    assert_eq!(r.json(), serde_json::json!([]), "none of the old snapshots");
    let second = rig.repo_cache();
    assert_ne!(first, second);
    assert!(second.is_dir() && first.is_dir());
    assert_eq!(counts.reads("snapshot"), 0);
    // From now on the new repository's own folder is found at once: no key read.
    let (_, counts) = rig.run(&["snapshots", "--json"]);
    assert_eq!(counts.metadata_reads(), 0, "{counts:?}");
}
