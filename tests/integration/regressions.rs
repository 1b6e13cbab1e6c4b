//! One test per bug found by this suite, named after the bug.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::harness::{PASSWORD, Repo, cista, num, run_cmd};

/// `backup` zero-filled an 8 MiB read segment for every file: 100 one-line files took 5 s.
#[test]
fn regression_backup_zero_filled_a_segment_per_file() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..400 {
        std::fs::write(src.join(format!("f{i}")), format!("{i}\n")).unwrap();
    }
    let start = Instant::now();
    let s = repo.backup(&[&src]);
    let took = start.elapsed();
    assert_eq!(num(&s, "files_new"), 400);
    // Was ~20 s in a debug build; now well under one.
    assert!(
        took < Duration::from_secs(8),
        "400 tiny files took {took:?}"
    );
    let r = repo
        .run(&[
            "dump".as_ref(),
            "latest".as_ref(),
            src.join("f399").as_os_str(),
        ])
        .ok();
    assert_eq!(r.stdout, b"399\n");
}

/// Opening a missing repository (any command with a mistyped `-r`) created its folder.
#[test]
fn regression_opening_a_missing_repository_created_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("a/b/repo");
    for args in [
        &["snapshots"][..],
        &["key", "list"],
        &["check"],
        &["unlock"],
    ] {
        let mut c = cista();
        c.args(args)
            .arg("-r")
            .arg(&missing)
            .env("CISTA_PASSWORD", PASSWORD);
        run_cmd(c, None).expect_code(10);
        assert!(
            !dir.path().join("a").exists(),
            "{args:?} created the folder"
        );
    }
    // `init` still creates every level.
    let mut c = cista();
    c.args(["init", "--kdf-params", "1024,1,1", "-r"])
        .arg(&missing)
        .env("CISTA_PASSWORD", PASSWORD);
    run_cmd(c, None).ok();
    assert!(missing.join("config").is_file());
}

/// Access times were recorded in trees, so reading the files (the previous backup did)
/// made every unchanged directory a new tree on the next backup.
#[test]
fn regression_atime_churned_unchanged_trees() {
    let repo = Repo::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/f"), b"read me").unwrap();
    std::fs::write(src.join("g"), b"and me").unwrap();
    let times = || -> Vec<(i64, i64, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        src.ancestors()
            .skip(1)
            .map(|a| {
                let m = std::fs::metadata(a).unwrap();
                (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
            })
            .collect()
    };
    let before = times();
    repo.backup(&[&src]);
    // Reading moves the access times (relatime updates them on the first read after a
    // write); the first backup read them already, so this is belt and braces.
    for f in ["sub/f", "g"] {
        std::fs::read(src.join(f)).unwrap();
    }
    let s = repo.backup(&[&src]);
    assert_eq!(num(&s, "files_unmodified"), 2, "{s}");
    // Like restic, the directories above the source path count too (changed when another
    // test touched one of them meanwhile).
    let above = src.ancestors().count() as u64 - 2;
    let changed = num(&s, "dirs_changed");
    assert_eq!(num(&s, "dirs_unmodified") + changed, 2 + above, "{s}");
    if times() == before {
        assert_eq!(changed, 0, "{s}");
    }
    assert!(num(&s, "dirs_unmodified") >= 2, "{s}");
}

/// `dump`, `ls` and `restore SNAPSHOT:PATH` rejected paths that are not UTF-8, so files with
/// such names could be backed up but not addressed.
#[test]
fn regression_non_utf8_paths_could_not_be_addressed() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    let dir = src.join(OsStr::from_bytes(b"dir-\xff"));
    let file = dir.join(OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, b"latin-1 name").unwrap();
    repo.backup(&[&src]);

    let r = repo
        .run(&["dump".as_ref(), "latest".as_ref(), file.as_os_str()])
        .ok();
    assert_eq!(r.stdout, b"latin-1 name");
    let r = repo
        .run(&["ls".as_ref(), "latest".as_ref(), dir.as_os_str()])
        .ok();
    assert_eq!(r.stdout_str().lines().count(), 2, "{}", r.stdout_str());

    let mut spec = std::ffi::OsString::from("latest:");
    spec.push(&dir);
    let target = repo.scratch("t");
    repo.run(&[
        "restore".as_ref(),
        spec.as_os_str(),
        "--target".as_ref(),
        target.as_os_str(),
    ])
    .ok();
    assert_eq!(
        std::fs::read(target.join(file.file_name().unwrap())).unwrap(),
        b"latin-1 name"
    );
    // The snapshot part must still be an id or `latest`.
    let r = repo.run(&[
        OsStr::new("restore"),
        OsStr::from_bytes(b"lat\xffest:/x"),
        OsStr::new("--target"),
        repo.scratch("u").as_os_str(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
}

/// `init` wrote its key file and config in place, not staged in `tmp/` and renamed: the
/// backend's operator was built before `tmp/` existed and never rebuilt, so a crash could
/// leave a truncated config.
#[test]
fn regression_init_wrote_key_and_config_in_place() {
    use cista::backend::{Backend, FileType};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let backend = cista::backend::local::LocalBackend::open(&root).unwrap();
    backend.create().unwrap();
    // With `tmp/` unusable, a staged write fails and an in-place one would succeed.
    std::fs::remove_dir(root.join("tmp")).unwrap();
    std::fs::write(root.join("tmp"), b"not a folder").unwrap();
    let id = cista::id::Id([7; 32]);
    assert!(backend.write(FileType::Key, &id, vec![1, 2, 3]).is_err());
    assert!(!root.join("keys").join(id.to_hex()).exists());
    assert!(backend.write(FileType::Config, &id, vec![1]).is_err());
    assert!(!root.join("config").exists());
}
