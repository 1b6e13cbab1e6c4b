//! Remote repositories end to end: the backend conformance suite against memory, a folder, a
//! real S3 server (moto) and a real OpenSSH sftp server; every main command through the real
//! binary against S3 and sftp; the three connection failures (unreachable endpoint, missing
//! bucket, refused credentials), each with its own one-line message; and backup, restore and
//! check through injected faults (errors, timeouts, truncated reads) against S3, which must
//! complete correctly or fail cleanly, leaving a repository that `check` passes.
//!
//! The servers come from [`crate::servers`]; without them these tests skip with a note, unless
//! `CISTA_REQUIRE_SERVERS` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{CHEAP_KDF, PASSWORD, Rng, Run, cista, contents, run_cmd};
use crate::servers::{self, S3_OPTIONS};

/// A repository at a remote URL, with the environment and options that reach it.
struct Remote {
    url: String,
    env: Vec<(&'static str, String)>,
    options: Vec<String>,
    dir: tempfile::TempDir,
}

impl Remote {
    fn s3(server: &servers::S3Server) -> Remote {
        Remote {
            url: server.url(&server.bucket(), "repo/one"),
            env: server.env(),
            options: S3_OPTIONS.iter().map(|s| (*s).to_owned()).collect(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh sftp folder and its path on the server (this machine).
    fn sftp(server: &servers::SshServer) -> (Remote, PathBuf) {
        let (path, url) = server.folder();
        let r = Remote {
            url,
            env: Vec::new(),
            options: server.options(),
            dir: tempfile::tempdir().unwrap(),
        };
        (r, path)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = cista();
        c.env("CISTA_REPOSITORY", &self.url)
            .env("CISTA_PASSWORD", PASSWORD)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        c.args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run_cmd(self.cmd(args), None)
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A small tree of files with some shared content (dedup) and an empty file.
fn make_source(root: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    let shared = rng.bytes(50_000);
    std::fs::write(root.join("a.bin"), rng.bytes(300_000)).unwrap();
    std::fs::write(root.join("shared1"), &shared).unwrap();
    std::fs::write(root.join("sub/shared2"), &shared).unwrap();
    std::fs::write(root.join("sub/deeper/small.txt"), b"hello remote\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
}

/// Restores `snapshot` of `r` and compares it with `src` (restored under its absolute path).
fn assert_restores(r: &Remote, snapshot: &str, src: &Path, name: &str) {
    let target = r.scratch(name);
    let t = target.to_str().unwrap();
    r.run(&["restore", snapshot, "--target", t]).ok();
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(contents(&restored), contents(src), "restored tree differs");
}

/// init, backup twice, snapshots, ls, restore, check --read-data, key add, forget --prune,
/// and a final check, all through the binary.
fn every_command(r: &Remote) {
    r.run(&["init", "--kdf-params", CHEAP_KDF, "--pack-size-mib", "1"])
        .ok();
    // A second init is refused: the location holds a repository.
    let again = r.run(&["init", "--kdf-params", CHEAP_KDF]);
    assert_eq!(again.code, Some(1), "{}", again.stderr);
    let src = r.scratch("src");
    make_source(&src, 1);
    let s = src.to_str().unwrap();
    r.run(&["backup", "--json", s]).ok();
    std::fs::write(src.join("sub/new.txt"), b"second night\n").unwrap();
    r.run(&["backup", "--json", s]).ok();
    let snaps = r.run(&["snapshots", "--json"]).ok().json();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    let ls = r.run(&["ls", "latest"]).ok().stdout_str();
    assert!(ls.contains("new.txt"), "{ls}");
    assert!(ls.contains("small.txt"), "{ls}");
    assert_restores(r, "latest", &src, "restored");
    r.run(&["check", "--read-data"]).ok();

    let newpw = r.scratch("newpw");
    std::fs::write(&newpw, "another passphrase\n").unwrap();
    let mut c = r.cmd(&["key", "add"]);
    c.env("CISTA_NEW_PASSWORD_FILE", &newpw);
    run_cmd(c, None).ok();
    let mut c = r.cmd(&["snapshots"]);
    c.env("CISTA_PASSWORD", "another passphrase");
    run_cmd(c, None).ok();

    r.run(&["forget", "--keep-last", "1", "--prune"]).ok();
    let snaps = r.run(&["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_restores(r, "latest", &src, "restored2");
    r.run(&["check", "--read-data"]).ok();
}

#[test]
fn conformance_memory_and_folder() {
    let mem = cista::backend::opendal::OpendalBackend::memory().unwrap();
    cista::backend::conformance::run_all(&mem);
    let d = tempfile::tempdir().unwrap();
    let local = servers::open(d.path().join("repo").to_str().unwrap(), &[], &[]);
    cista::backend::conformance::run_all(&*local);
}

#[test]
fn conformance_s3() {
    let Some(server) = servers::s3() else { return };
    let url = server.url(&server.bucket(), "conformance");
    let opts: Vec<String> = S3_OPTIONS.iter().map(|s| (*s).to_owned()).collect();
    let b = servers::open(&url, &opts, &server.env());
    cista::backend::conformance::run_all(&*b);
}

#[test]
fn conformance_sftp() {
    let Some(server) = servers::ssh() else { return };
    let (_, url) = server.folder();
    let b = servers::open(&url, &server.options(), &[]);
    cista::backend::conformance::run_all(&*b);
}

#[test]
fn every_command_against_s3() {
    let Some(server) = servers::s3() else { return };
    every_command(&Remote::s3(server));
}

#[test]
fn every_command_against_sftp() {
    let Some(server) = servers::ssh() else { return };
    let (r, path) = Remote::sftp(server);
    every_command(&r);
    // The files landed where the URL says, under the layout of docs/FORMAT.md §2, and no
    // staged write was left in tmp/.
    assert!(path.join("config").is_file());
    assert_eq!(std::fs::read_dir(path.join("keys")).unwrap().count(), 2);
    // With the umask docs/CLI.md tells sftp servers to set, keys are the owner's alone.
    use std::os::unix::fs::PermissionsExt as _;
    for k in std::fs::read_dir(path.join("keys")).unwrap() {
        let mode = k.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode {mode:o}");
    }
    let mode = std::fs::metadata(path.join("keys"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "keys/ mode {mode:o}");
    let staged = std::fs::read_dir(path.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(staged, 0, "staged writes left in tmp/");
}

#[test]
fn sftp_makes_no_folder_until_init_and_check_reports_staged_writes() {
    let Some(server) = servers::ssh() else { return };
    let (r, path) = Remote::sftp(server);
    // No repository there: exit 10, and looking made no folder on the server.
    let missing = r.run(&["snapshots"]);
    assert_eq!(missing.code, Some(10), "{}", missing.stderr);
    assert!(!path.exists(), "opening made {}", path.display());

    r.run(&["init", "--kdf-params", CHEAP_KDF]).ok();
    // Two staged writes a killed cista left behind: one from now, one from two days ago.
    let tmp = path.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("fresh.0123456789abcdef.tmp"), b"partial").unwrap();
    let old = std::fs::File::create(tmp.join("old.fedcba9876543210.tmp")).unwrap();
    let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
    old.set_modified(std::time::SystemTime::now() - two_days)
        .unwrap();
    drop(old);

    // Opening the repository removes the stale one; check reports the fresh one, a warning.
    let checked = r.run(&["check", "--json"]);
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    let out = checked.stdout_str();
    assert!(out.contains("temp_file"), "{out}");
    assert!(out.contains("fresh.0123456789abcdef.tmp"), "{out}");
    assert!(!out.contains("old.fedcba9876543210.tmp"), "{out}");
    assert!(!tmp.join("old.fedcba9876543210.tmp").exists());
    assert!(tmp.join("fresh.0123456789abcdef.tmp").exists());
}

/// The message of a run that must fail with exit 1 in one line, which must contain `want`
/// and no secret.
#[track_caller]
fn one_line_failure(r: Run, want: &str) -> String {
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let msg = r.stderr.trim_end();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains(want), "{msg}");
    assert!(!msg.contains(servers::SECRET_KEY), "{msg}");
    assert!(!msg.contains(servers::ACCESS_KEY), "{msg}");
    msg.to_owned()
}

#[test]
fn unreachable_endpoint_fails_in_one_line() {
    // A port nothing listens on: connection refused, retried a few times, then one line.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = Remote {
        url: format!("s3:http://127.0.0.1:{port}/bucket/p"),
        env: vec![
            ("AWS_ACCESS_KEY_ID", servers::ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", servers::SECRET_KEY.into()),
        ],
        options: S3_OPTIONS.iter().map(|s| (*s).to_owned()).collect(),
        dir: tempfile::tempdir().unwrap(),
    };
    one_line_failure(
        r.run(&["snapshots"]),
        "cannot reach the server (connection refused)",
    );
    let sftp = Remote {
        url: format!("sftp://nobody@127.0.0.1:{port}/srv/repo"),
        env: Vec::new(),
        options: vec!["sftp.known-hosts=accept".into()],
        dir: tempfile::tempdir().unwrap(),
    };
    let r = sftp.run(&["snapshots"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("cannot reach the server"), "{}", r.stderr);
}

#[test]
fn without_ca_certificates_plain_http_works_and_https_says_what_to_install() {
    let Some(server) = servers::s3() else { return };
    let mut r = Remote::s3(server);
    // No certificate anywhere the system's store is looked up.
    let empty = r.scratch("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    r.env.push((
        "SSL_CERT_FILE",
        empty.join("none.pem").display().to_string(),
    ));
    r.env.push(("SSL_CERT_DIR", empty.display().to_string()));
    r.url = server.url(&server.bucket(), "repo/no-certs");
    let init = r.run(&["init", "--kdf-params", CHEAP_KDF]);
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    let snaps = r.run(&["snapshots"]);
    assert_eq!(snaps.code, Some(0), "{}", snaps.stderr);
    r.url = r.url.replacen("http://", "https://", 1);
    let msg = one_line_failure(r.run(&["snapshots"]), "cannot set up HTTPS");
    assert!(msg.contains("ca-certificates"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
}

#[test]
fn missing_bucket_fails_in_one_line() {
    let Some(server) = servers::s3() else { return };
    let mut r = Remote::s3(server);
    r.url = server.url("no-such-bucket-here", "repo");
    one_line_failure(
        r.run(&["snapshots"]),
        "bucket (or container) does not exist",
    );
    one_line_failure(
        r.run(&["init", "--kdf-params", CHEAP_KDF]),
        "bucket (or container) does not exist",
    );
}

#[test]
fn refused_credentials_fail_in_one_line() {
    let Some(server) = servers::s3_with_auth() else {
        return;
    };
    let r = Remote {
        url: server.url("bucket", "repo"),
        env: server.env(),
        options: S3_OPTIONS.iter().map(|s| (*s).to_owned()).collect(),
        dir: tempfile::tempdir().unwrap(),
    };
    one_line_failure(r.run(&["snapshots"]), "access denied");
    one_line_failure(r.run(&["init", "--kdf-params", CHEAP_KDF]), "access denied");
}

#[test]
fn bad_locations_and_options_fail_in_one_line() {
    let r = Remote {
        url: "s3://AKIAXXXX:hunter2secret@bucket/p".into(),
        env: Vec::new(),
        options: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    let out = r.run(&["snapshots"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("must not contain credentials"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2secret"), "{}", out.stderr);
    let r = Remote {
        url: "s3:http://127.0.0.1:1/bucket".into(),
        env: Vec::new(),
        options: vec!["s3.regoin=eu-west-1".into()],
        dir: tempfile::tempdir().unwrap(),
    };
    let out = r.run(&["snapshots"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("s3.regoin"), "{}", out.stderr);
    assert!(out.stderr.contains("unknown option"), "{}", out.stderr);
}

/// A run through injected faults: it succeeded (true) or failed with exit 1 in one line.
#[track_caller]
fn succeeded_or_failed_in_one_line(r: &Run, what: &str) -> bool {
    assert!(
        r.code == Some(0) || r.code == Some(1),
        "{what}: {:?} {}",
        r.code,
        r.stderr
    );
    if r.code == Some(1) {
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    }
    r.code == Some(0)
}

/// `CISTA_TEST_FAULTS` with errors, timeouts and truncated reads: every command either
/// succeeds (and then its result is right) or fails cleanly; `check` without faults passes
/// after each, and the last snapshot restores exactly.
#[test]
fn faults_against_s3_leave_the_repository_intact() {
    let Some(server) = servers::s3() else { return };
    let r = Remote::s3(server);
    r.run(&["init", "--kdf-params", CHEAP_KDF, "--pack-size-mib", "1"])
        .ok();
    let src = r.scratch("src");
    make_source(&src, 7);
    let s = src.to_str().unwrap();
    let faulty = |args: &[&str], seed: u64| {
        let mut c = r.cmd(args);
        c.env(
            "CISTA_TEST_FAULTS",
            format!("errors=0.1,timeouts=0.03,timeout=50ms,truncate=0.05,seed={seed}"),
        );
        run_cmd(c, None)
    };
    let mut backed_up = false;
    for seed in 1..=4u64 {
        std::fs::write(src.join(format!("night{seed}")), format!("night {seed}\n")).unwrap();
        let b = faulty(&["backup", "--json", s], seed);
        backed_up |= succeeded_or_failed_in_one_line(&b, "backup");
        r.run(&["check"]).ok();
    }
    // Ten percent of requests failing once each is what retries are for: at least one
    // backup got through (they almost always all do).
    assert!(backed_up, "no backup completed through the faults");
    // Make sure the last snapshot holds the current tree, then restore and check through
    // faults.
    r.run(&["backup", "--json", s]).ok();
    for seed in 10..=12u64 {
        let target = r.scratch(&format!("restored{seed}"));
        let rs = faulty(
            &["restore", "latest", "--target", target.to_str().unwrap()],
            seed,
        );
        if rs.code == Some(0) {
            let restored = target.join(src.strip_prefix("/").unwrap());
            assert_eq!(
                contents(&restored),
                contents(&src),
                "restore through faults"
            );
        } else {
            assert_eq!(rs.code, Some(1), "{}", rs.stderr);
        }
        let ck = faulty(&["check", "--read-data"], seed);
        assert!(
            ck.code == Some(0) || ck.code == Some(1),
            "check: {:?} {}",
            ck.code,
            ck.stderr
        );
        if ck.code == Some(1) {
            // A failure through faults must not be a false report of damage.
            assert!(!ck.stderr.contains("damaged"), "{}", ck.stderr);
        }
    }
    r.run(&["check", "--read-data"]).ok();
    assert_restores(&r, "latest", &src, "final");
}

/// `copy` between stores end to end: from S3 into sftp with shared content keys (blobs
/// re-sealed from coalesced range reads), first through injected faults on both sides, which
/// each run survives or fails in one line and the next run finishes; then from S3 into a
/// local folder with its own keys (re-chunked). Every copy passes `check --read-data`,
/// restores exactly, and a second copy moves nothing.
#[test]
fn copy_from_s3_into_sftp_and_a_folder() {
    let (Some(s3), Some(ssh)) = (servers::s3(), servers::ssh()) else {
        return;
    };
    let a = Remote::s3(s3);
    a.run(&["init", "--kdf-params", CHEAP_KDF, "--pack-size-mib", "1"])
        .ok();
    let src = a.scratch("src");
    make_source(&src, 11);
    let s = src.to_str().unwrap();
    a.run(&["backup", "--json", s]).ok();
    std::fs::write(src.join("sub/night2.txt"), b"second night\n").unwrap();
    a.run(&["backup", "--json", s]).ok();

    // The sftp target shares a's chunker and id keys; a is read with its own options.
    let (b, _) = Remote::sftp(ssh);
    let mut init = b.cmd(&[
        "init",
        "--kdf-params",
        CHEAP_KDF,
        "--copy-chunker-params-from",
    ]);
    init.arg(&a.url).env("CISTA_FROM_PASSWORD", PASSWORD);
    for (k, v) in &a.env {
        init.env(k, v);
    }
    for o in &a.options {
        init.arg("--from-option").arg(o);
    }
    run_cmd(init, None).ok();

    let copy_to = |target: &Remote, faults: Option<u64>| {
        let mut c = a.cmd(&["copy", "--to"]);
        c.arg(&target.url).env("CISTA_TO_PASSWORD", PASSWORD);
        for o in &target.options {
            c.arg("--to-option").arg(o);
        }
        if let Some(seed) = faults {
            c.env(
                "CISTA_TEST_FAULTS",
                format!("errors=0.1,timeouts=0.02,timeout=50ms,truncate=0.05,seed={seed}"),
            );
        }
        run_cmd(c, None)
    };
    for seed in 1..=3u64 {
        succeeded_or_failed_in_one_line(&copy_to(&b, Some(seed)), "copy");
        // Whatever a run through faults left, the target is consistent.
        b.run(&["check"]).ok();
    }
    copy_to(&b, None).ok();
    let snaps = b.run(&["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    b.run(&["check", "--read-data"]).ok();
    assert_restores(&b, "latest", &src, "from-sftp");

    // A folder with its own keys: the copy re-chunks.
    let c = Remote {
        url: a.scratch("folder-repo").to_str().unwrap().to_owned(),
        env: Vec::new(),
        options: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    c.run(&["init", "--kdf-params", CHEAP_KDF]).ok();
    copy_to(&c, None).ok();
    let again = copy_to(&c, None).ok().stdout_str();
    assert_eq!(
        again.matches("was already copied to snapshot").count(),
        2,
        "{again}"
    );
    let snaps = c.run(&["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{again}");
    c.run(&["check", "--read-data"]).ok();
    assert_restores(&c, "latest", &src, "from-folder");
}
