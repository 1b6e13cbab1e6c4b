//! Backup as a restic user runs it: restic's flags and their exact meanings, restic's counts
//! and JSON stream, and the sources restic accepts (missing paths, non-UTF-8 paths, symlinked
//! parents, files that change while they are read).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::harness::{BIN, PASSWORD, Repo, Rng, hermetic, is_root, num, run_cmd, summary_of};

/// Every path in the latest snapshot (`ls --json`).
fn listed(repo: &Repo) -> Vec<String> {
    repo.run(&["ls", "--json", "latest"]).ok().json_lines()[1..]
        .iter()
        .map(|n| n["path"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `backup --json ARGS...` with the given exit code; returns (summary, run).
#[track_caller]
fn backup_json(repo: &Repo, args: &[&OsStr], code: i32) -> (Value, super::harness::Run) {
    let mut all: Vec<&OsStr> = vec!["backup".as_ref(), "--json".as_ref()];
    all.extend_from_slice(args);
    let r = repo.run(&all).expect_code(code);
    (summary_of(&r), r)
}

/// The JSON error lines a run printed on stderr.
fn error_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An unreadable file was counted in `total_files_processed` and its size in
/// `total_bytes_processed`, and the warning said "1 errors".
#[test]
fn regression_unreadable_file_was_counted_as_processed() {
    if !is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("note: skipped: needs root and setpriv to run cista as an unprivileged user");
        return;
    }
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    let chown = |p: &Path| std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    chown(dir.path());
    let (repo, src) = (dir.path().join("repo"), dir.path().join("src"));
    for (name, len) in [("a", 10), ("b", 20), ("secret", 1000)] {
        write(&src.join(name), &vec![b'x'; len]);
        chown(&src.join(name));
    }
    chown(&src);
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let as_nobody = |args: &[&OsStr]| {
        let mut c = hermetic("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(BIN)
            .args(args)
            .env("CISTA_REPOSITORY", &repo)
            .env("CISTA_PASSWORD", PASSWORD);
        run_cmd(c, None)
    };
    let os = OsStr::new;
    as_nobody(&[os("init"), os("--kdf-params"), os("1024,1,1")]).ok();
    let r = as_nobody(&[os("backup"), os("--json"), src.as_os_str()]).expect_code(3);
    let sum = summary_of(&r);
    assert_eq!(num(&sum, "total_files_processed"), 2, "{sum}");
    assert_eq!(num(&sum, "files_new"), 2, "{sum}");
    assert_eq!(num(&sum, "total_bytes_processed"), 30, "{sum}");
    assert_eq!(num(&sum, "errors"), 1, "{sum}");
    // restic's error line: {"message_type":"error","error":{"message":..},"during":..,"item":..}
    let errors = error_lines(&r.stderr);
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    let e = &errors[0];
    assert_eq!(e["message_type"], "error");
    assert_eq!(e["during"], "archival");
    assert_eq!(e["item"], s(&src.join("secret")));
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{e}"
    );
    // The snapshot's own summary agrees with the stream.
    let snaps = as_nobody(&[os("snapshots"), os("--json")]).ok().json();
    assert_eq!(snaps[0]["summary"]["total_bytes_processed"], 30);

    let r = as_nobody(&[os("backup"), src.as_os_str()]).expect_code(3);
    assert!(
        r.stderr.contains("1 source entry could not be read"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("1 errors") && !r.stderr.contains("1 entries"));
    assert!(
        r.stdout_str().contains("Processed:   2 files, 30 B"),
        "{}",
        r.stdout_str()
    );
}

/// A file grown while it was read was stored torn with no warning. Now it is read again, and
/// when it changes again it is reported and the snapshot is marked incomplete (restic goes on
/// too: the snapshot is written).
#[test]
fn regression_file_growing_while_read_was_stored_torn_silently() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    let log = src.join("growing.log");
    write(&src.join("calm"), b"calm");
    // A large sparse file is read for long enough that the writer changes it during each read.
    let f = std::fs::File::create(&log).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"line\n").unwrap();
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        })
    };
    let r = repo.run(&["backup".as_ref(), "--json".as_ref(), src.as_os_str()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let r = r.expect_code(3);
    let sum = summary_of(&r);
    assert_eq!(sum["incomplete"], true, "{sum}");
    assert_eq!(num(&sum, "errors"), 1, "{sum}");
    let errors = error_lines(&r.stderr);
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert_eq!(errors[0]["item"], s(&log));
    let msg = errors[0]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("changed while being read"), "{msg}");
    // It is in the snapshot (as read), and the next backup sees it as changed.
    assert!(listed(&repo).contains(&s(&log)));
    let again = repo.backup(&[&src]);
    assert_eq!(num(&again, "files_changed"), 1, "{again}");
    assert_eq!(num(&again, "files_unmodified"), 1, "{again}");
}

