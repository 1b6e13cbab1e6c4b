//! Lock modes between real processes (docs/FORMAT.md §17): a backup beside a maintenance
//! holder, two maintenance holders, maintenance against exclusive, a SIGKILLed holder, a lock
//! from another host that ages out, `--retry-lock`, `--no-lock`, a lock lost while a backup
//! runs, and a version-2 repository upgraded by its first maintenance session.
//!
//! The other holder is `cista debug hold-lock`, the hidden test hook (docs/DESIGN.md, "Test
//! hooks"), so every holder is a separate process with its own pid.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::harness::{Repo, Run};

/// A `cista debug hold-lock` process, killed on drop so no test leaves one behind.
pub struct Holder {
    child: Child,
}

impl Holder {
    /// Starts a holder and waits until it says it holds the lock.
    pub fn start(repo: &Repo, mode: &str, extra: &[&str]) -> Self {
        let mut args = vec!["debug", "hold-lock", "--mode", mode, "--seconds", "600"];
        args.extend_from_slice(extra);
        let mut cmd = repo.cmd(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning the holder");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("reading the holder's first line");
        if !line.starts_with(&format!("holding {mode} lock")) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("holder output");
            panic!(
                "holder did not take its lock: {line:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn source(repo: &Repo) -> PathBuf {
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"beside a prune").unwrap();
    src
}

fn backup(repo: &Repo, src: &std::path::Path) -> Run {
    repo.run(&["backup".as_ref(), "-q".as_ref(), src.as_os_str()])
}

/// A second maintenance holder that gives up at once.
fn try_maintenance(repo: &Repo, extra: &[&str]) -> Run {
    let mut args = vec![
        "debug",
        "hold-lock",
        "--mode",
        "maintenance",
        "--seconds",
        "0",
    ];
    args.extend_from_slice(extra);
    repo.run(&args)
}

#[test]
fn backup_and_check_run_beside_a_maintenance_holder() {
    let repo = Repo::new();
    let src = source(&repo);
    let _prune = Holder::start(&repo, "maintenance", &[]);
    backup(&repo, &src).ok();
    repo.run(&["check"]).ok();
    assert_eq!(repo.snapshots(&[]).len(), 1);
    let t = repo.scratch("restored");
    repo.restore_latest(&t);
    assert_eq!(
        std::fs::read(t.join(src.strip_prefix("/").unwrap()).join("f")).unwrap(),
        b"beside a prune"
    );
}

#[test]
fn two_maintenance_holders_exclude_each_other_naming_the_holder() {
    let repo = Repo::new();
    let first = Holder::start(&repo, "maintenance", &[]);
    let r = try_maintenance(&repo, &[]).expect_code(11);
    assert!(
        r.stderr
            .contains(&format!("maintenance lock of pid {}", first.pid())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("held for"), "{}", r.stderr);
    // The refused attempt left nothing: only the holder's lock is there.
    assert_eq!(repo.files_in("locks").len(), 1);
}

#[test]
fn maintenance_and_exclusive_exclude_each_other() {
    let repo = Repo::new();
    let src = source(&repo);
    {
        let _m = Holder::start(&repo, "maintenance", &[]);
        let r = repo
            .run(&[
                "debug",
                "hold-lock",
                "--mode",
                "exclusive",
                "--seconds",
                "0",
            ])
            .expect_code(11);
        assert!(r.stderr.contains("maintenance lock of pid"), "{}", r.stderr);
        // Listing keys only reads: a shared lock, beside maintenance.
        repo.run(&["key", "list"]).ok();
    }
    let _x = Holder::start(&repo, "exclusive", &[]);
    let r = try_maintenance(&repo, &[]).expect_code(11);
    assert!(r.stderr.contains("exclusive lock of pid"), "{}", r.stderr);
    backup(&repo, &src).expect_code(11);
}

#[test]
fn a_sigkilled_holder_is_ignored_at_once_on_the_same_host() {
    let repo = Repo::new();
    let mut dead = Holder::start(&repo, "maintenance", &[]);
    try_maintenance(&repo, &[]).expect_code(11);
    dead.kill9();
    // Its lock file is still there, and blocks no one.
    assert_eq!(repo.files_in("locks").len(), 1);
    try_maintenance(&repo, &[]).ok();
    let r = repo.run(&["unlock"]).ok();
    assert!(
        r.stdout_str().contains("successfully removed 1 locks"),
        "{}",
        r.stdout_str()
    );
    assert!(repo.files_in("locks").is_empty());
}

#[test]
fn a_lock_from_another_host_counts_until_thirty_minutes_after_its_refresh() {
    let repo = Repo::new();
    // 29 minutes old: live, and its pid is not checked (it is another host's).
    let mut young = Holder::start(
        &repo,
        "maintenance",
        &[
            "--as-host",
            "elsewhere.example",
            "--clock-offset-seconds",
            "-1740",
        ],
    );
    young.kill9();
    let r = try_maintenance(&repo, &[]).expect_code(11);
    assert!(r.stderr.contains("@elsewhere.example"), "{}", r.stderr);
    assert!(r.stderr.contains("refreshed 29m"), "{}", r.stderr);
    // Plain unlock keeps it (not stale); --remove-all removes it.
    repo.run(&["unlock"]).ok();
    assert_eq!(repo.files_in("locks").len(), 1);
    repo.run(&["unlock", "--remove-all"]).ok();
    // 31 minutes old: stale, whoever holds it.
    let _old = Holder::start(
        &repo,
        "maintenance",
        &[
            "--as-host",
            "elsewhere.example",
            "--clock-offset-seconds",
            "-1860",
        ],
    );
    try_maintenance(&repo, &[]).ok();
    let r = repo.run(&["unlock"]).ok();
    assert!(
        r.stdout_str().contains("successfully removed 1 locks"),
        "{}",
        r.stdout_str()
    );
}

#[test]
fn retry_lock_waits_for_the_holder_then_gives_up_naming_it() {
    let repo = Repo::new();
    // A holder that releases by itself after a moment: the waiter gets the lock.
    let short = repo
        .cmd(&[
            "debug",
            "hold-lock",
            "--mode",
            "maintenance",
            "--seconds",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut short = Holder { child: short };
    let mut line = String::new();
    BufReader::new(short.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("holding maintenance lock"), "{line}");
    let r = try_maintenance(&repo, &["--retry-lock", "2m"]).ok();
    assert!(r.stderr.contains("waiting up to 120s"), "{}", r.stderr);
    drop(short);
    // A holder that stays: the waiter gives up with exit 11, naming it.
    let long = Holder::start(&repo, "maintenance", &[]);
    let r = try_maintenance(&repo, &["--retry-lock", "1s"]).expect_code(11);
    assert!(
        r.stderr
            .contains(&format!("maintenance lock of pid {}", long.pid())),
        "{}",
        r.stderr
    );
    // A malformed duration is a usage error.
    try_maintenance(&repo, &["--retry-lock", "5 minutes"]).expect_code(2);
}

#[test]
fn no_lock_reads_read_only_storage_and_writing_commands_still_lock() {
    let repo = Repo::new();
    let src = source(&repo);
    backup(&repo, &src).ok();
    {
        let _x = Holder::start(&repo, "exclusive", &[]);
        repo.run(&["ls", "latest"]).expect_code(11);
        repo.run(&["--no-lock", "ls", "latest"]).ok();
        repo.run(&["--no-lock", "check"]).ok();
        // A backup writes: it locks whatever --no-lock says, as restic's does.
        repo.run(&["--no-lock".as_ref(), "backup".as_ref(), src.as_os_str()])
            .expect_code(11);
    }
    if !super::harness::is_root() {
        use std::os::unix::fs::PermissionsExt;
        let locks = repo.path.join("locks");
        std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o500)).unwrap();
        let locked = repo.run(&["snapshots"]);
        let unlocked = repo.run(&["--no-lock", "snapshots"]);
        std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o700)).unwrap();
        locked.expect_code(1);
        unlocked.ok();
    }
}

#[test]
fn a_backup_whose_lock_vanishes_writes_no_snapshot() {
    let repo = Repo::new();
    let mut child = repo
        .cmd(&["backup", "--stdin", "--stdin-filename", "dump.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![7u8; 300_000]).unwrap();
    // Its lock is written before it reads its input; remove it behind its back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while repo.files_in("locks").is_empty() {
        assert!(Instant::now() < deadline, "the backup never took its lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    repo.run(&["unlock", "--remove-all"]).ok();
    stdin.write_all(&vec![8u8; 300_000]).unwrap();
    drop(stdin);
    let r = Run::from_output(child.wait_with_output().unwrap()).expect_code(1);
    assert!(
        r.stderr.contains("lock of this process was lost") && r.stderr.contains("is gone"),
        "{}",
        r.stderr
    );
    assert!(repo.snapshots(&[]).is_empty(), "a snapshot was written");
    // What it uploaded is indexed and the repository is sound.
    repo.run(&["check"]).ok();
}

#[test]
fn a_version_2_repository_is_upgraded_by_its_first_maintenance_session() {
    let repo = Repo::new();
    let src = source(&repo);
    // Make it what cista wrote before format 3: the same config at version 2.
    let lib = repo.open();
    let v2 = cista::format::config::Config {
        format_version: 2,
        ..lib.config().clone()
    };
    let sealed = lib
        .seal_object(cista::format::ObjectKind::Config, &v2.encode())
        .unwrap();
    lib.backend().replace_config(sealed).unwrap();
    let cfg = |repo: &Repo| repo.run(&["cat", "config"]).ok().json();
    assert_eq!(cfg(&repo)["version"], 2);
    // Shared work keeps it at version 2 (older cista can still use it), and its locks are in
    // the version-2 layout older cista reads.
    {
        let _shared = Holder::start(&repo, "shared", &[]);
        let live = lib.live_locks(&cista::host::Host::this_process()).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].lock.session, None);
    }
    backup(&repo, &src).ok();
    repo.run(&["check"]).ok();
    assert_eq!(cfg(&repo)["version"], 2);
    // A maintenance session raises it to 3; everything else stays.
    try_maintenance(&repo, &[]).ok();
    let after = cfg(&repo);
    assert_eq!(after["version"], 3);
    assert_eq!(
        repo.open().config().repo_id,
        lib.config().repo_id,
        "the upgrade changed the repository id"
    );
    repo.run(&["check"]).ok();
    assert_eq!(repo.snapshots(&[]).len(), 1);
    let t = repo.scratch("restored");
    repo.restore_latest(&t);
    // The config is still private and nothing was left in tmp/.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(repo.path.join("config"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(repo.files_in("tmp").is_empty());
}

#[test]
fn a_maintenance_session_starts_beside_a_running_backup() {
    let repo = Repo::new();
    let mut child = repo
        .cmd(&["backup", "--stdin", "--stdin-filename", "dump.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![5u8; 200_000]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while repo.files_in("locks").is_empty() {
        assert!(Instant::now() < deadline, "the backup never took its lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The backup holds its shared lock: a maintenance session is not refused...
    try_maintenance(&repo, &[]).ok();
    // ...and the backup is not disturbed by it.
    stdin.write_all(&vec![6u8; 200_000]).unwrap();
    drop(stdin);
    Run::from_output(child.wait_with_output().unwrap()).ok();
    assert_eq!(repo.snapshots(&[]).len(), 1);
}

#[test]
fn racing_maintenance_sessions_with_retry_all_get_their_turn() {
    let repo = Repo::new();
    let children: Vec<Child> = (0..3)
        .map(|_| {
            repo.cmd(&[
                "--retry-lock",
                "2m",
                "debug",
                "hold-lock",
                "--mode",
                "maintenance",
                "--seconds",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        Run::from_output(c.wait_with_output().unwrap()).ok();
    }
    assert!(repo.files_in("locks").is_empty());
}
