//! Failures exit with the documented code and a one-line message, and leave no half-made
//! snapshot behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::harness::{PASSWORD, Repo, cista, is_root, num, run_cmd, summary_of};

#[test]
fn wrong_password_exits_12_with_one_line() {
    let repo = Repo::new();
    let r = run_cmd(
        {
            let mut c = repo.cmd(&["snapshots"]);
            c.env("CISTA_PASSWORD", "not the password");
            c
        },
        None,
    )
    .expect_code(12);
    assert!(r.stderr.contains("wrong password"), "{}", r.stderr);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);

    // The password file takes precedence over CISTA_PASSWORD, and is read to its first line.
    let pwfile = repo.scratch("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\nsecond line ignored\n")).unwrap();
    let mut c = repo.cmd(&["snapshots"]);
    c.env("CISTA_PASSWORD", "wrong")
        .env("CISTA_PASSWORD_FILE", &pwfile);
    run_cmd(c, None).ok();
    std::fs::write(&pwfile, "wrong\n").unwrap();
    let mut c = repo.cmd(&["snapshots"]);
    c.env("CISTA_PASSWORD_FILE", &pwfile);
    run_cmd(c, None).expect_code(12);
}

#[test]
fn missing_repository_exits_10() {
    let dir = tempfile::tempdir().unwrap();
    for loc in [dir.path().join("nothing-here"), dir.path().to_path_buf()] {
        let r = run_cmd(
            {
                let mut c = cista();
                c.args(["snapshots", "-r"])
                    .arg(&loc)
                    .env("CISTA_PASSWORD", PASSWORD);
                c
            },
            None,
        )
        .expect_code(10);
        assert!(r.stderr.contains("no cista repository"), "{}", r.stderr);
    }
    // Opening a missing repository must not create it.
    assert!(!dir.path().join("nothing-here").exists());
    assert!(!dir.path().join("tmp").exists());

    // No repository given at all is an ordinary error, not a crash.
    let mut c = cista();
    c.arg("snapshots").env("CISTA_PASSWORD", PASSWORD);
    let r = run_cmd(c, None);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("no repository given"), "{}", r.stderr);
}

#[test]
fn init_on_an_existing_repository_exits_1() {
    let repo = Repo::new();
    let before = std::fs::read(repo.path.join("config")).unwrap();
    let r = repo
        .run(&["init", "--kdf-params", "1024,1,1"])
        .expect_code(1);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(std::fs::read(repo.path.join("config")).unwrap(), before);
    assert_eq!(repo.files_in("keys").len(), 1, "init added a key anyway");
}

#[test]
fn usage_errors_exit_2() {
    let repo = Repo::new();
    repo.run(&["backup", "--no-such-flag"]).expect_code(2);
    repo.run(&["no-such-command"]).expect_code(2);
    repo.run(&["init", "--chunk-sizes", "3,2,1"]).expect_code(2);
    repo.run(&["init", "--kdf-params", "1,1"]).expect_code(2);
}

#[test]
fn unknown_snapshot_or_path_exits_1() {
    let repo = Repo::new();
    let target = repo.scratch("t");
    let t = target.to_str().unwrap();
    // Empty repository: `latest` matches nothing.
    let r = repo
        .run(&["restore", "latest", "--target", t])
        .expect_code(1);
    assert!(r.stderr.contains("no snapshot"), "{}", r.stderr);
    let src = repo.scratch("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    repo.backup(&[&src]);
    for spec in ["deadbeef", "latest:/no/such/path", "not-hex"] {
        let r = repo.run(&["restore", spec, "--target", t]);
        assert_eq!(r.code, Some(1), "{spec}: {}", r.stderr);
    }
    repo.run(&["dump", "latest", "/no/such/file"])
        .expect_code(1);
    repo.run(&["ls", "0000000"]).expect_code(1);
    repo.run(&["dump", "latest", "/a/../b"]).expect_code(1);
    assert!(!target.exists() || std::fs::read_dir(&target).unwrap().next().is_none());
}

#[test]
fn failing_command_writes_no_snapshot() {
    let repo = Repo::new();
    let r = repo.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "dump.sql",
        "--",
        "sh",
        "-c",
        "echo partial; exit 3",
    ]);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("no snapshot was written"), "{}", r.stderr);
    assert!(repo.snapshots(&[]).is_empty(), "a snapshot was written");

    // A command that cannot even start fails the same way.
    let r = repo.run(&["backup", "--stdin-from-command", "--", "/no/such/program"]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("no snapshot was written"), "{}", r.stderr);
    assert!(repo.snapshots(&[]).is_empty());
}

#[test]
fn successful_command_stores_exactly_its_output() {
    let repo = Repo::new();
    let s = summary_of(
        &repo
            .run(&[
                "backup",
                "--json",
                "--stdin-from-command",
                "--stdin-filename",
                "abc.txt",
                "--",
                "printf",
                "abc",
            ])
            .ok(),
    );
    assert_eq!(num(&s, "total_bytes_processed"), 3);
    let r = repo.run(&["dump", "latest", "/abc.txt"]).ok();
    assert_eq!(r.stdout, b"abc");
    let snaps = repo.snapshots(&[]);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/abc.txt"]));
}

fn setpriv_available() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn unreadable_file_exits_3_with_an_incomplete_snapshot() {
    if !is_root() || !setpriv_available() {
        eprintln!("note: skipped: needs root and setpriv to run cista as an unprivileged user");
        return;
    }
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    let chown = |p: &Path| std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    chown(dir.path());
    let (repo, src) = (dir.path().join("repo"), dir.path().join("src"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for (name, data) in [
        ("a", "readable a"),
        ("sub/b", "readable b"),
        ("secret", "no"),
    ] {
        std::fs::write(src.join(name), data).unwrap();
        chown(&src.join(name));
    }
    chown(&src);
    chown(&src.join("sub"));
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();

    // Everything below runs as `nobody`, who cannot read `secret`.
    let as_nobody = |args: &[&std::ffi::OsStr]| {
        let mut c = super::harness::hermetic("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(super::harness::BIN)
            .args(args)
            .env("CISTA_REPOSITORY", &repo)
            .env("CISTA_PASSWORD", PASSWORD);
        run_cmd(c, None)
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    as_nobody(&[os("init"), os("--kdf-params"), os("1024,1,1")]).ok();
    let r = as_nobody(&[os("backup"), os("--json"), src.as_os_str()]).expect_code(3);
    assert!(r.stderr.contains("secret"), "{}", r.stderr);
    let s = summary_of(&r);
    assert_eq!(s["incomplete"], true);
    assert_eq!(num(&s, "errors"), 1);

    let snaps = as_nobody(&[os("snapshots"), os("--json")]).ok().json();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["incomplete"], true);
    let listing = as_nobody(&[os("ls"), os("--json"), os("latest")])
        .ok()
        .json_lines();
    let paths: Vec<&str> = listing[1..]
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    let p = |rel: &str| src.join(rel).to_string_lossy().into_owned();
    assert!(paths.contains(&p("a").as_str()), "{paths:?}");
    assert!(paths.contains(&p("sub/b").as_str()), "{paths:?}");
    assert!(!paths.contains(&p("secret").as_str()), "{paths:?}");
    let dumped = as_nobody(&[os("dump"), os("latest"), src.join("sub/b").as_os_str()]).ok();
    assert_eq!(dumped.stdout, b"readable b");
}