/// restic 0.19: a missing source among others is reported and skipped, the snapshot is
/// written, exit 3; when none exists, exit 1 and no snapshot.
#[test]
fn missing_source_is_skipped_with_exit_3() {
    let repo = Repo::new();
    let here = repo.scratch("here");
    write(&here.join("f"), b"f");
    let gone = repo.scratch("gone");
    let (sum, r) = backup_json(&repo, &[here.as_os_str(), gone.as_os_str()], 3);
    assert!(sum["snapshot_id"].is_string(), "{sum}");
    assert_eq!(num(&sum, "errors"), 1);
    let errors = error_lines(&r.stderr);
    assert_eq!(errors[0]["item"], s(&gone), "{}", r.stderr);
    assert!(
        errors[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    let snaps = repo.snapshots(&[]);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!([s(&here)]));

    let r = repo.run(&[
        "backup".as_ref(),
        gone.as_os_str(),
        repo.scratch("gone2").as_os_str(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("no source path exists"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(repo.snapshots(&[]).len(), 1);
}

/// A source root that is not valid UTF-8 was refused by the argument parser (exit 2).
#[test]
fn regression_non_utf8_source_root_was_rejected() {
    let repo = Repo::new();
    let mut name = repo.scratch("").into_os_string().into_vec();
    name.extend_from_slice(b"caf\xe9");
    let root = PathBuf::from(OsString::from_vec(name));
    write(&root.join("menu"), b"soup");
    repo.backup(&[&root]);
    let snaps = repo.snapshots(&[]);
    let recorded = snaps[0]["paths"][0].as_str().unwrap().to_owned();
    assert!(recorded.ends_with("caf\u{fffd}"), "{recorded}");
    let target = repo.scratch("target");
    repo.restore_latest(&target);
    let back = super::fixture::restored_path(&target, &root).join("menu");
    assert_eq!(
        std::fs::read(&back).unwrap(),
        b"soup",
        "exact bytes kept in the tree"
    );
}

/// `ln -s real via; cista backup $PWD/via/file` restored `via` as a 0777 directory: the
/// symlink's mode. It must carry the real directory's mode and times.
#[test]
fn regression_symlinked_source_parent_restored_as_0777() {
    let repo = Repo::new();
    let real = repo.scratch("real");
    write(&real.join("file"), b"data");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o750)).unwrap();
    let via = repo.scratch("via");
    std::os::unix::fs::symlink(&real, &via).unwrap();
    filetime::set_file_mtime(&real, filetime::FileTime::from_unix_time(1_000_000_000, 0)).unwrap();
    repo.backup(&[&via.join("file")]);
    let target = repo.scratch("target");
    repo.restore_latest(&target);
    let restored = super::fixture::restored_path(&target, &via);
    let m = std::fs::symlink_metadata(&restored).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o750, "mode of the real directory");
    assert_eq!(m.mtime(), 1_000_000_000, "times of the real directory");
    assert_eq!(std::fs::read(restored.join("file")).unwrap(), b"data");
}

#[test]
fn files_from_verbatim_and_raw_lists() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    for f in [
        "a.txt",
        "b.txt",
        "c.log",
        "lit*eral",
        "sp ace",
        "new\nline",
        "skip.txt",
    ] {
        write(&src.join("d").join(f), f.as_bytes());
    }
    let list = repo.scratch("list");
    std::fs::write(
        &list,
        format!(
            "# a comment\n\n  {0}/d/[ab].txt  \n{0}/d/c.log\n{0}/d/nothing*\n",
            src.display()
        ),
    )
    .unwrap();
    let verbatim = repo.scratch("verbatim");
    std::fs::write(
        &verbatim,
        format!("{0}/d/lit*eral\n\n{0}/d/sp ace\n", src.display()),
    )
    .unwrap();
    let raw = repo.scratch("raw");
    let mut bytes = src.join("d/new\nline").into_os_string().into_vec();
    bytes.push(0);
    std::fs::write(&raw, bytes).unwrap();
    let (sum, r) = backup_json(
        &repo,
        &[
            "--files-from".as_ref(),
            list.as_os_str(),
            "--files-from-verbatim".as_ref(),
            verbatim.as_os_str(),
            "--files-from-raw".as_ref(),
            raw.as_os_str(),
        ],
        0,
    );
    assert_eq!(num(&sum, "files_new"), 6, "{sum}");
    assert!(
        r.stderr.contains("does not match any files"),
        "{}",
        r.stderr
    );
    let paths = listed(&repo);
    for f in ["a.txt", "b.txt", "c.log", "lit*eral", "sp ace", "new\nline"] {
        assert!(paths.contains(&s(&src.join("d").join(f))), "{f}: {paths:?}");
    }
    assert!(!paths.contains(&s(&src.join("d/skip.txt"))));

    // A raw list without its final NUL is refused, as in restic.
    std::fs::write(&raw, b"/etc/hostname").unwrap();
    let r = repo.run(&[
        "backup".as_ref(),
        "--files-from-raw".as_ref(),
        raw.as_os_str(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("NUL"), "{}", r.stderr);
}

#[test]
fn iexclude_exclude_caches_and_larger_than() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    write(&src.join("photo.JPG"), b"jpg");
    write(&src.join("Thumbs.DB"), b"db");
    write(&src.join("keep.txt"), b"keep");
    write(&src.join("big.bin"), &[7u8; 3000]);
    write(&src.join("small.bin"), &[7u8; 1024]);
    let signature = "Signature: 8a477f597d28d172789f06886806bc55";
    write(
        &src.join("cache/CACHEDIR.TAG"),
        format!("{signature}\n# x\n").as_bytes(),
    );
    write(&src.join("cache/blob"), b"cached");
    write(&src.join("fake/CACHEDIR.TAG"), b"no signature here");
    write(&src.join("fake/kept"), b"kept");
    let ifile = repo.scratch("ipatterns");
    std::fs::write(&ifile, "thumbs.db\n").unwrap();
    let (_, r) = backup_json(
        &repo,
        &[
            "--iexclude".as_ref(),
            "*.jpg".as_ref(),
            "--iexclude-file".as_ref(),
            ifile.as_os_str(),
            "--exclude-caches".as_ref(),
            "--exclude-larger-than".as_ref(),
            "1k".as_ref(),
            src.as_os_str(),
        ],
        0,
    );
    assert!(r.stderr.contains("fake/CACHEDIR.TAG"), "{}", r.stderr);
    let paths = listed(&repo);
    let has = |rel: &str| paths.contains(&s(&src.join(rel)));
    for kept in [
        "keep.txt",
        "small.bin",
        "cache",
        "cache/CACHEDIR.TAG",
        "fake/kept",
    ] {
        assert!(has(kept), "{kept}: {paths:?}");
    }
    for gone in ["photo.JPG", "Thumbs.DB", "big.bin", "cache/blob"] {
        assert!(!has(gone), "{gone}: {paths:?}");
    }
    let r = repo.run(&[
        "backup".as_ref(),
        "--exclude-larger-than".as_ref(),
        "1.5m".as_ref(),
        src.as_os_str(),
    ]);
    assert_eq!(r.code, Some(2), "a bad size is a usage error: {}", r.stderr);
}

/// The content stored for `f` in the latest snapshot.
fn dumped(repo: &Repo, f: &Path) -> Vec<u8> {
    repo.run(&["dump".as_ref(), "latest".as_ref(), f.as_os_str()])
        .ok()
        .stdout
}

/// Rewrites `f` with same-size content and its old mtime: only the ctime (and, with
/// `new_inode`, the inode) tells that it changed.
fn sneak_rewrite(f: &Path, data: &[u8], new_inode: bool) {
    let mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(f).unwrap());
    let target = if new_inode {
        f.with_extension("tmp")
    } else {
        f.to_path_buf()
    };
    std::fs::write(&target, data).unwrap();
    filetime::set_file_mtime(&target, mtime).unwrap();
    if new_inode {
        std::fs::rename(&target, f).unwrap();
    }
}

#[test]
fn ignore_ctime_and_ignore_inode() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    let f = src.join("f");
    write(&f, b"version 1");
    repo.backup(&[&src]);

    // Same size and mtime, new content: the ctime gives it away, unless ignored.
    sneak_rewrite(&f, b"version 2", false);
    repo.backup(&[&src]);
    assert_eq!(dumped(&repo, &f), b"version 2", "read again by default");
    sneak_rewrite(&f, b"version 3", false);
    let (sum, _) = backup_json(&repo, &["--ignore-ctime".as_ref(), src.as_os_str()], 0);
    assert_eq!(dumped(&repo, &f), b"version 2", "not read again");
    // restic counts it as changed all the same: its node (ctime) differs from the parent's.
    assert_eq!(num(&sum, "files_changed"), 1, "{sum}");

    // A new inode with the same size and mtime: --ignore-ctime still reads it (the inode
    // differs); --ignore-inode ignores both, as in restic.
    sneak_rewrite(&f, b"version 4", true);
    backup_json(&repo, &["--ignore-ctime".as_ref(), src.as_os_str()], 0);
    assert_eq!(dumped(&repo, &f), b"version 4");
    sneak_rewrite(&f, b"version 5", true);
    backup_json(&repo, &["--ignore-inode".as_ref(), src.as_os_str()], 0);
    assert_eq!(dumped(&repo, &f), b"version 4", "not read again");
    let same = repo.backup(&[&src]);
    assert_eq!(num(&same, "files_unmodified"), 1, "{same}");
}

