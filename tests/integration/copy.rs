//! `cista copy` and `init --copy-chunker-params-from` through the real binary: with shared
//! content keys (blobs re-sealed, trees unchanged) and without (re-chunked), a second night
//! that moves only its own data, snapshots already copied skipped, `--dry-run` writing
//! nothing, a copy killed part way and resumed, and the target's errors (exit 10, 12).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fixture;
use super::harness::{CHEAP_KDF, Repo, Run, cista, num, run_cmd};

const TARGET_PASSWORD: &str = "offsite passphrase";

/// A target repository beside `src`: sharing its content keys (`init
/// --copy-chunker-params-from`), or with chunk sizes of its own.
fn target_of(src: &Repo, shared: bool) -> Repo {
    let dir = tempfile::Builder::new()
        .prefix("cista-it-copy-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("target");
    let mut c = cista();
    c.env("CISTA_REPOSITORY", &path)
        .env("CISTA_PASSWORD", TARGET_PASSWORD)
        .args(["init", "--kdf-params", CHEAP_KDF, "--pack-size-mib", "1"]);
    if shared {
        c.env("CISTA_FROM_PASSWORD", &src.password)
            .arg("--copy-chunker-params-from")
            .arg(&src.path);
    } else {
        c.args(["--chunk-sizes", "2048,8192,32768"]);
    }
    run_cmd(c, None).ok();
    Repo {
        dir,
        path,
        password: TARGET_PASSWORD.into(),
    }
}

/// `copy --json --to TARGET ARGS...` from `src` (the target's password in
/// `CISTA_TO_PASSWORD`).
fn copy(src: &Repo, target: &Repo, args: &[&str]) -> Run {
    let mut c = src.cmd(&["copy", "--json", "--to"]);
    c.arg(&target.path)
        .env("CISTA_TO_PASSWORD", &target.password)
        .args(args);
    run_cmd(c, None)
}

/// The summary line of a successful copy, with the per-snapshot lines before it.
fn copied(src: &Repo, target: &Repo, args: &[&str]) -> (Vec<Value>, Value) {
    let mut lines = copy(src, target, args).ok().json_lines();
    let summary = lines.pop().unwrap();
    assert_eq!(summary["message_type"], "summary", "{summary}");
    (lines, summary)
}

fn restores_identically(target: &Repo, src_dir: &Path) {
    let out = target.scratch("restored");
    let _ = std::fs::remove_dir_all(&out);
    target.restore_latest(&out);
    let diffs = fixture::diff(src_dir, &fixture::restored_path(&out, src_dir), false, true);
    assert!(diffs.is_empty(), "{diffs:#?}");
}

/// Every file below a repository folder (locks, snapshots, packs, index files).
fn tree_listing(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A second night: one file changed a little, one new file.
fn next_night(src_dir: &Path) {
    let f = src_dir.join("d1/f001");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.extend_from_slice(&super::harness::Rng::new(77).bytes(50_000));
    std::fs::write(&f, bytes).unwrap();
    std::fs::write(src_dir.join("new.txt"), fixture::text(30_000)).unwrap();
}

#[test]
fn shared_keys_copy_moves_only_what_the_target_lacks_night_after_night() {
    let src = Repo::new();
    let dir = src.scratch("src");
    fixture::build_random(&dir, 1, 3 << 20, 300_000);
    let night1 = src.backup(&[&dir]);
    let target = target_of(&src, true);

    let (lines, s) = copied(&src, &target, &[]);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message_type"], "copied");
    assert_eq!(s["shared_keys"], true);
    assert_eq!(num(&s, "snapshots_copied"), 1);
    // Shared keys: exactly the blobs the backup stored, re-sealed at the same length.
    assert_eq!(num(&s, "data_blobs"), num(&night1, "data_blobs"));
    assert_eq!(num(&s, "tree_blobs"), num(&night1, "tree_blobs"));
    assert_eq!(num(&s, "bytes_sealed"), num(&night1, "data_added_packed"));
    assert_eq!(
        num(&s, "bytes_read"),
        num(&s, "bytes_sealed"),
        "neighbours are read together, no gap"
    );
    assert_eq!(num(&s, "files_rechunked"), 0);
    assert!(num(&s, "read_requests") < num(&s, "data_blobs") / 4, "{s}");
    target.run(&["check", "--read-data"]).ok();
    restores_identically(&target, &dir);

    // The copy keeps time, host, paths and tags, and records the source id as `original`.
    let (src_snap, dst_snap) = (&src.snapshots(&[])[0], &target.snapshots(&[])[0]);
    for field in ["time", "hostname", "paths", "tags", "tree"] {
        assert_eq!(src_snap[field], dst_snap[field], "{field}");
    }
    assert_eq!(dst_snap["original"], src_snap["id"]);

    // Run again: nothing to do.
    let (lines, s) = copied(&src, &target, &[]);
    assert_eq!(lines[0]["message_type"], "skipped");
    assert_eq!(lines[0]["target_snapshot_id"], dst_snap["id"]);
    assert_eq!(
        num(&s, "data_blobs") + num(&s, "tree_blobs") + num(&s, "bytes_read"),
        0
    );

    // The next night moves that night's new blobs, no more.
    next_night(&dir);
    let night2 = src.backup(&[&dir]);
    let (lines, s) = copied(&src, &target, &[]);
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["message_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["skipped", "copied"]);
    assert_eq!(num(&s, "data_blobs"), num(&night2, "data_blobs"));
    assert_eq!(num(&s, "tree_blobs"), num(&night2, "tree_blobs"));
    assert_eq!(num(&s, "bytes_sealed"), num(&night2, "data_added_packed"));
    assert!(
        num(&s, "bytes_sealed") < num(&night1, "data_added_packed") / 10,
        "{s}"
    );
    target.run(&["check", "--read-data"]).ok();
    restores_identically(&target, &dir);
}

#[test]
fn without_shared_keys_content_is_rechunked_and_still_incremental() {
    let src = Repo::new();
    let dir = src.scratch("src");
    fixture::build_full(&dir, 5);
    fixture::build_random(&dir.join("bulk"), 2, 2 << 20, 400_000);
    let night1 = src.backup(&[&dir]);
    let target = target_of(&src, false);

    let (_, first) = copied(&src, &target, &[]);
    assert_eq!(first["shared_keys"], false);
    assert!(num(&first, "files_rechunked") > 0);
    // A file's chunks are read together, not one request each.
    assert!(
        num(&first, "read_requests") * 4 < num(&night1, "data_blobs"),
        "{first} for {night1}"
    );
    target.run(&["check", "--read-data"]).ok();
    restores_identically(&target, &dir);
    // Another chunker: another tree, but the same snapshot as far as the skip rule goes.
    let (src_snap, dst_snap) = (&src.snapshots(&[])[0], &target.snapshots(&[])[0]);
    assert_ne!(src_snap["tree"], dst_snap["tree"]);
    assert_eq!(dst_snap["original"], src_snap["id"]);
    let (lines, _) = copied(&src, &target, &[]);
    assert_eq!(lines[0]["message_type"], "skipped");

    // Next night: every file is chunked again, only new chunks are stored.
    next_night(&dir.join("bulk"));
    src.backup(&[&dir]);
    let (_, second) = copied(&src, &target, &[]);
    assert_eq!(num(&second, "snapshots_copied"), 1);
    assert!(num(&second, "files_rechunked") > 0);
    assert!(
        num(&second, "bytes_sealed") * 5 < num(&first, "bytes_sealed"),
        "second night stored {second} after {first}"
    );
    target.run(&["check", "--read-data"]).ok();
    restores_identically(&target, &dir);
}

#[test]
fn dry_run_reports_what_would_move_and_writes_nothing() {
    let src = Repo::new();
    let dir = src.scratch("src");
    fixture::build_random(&dir, 3, 1 << 20, 100_000);
    src.backup(&[&dir]);
    for shared in [true, false] {
        let target = target_of(&src, shared);
        let (before_src, before_dst) = (tree_listing(&src.path), tree_listing(&target.path));
        let (lines, dry) = copied(&src, &target, &["--dry-run"]);
        assert_eq!(lines[0]["message_type"], "would_copy");
        assert_eq!(dry["dry_run"], true);
        assert_eq!(num(&dry, "snapshots_to_copy"), 1);
        assert_eq!(num(&dry, "snapshots_copied"), 0);
        assert_eq!(
            tree_listing(&src.path),
            before_src,
            "the source was written to"
        );
        assert_eq!(
            tree_listing(&target.path),
            before_dst,
            "the target was written to"
        );
        let (_, real) = copied(&src, &target, &[]);
        for field in ["data_blobs", "tree_blobs", "bytes_raw", "bytes_sealed"] {
            assert_eq!(
                num(&dry, field),
                num(&real, field),
                "{field}, shared {shared}"
            );
        }
    }
}

#[test]
fn filters_and_ids_choose_the_snapshots() {
    let src = Repo::new();
    let dir = src.scratch("src");
    fixture::build_random(&dir, 4, 200_000, 50_000);
    src.run(&[
        "backup".as_ref(),
        "--host".as_ref(),
        "db1".as_ref(),
        dir.as_os_str(),
    ])
    .ok();
    src.run(&[
        "backup".as_ref(),
        "--host".as_ref(),
        "web".as_ref(),
        "--tag".as_ref(),
        "x".as_ref(),
        dir.as_os_str(),
    ])
    .ok();
    let target = target_of(&src, true);
    let (lines, _) = copied(&src, &target, &["--host", "web"]);
    assert_eq!(lines.len(), 1);
    assert_eq!(target.snapshots(&[])[0]["hostname"], "web");
    let db1 = src.snapshots(&["--host", "db1"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (lines, _) = copied(&src, &target, &[&db1[..8]]);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["source_snapshot_id"], db1.as_str());
    assert_eq!(target.snapshots(&[]).len(), 2);
    // The text form names what it did.
    let mut c = src.cmd(&["copy", "--to"]);
    c.arg(&target.path)
        .env("CISTA_TO_PASSWORD", &target.password);
    let out = run_cmd(c, None).ok().stdout_str();
    assert!(out.contains("was already copied to snapshot"), "{out}");
    assert!(out.contains("copied 0 snapshots, 2 skipped"), "{out}");
}

#[test]
fn target_errors_have_their_exit_codes_and_name_the_target_settings() {
    let src = Repo::new();
    let dir = src.scratch("src");
    fixture::build_random(&dir, 5, 10_000, 10_000);
    src.backup(&[&dir]);
    let target = target_of(&src, true);
    let wrong = Repo {
        dir: tempfile::tempdir().unwrap(),
        path: target.path.clone(),
        password: "not it".into(),
    };
    let r = copy(&src, &wrong, &[]).expect_code(12);
    assert!(
        r.stderr.contains("target repository") && r.stderr.contains("CISTA_TO_PASSWORD"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(TARGET_PASSWORD) && !r.stderr.contains("not it"),
        "{}",
        r.stderr
    );
    let missing = Repo {
        dir: tempfile::tempdir().unwrap(),
        path: target.scratch("nothing-here"),
        password: TARGET_PASSWORD.into(),
    };
    let r = copy(&src, &missing, &[]).expect_code(10);
    assert!(r.stderr.contains("no target repository at"), "{}", r.stderr);
    assert!(target.snapshots(&[]).is_empty());
    // init's source: the same, with its own variables.
    let mut c = cista();
    c.env("CISTA_REPOSITORY", target.scratch("third"))
        .env("CISTA_PASSWORD", "x")
        .env("CISTA_FROM_PASSWORD", "not it")
        .args([
            "init",
            "--kdf-params",
            CHEAP_KDF,
            "--copy-chunker-params-from",
        ])
        .arg(&src.path);
    let r = run_cmd(c, None).expect_code(12);
    assert!(r.stderr.contains("CISTA_FROM_PASSWORD"), "{}", r.stderr);
    assert!(!target.scratch("third").join("config").exists());
}

fn spawn_copy(src: &Repo, target: &Repo) -> Child {
    let mut c = src.cmd(&["copy", "-q", "--to"]);
    c.arg(&target.path)
        .env("CISTA_TO_PASSWORD", &target.password)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// Sealed bytes of the blobs in the target's packs (read from their headers).
fn blob_bytes_in_packs(target: &Repo) -> u64 {
    let lib = target.open();
    let mut total = 0;
    for (id, len) in lib.backend().list(cista::backend::FileType::Pack).unwrap() {
        let h = lib.read_pack_header(&cista::id::PackId(id), len).unwrap();
        total += h.entries.iter().map(|e| u64::from(e.length)).sum::<u64>();
    }
    total
}

#[test]
fn a_killed_copy_resumes_without_moving_a_stored_pack_again() {
    let src = Repo::with_init_args(&[
        "--chunk-sizes",
        "65536,262144,1048576",
        "--pack-size-mib",
        "1",
    ]);
    let dir = src.scratch("src");
    fixture::build_random(&dir, 6, 48 << 20, 1 << 20);
    src.backup(&[&dir]);
    let target = target_of(&src, true);
    let (_, full) = copied(&src, &target_of(&src, true), &["--dry-run"]);

    let mut child = spawn_copy(&src, &target);
    let start = Instant::now();
    while target.files_in("data").len() < 4 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("copy ended ({status}) before 4 packs were seen; copy more data");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no packs appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(
        target.snapshots(&[]).is_empty(),
        "a snapshot before its data"
    );
    target.run(&["check"]).ok();

    let stored = blob_bytes_in_packs(&target);
    assert!(stored > 0);
    let (_, resumed) = copied(&src, &target, &[]);
    assert_eq!(num(&resumed, "snapshots_copied"), 1);
    // Every pack already stored is reused (indexed, or adopted once verified): what moves
    // again is only what no stored pack holds.
    assert_eq!(
        num(&resumed, "bytes_sealed") + stored,
        num(&full, "bytes_sealed"),
        "resumed {resumed}, {stored} bytes stored before, {full} in all"
    );
    target.run(&["check", "--read-data"]).ok();
    restores_identically(&target, &dir);
}

/// Copy takes a shared lock on each side: an exclusive holder of either stops it (exit 11)
/// before anything is written; a maintenance holder (a prune) does not.
#[test]
fn copy_locks_both_repositories_shared() {
    use super::lock_sessions::Holder;
    let src = Repo::new();
    let dir = src.scratch("src");
    fixture::build_random(&dir, 8, 50_000, 25_000);
    src.backup(&[&dir]);
    let target = target_of(&src, true);
    for (side, repo) in [("source", &src), ("target", &target)] {
        let holder = Holder::start(repo, "exclusive", &[]);
        let r = copy(&src, &target, &[]).expect_code(11);
        assert!(r.stderr.contains("locked"), "{side}: {}", r.stderr);
        drop(holder);
        assert!(target.snapshots(&[]).is_empty(), "{side}");
    }
    let _prune = Holder::start(&target, "maintenance", &[]);
    let (_, s) = copied(&src, &target, &[]);
    assert_eq!(num(&s, "snapshots_copied"), 1);
}