/// Modification and change times of every folder above `path`: the root tree records them.
fn ancestor_times(path: &Path) -> Vec<(i64, i64, i64, i64)> {
    path.ancestors()
        .skip(1)
        .map(|a| {
            let m = std::fs::metadata(a).unwrap();
            (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
        })
        .collect()
}

#[test]
fn skip_if_unchanged_writes_no_snapshot() {
    // The snapshot's tree holds the source's ancestors too, as restic's does, so a folder
    // that other tests create entries in (/tmp) changes it between two backups. The files live
    // under /var/tmp, which no other test touches, and a pair of backups whose ancestors moved
    // anyway is retried.
    let repo = Repo::new_in(Path::new("/var/tmp"));
    let src = repo.scratch("src");
    write(&src.join("f"), b"one");
    let mut quiet = false;
    for _ in 0..10 {
        let before = ancestor_times(&src);
        repo.backup(&[&src]);
        let n = repo.snapshots(&[]).len();
        let (sum, _) = backup_json(&repo, &["--skip-if-unchanged".as_ref(), src.as_os_str()], 0);
        if ancestor_times(&src) != before {
            continue;
        }
        assert!(sum.get("snapshot_id").is_none(), "restic omits it: {sum}");
        assert_eq!(repo.snapshots(&[]).len(), n, "no snapshot written");
        let r = repo
            .run(&[
                "backup".as_ref(),
                "--skip-if-unchanged".as_ref(),
                src.as_os_str(),
            ])
            .ok();
        if ancestor_times(&src) == before {
            assert!(
                r.stdout_str().contains("skipped creating snapshot"),
                "{}",
                r.stdout_str()
            );
        }
        quiet = true;
        break;
    }
    assert!(
        quiet,
        "the source's ancestors never stayed still for two backups"
    );
    let n = repo.snapshots(&[]).len();
    write(&src.join("f"), b"two");
    let (sum, _) = backup_json(&repo, &["--skip-if-unchanged".as_ref(), src.as_os_str()], 0);
    assert!(sum["snapshot_id"].is_string(), "{sum}");
    assert_eq!(repo.snapshots(&[]).len(), n + 1);
}

/// Every file below the repository with its size.
fn repo_files(repo: &Repo) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![repo.path.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_writes_nothing_and_reports_what_it_would_add() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    write(&src.join("a"), &Rng::new(1).bytes(50_000));
    write(&src.join("b"), b"b");
    let before = repo_files(&repo);
    let (sum, _) = backup_json(&repo, &["-n".as_ref(), src.as_os_str()], 0);
    assert_eq!(
        repo_files(&repo),
        before,
        "nothing written, not even a lock"
    );
    assert_eq!(sum["dry_run"], true, "{sum}");
    assert!(sum.get("snapshot_id").is_none(), "{sum}");
    assert_eq!(num(&sum, "files_new"), 2);
    assert!(num(&sum, "data_added") >= 50_001, "{sum}");
    assert!(num(&sum, "data_added_packed") > 0, "{sum}");
    assert!(
        num(&sum, "data_blobs") > 0 && num(&sum, "tree_blobs") > 0,
        "{sum}"
    );

    let real = repo.backup(&[&src]);
    assert!(
        real.get("dry_run").is_none(),
        "restic omits dry_run=false: {real}"
    );
    assert_eq!(
        num(&real, "data_added"),
        num(&sum, "data_added"),
        "the dry run predicted what the backup added"
    );
    write(&src.join("b"), b"bb");
    let r = repo
        .run(&["backup".as_ref(), "--dry-run".as_ref(), src.as_os_str()])
        .ok();
    assert!(r.stdout_str().contains("1 changed"), "{}", r.stdout_str());
    assert!(r.stdout_str().contains("Would add"), "{}", r.stdout_str());
    assert_eq!(repo.snapshots(&[]).len(), 1);
}

#[test]
fn with_atime_stores_the_real_access_time() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    let f = src.join("f");
    write(&f, b"x");
    let atime = filetime::FileTime::from_unix_time(1_000_000_000, 0); // 2001-09-09
    let atime_of = |repo: &Repo| -> String {
        let lines = repo.run(&["ls", "--json", "latest"]).ok().json_lines();
        let node = lines
            .iter()
            .find(|n| n["path"] == s(&f))
            .unwrap_or_else(|| panic!("{lines:?}"));
        node["atime"].as_str().unwrap().to_owned()
    };
    filetime::set_file_atime(&f, atime).unwrap();
    repo.backup(&[&src]);
    assert!(
        !atime_of(&repo).starts_with("2001-09-09"),
        "mtime stored by default"
    );
    filetime::set_file_atime(&f, atime).unwrap();
    let (_, _) = backup_json(
        &repo,
        &["--with-atime".as_ref(), "--force".as_ref(), src.as_os_str()],
        0,
    );
    assert!(
        atime_of(&repo).starts_with("2001-09-09"),
        "{}",
        atime_of(&repo)
    );
}

/// `backup --json` is restic's stream: status lines, then the summary with restic's names
/// and value types.
#[test]
fn json_stream_has_restic_status_and_summary() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    let mut rng = Rng::new(7);
    for i in 0..30 {
        write(&src.join(format!("d{}/f{i}", i % 3)), &rng.bytes(20_000));
    }
    let r = repo
        .run(&["backup".as_ref(), "--json".as_ref(), src.as_os_str()])
        .ok();
    let lines = r.json_lines();
    let (last, statuses) = lines.split_last().unwrap();
    assert!(!statuses.is_empty(), "a status line before the summary");
    for st in statuses {
        assert_eq!(st["message_type"], "status", "{st}");
        assert!(st["percent_done"].is_number(), "{st}");
    }
    let final_status = statuses.last().unwrap();
    assert_eq!(num(final_status, "files_done"), 30, "{final_status}");
    assert_eq!(
        num(final_status, "total_files"),
        30,
        "the scan finished: {final_status}"
    );
    assert_eq!(num(final_status, "total_bytes"), 600_000, "{final_status}");
    assert_eq!(
        final_status["percent_done"].as_f64(),
        Some(1.0),
        "{final_status}"
    );
    assert!(
        final_status.get("current_files").is_none(),
        "{final_status}"
    );

    assert_eq!(last["message_type"], "summary");
    for k in [
        "files_new",
        "files_changed",
        "files_unmodified",
        "dirs_new",
        "dirs_changed",
        "dirs_unmodified",
        "data_blobs",
        "tree_blobs",
        "data_added",
        "data_added_packed",
        "total_files_processed",
        "total_bytes_processed",
    ] {
        num(last, k);
    }
    assert!(last["total_duration"].is_f64(), "{last}");
    for k in ["backup_start", "backup_end", "snapshot_id"] {
        assert!(last[k].is_string(), "{k}: {last}");
    }
    assert_eq!(num(last, "files_new"), 30);
    assert_eq!(
        num(last, "dirs_new"),
        4 + src.ancestors().count() as u64 - 2
    );
    assert_eq!(
        num(last, "tree_blobs"),
        num(last, "dirs_new") + 1,
        "every tree is new"
    );
    let snap = &repo.snapshots(&[])[0]["summary"];
    assert_eq!(snap["tree_blobs"], last["tree_blobs"], "{snap}");
    assert_eq!(snap["data_blobs"], last["data_blobs"], "{snap}");

    // --no-scan (restic's flag): no totals, so no percentage.
    let r = repo
        .run(&[
            "backup".as_ref(),
            "--json".as_ref(),
            "--no-scan".as_ref(),
            src.as_os_str(),
        ])
        .ok();
    let lines = r.json_lines();
    let status = &lines[lines.len() - 2];
    assert!(status.get("total_files").is_none(), "{status}");
    assert_eq!(status["percent_done"].as_f64(), Some(0.0), "{status}");

    // -q keeps only the summary.
    let r = repo
        .run(&[
            "-q".as_ref(),
            "backup".as_ref(),
            "--json".as_ref(),
            src.as_os_str(),
        ])
        .ok();
    assert_eq!(r.json_lines().len(), 1, "{}", r.stdout_str());
}

/// On a terminal, the status line shows restic's percent, files done / total and errors.
#[test]
fn terminal_progress_line_reads_like_restics() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    let mut rng = Rng::new(9);
    for i in 0..20 {
        write(&src.join(format!("f{i}")), &rng.bytes(400_000));
    }
    // `script` gives cista a terminal; the line is redrawn 60 times a second.
    let cmd = format!(
        "{} backup {}",
        BIN,
        src.to_str().expect("test paths are UTF-8")
    );
    let mut c = hermetic("script");
    c.args(["-qefc", &cmd, "/dev/null"])
        .env("CISTA_REPOSITORY", &repo.path)
        .env("CISTA_PASSWORD", PASSWORD)
        .env("CISTA_PROGRESS_FPS", "60");
    let r = run_cmd(c, None);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout_str(), r.stderr);
    let out = r.stdout_str();
    assert!(
        out.contains("files") && out.contains(", total 20 files"),
        "{out:?}"
    );
    assert!(out.contains("%  ") && out.contains("0 errors"), "{out:?}");
    assert!(out.contains("snapshot "), "{out:?}");
}
