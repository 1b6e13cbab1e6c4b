//! Repository robustness (issue 7): damage to one object costs only what it held, storage
//! failures are reported by their real cause, and the repository's files are private.
//! Each test is named after the defect it pins.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::harness::{CHEAP_KDF, Repo, Rng, run_cmd};

/// A source folder with a few files of random bytes; returns it.
fn source(repo: &Repo, files: usize, len: usize) -> PathBuf {
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..files {
        std::fs::write(src.join(format!("f{i}")), Rng::new(i as u64 + 1).bytes(len)).unwrap();
    }
    src
}

/// Restores the latest snapshot into a new folder and compares every file with `src`.
#[track_caller]
fn assert_restores(repo: &Repo, src: &Path, name: &str) -> super::harness::Run {
    let target = repo.scratch(name);
    let r = repo
        .run(&["restore", "latest", "--target", target.to_str().unwrap()])
        .ok();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let restored = std::fs::read(
            target
                .join(src.strip_prefix("/").unwrap())
                .join(e.file_name()),
        )
        .or_else(|_| std::fs::read(target.join(e.file_name())))
        .unwrap_or_else(|err| panic!("{:?} not restored: {err}", e.file_name()));
        assert_eq!(
            restored,
            std::fs::read(e.path()).unwrap(),
            "{:?}",
            e.file_name()
        );
    }
    r
}

/// Replaces a repository file by other bytes (keeping its name).
fn overwrite(path: &Path, bytes: &[u8]) {
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn key_list(repo: &Repo) -> Vec<Value> {
    match repo.run(&["key", "list", "--json"]).ok().json() {
        Value::Array(v) => v,
        other => panic!("key list --json printed {other}"),
    }
}

fn add_key(repo: &Repo, pw: &str) {
    let f = repo.scratch("new-pw");
    std::fs::write(&f, pw).unwrap();
    let mut c = repo.cmd(&["key", "add", "--kdf-params", CHEAP_KDF]);
    c.env("CISTA_NEW_PASSWORD_FILE", &f);
    run_cmd(c, None).ok();
}

#[test]
fn damaged_index_file_no_longer_takes_the_repository_down() {
    let repo = Repo::new();
    let src = source(&repo, 4, 50 << 10);
    repo.backup(&[&src]);
    let index_files = repo.files_in("index");
    assert_eq!(index_files.len(), 1);
    overwrite(&index_files[0], b"not an index file");
    let short = &index_files[0].file_name().unwrap().to_string_lossy()[..8].to_owned();

    // Reads still work: the packs' headers say what the index said, with a warning.
    let r = assert_restores(&repo, &src, "restored");
    assert!(
        r.stderr.contains("warning: index file") && r.stderr.contains(short.as_str()),
        "{}",
        r.stderr
    );
    // check names the damaged file as an error.
    let r = repo.run(&["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("index file {short}")),
        "{}",
        r.stderr
    );
    // A backup still works, re-indexes the packs, and the repository restores again.
    std::fs::write(src.join("new"), b"more").unwrap();
    let r = repo.run(&["backup", &src.to_string_lossy()]).ok();
    assert!(r.stderr.contains("skipped"), "{}", r.stderr);
    assert_restores(&repo, &src, "restored-2");
    let r = repo.run(&["check"]);
    assert!(
        !r.stderr.contains("in no index"),
        "after re-indexing, every blob is indexed: {}",
        r.stderr
    );
}

#[test]
fn damaged_orphan_pack_is_not_adopted() {
    let repo = Repo::new();
    let src = source(&repo, 3, 300 << 10);
    repo.backup(&[&src]);
    // As after a killed backup: packs on storage, no index file names them.
    for f in repo.files_in("index") {
        std::fs::remove_file(f).unwrap();
    }
    for f in repo.files_in("snapshots") {
        std::fs::remove_file(f).unwrap();
    }
    let packs = repo.files_in("data");
    let victim = &packs[0];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[20] ^= 0x40;
    overwrite(victim, &bytes);

    let r = repo.run(&["backup", &src.to_string_lossy()]).ok();
    let short = victim.file_name().unwrap().to_string_lossy()[..8].to_owned();
    assert!(
        r.stderr.contains("not adopted") && r.stderr.contains(&short),
        "{}",
        r.stderr
    );
    // Nothing of the damaged pack was reused: the new snapshot restores exactly.
    assert_restores(&repo, &src, "restored");
    let r = repo.run(&["check", "--read-data"]).ok();
    assert!(r.stderr.contains("not indexed"), "{}", r.stderr);
}

#[test]
fn init_refuses_a_folder_with_keys_and_no_config() {
    let repo = Repo::new();
    std::fs::remove_file(repo.path.join("config")).unwrap();
    let r = repo.run(&["init", "--kdf-params", CHEAP_KDF]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("has key files but no config"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert_eq!(repo.files_in("keys").len(), 1, "no second key was written");
}

#[test]
fn stray_key_of_another_master_key_never_shadows_the_right_one() {
    let repo = Repo::new();
    let other = Repo::new();
    // The other repository's key (same passphrase, another master key) planted in keys/.
    for k in other.files_in("keys") {
        std::fs::copy(&k, repo.path.join("keys").join(k.file_name().unwrap())).unwrap();
    }
    assert_eq!(repo.files_in("keys").len(), 2);
    let src = source(&repo, 1, 1000);
    repo.backup(&[&src]);
    assert_restores(&repo, &src, "restored");
}

#[test]
fn damaged_key_file_is_reported_not_a_wrong_password() {
    let repo = Repo::new();
    add_key(&repo, "recovery passphrase");
    let keys = key_list(&repo);
    let recovery = keys
        .iter()
        .find(|k| k["current"] == false)
        .and_then(|k| k["id"].as_str())
        .unwrap()
        .to_owned();
    let path = repo.path.join("keys").join(&recovery);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    overwrite(&path, &bytes);

    // key list keeps going and shows each key's state.
    let keys = key_list(&repo);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let bad = keys.iter().find(|k| k["id"] == recovery.as_str()).unwrap();
    assert_eq!(bad["state"], "damaged", "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("do not match"));
    let good = keys.iter().find(|k| k["id"] != recovery.as_str()).unwrap();
    assert_eq!(good["state"], "ok");

    // check reads key files: the damaged recovery key is noticed now, not on the day needed.
    let r = repo.run(&["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("key file {}", &recovery[..8])),
        "{}",
        r.stderr
    );

    // The recovery passphrase no longer opens anything; the message says keys are damaged.
    let mut c = repo.cmd(&["snapshots"]);
    c.env("CISTA_PASSWORD", "recovery passphrase");
    let r = run_cmd(c, None).expect_code(12);
    assert!(r.stderr.contains("1 key files are damaged"), "{}", r.stderr);
}

#[test]
fn key_file_over_its_cap_is_damaged_unread() {
    let repo = Repo::new();
    let big = vec![0u8; 70 << 10];
    let name = blake3::hash(&big).to_hex().to_string();
    std::fs::write(repo.path.join("keys").join(&name), &big).unwrap();
    let keys = key_list(&repo);
    let bad = keys.iter().find(|k| k["id"] == name.as_str()).unwrap();
    assert!(bad["error"].as_str().unwrap().contains("cap"), "{bad}");
}

#[test]
fn damage_message_says_what_to_do_now() {
    let repo = Repo::new();
    let src = source(&repo, 1, 1000);
    repo.backup(&[&src]);
    for f in repo.files_in("snapshots") {
        let mut b = std::fs::read(&f).unwrap();
        b[40] ^= 1;
        overwrite(&f, &b);
    }
    let r = repo.run(&["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!r.stderr.contains("docs/CLI.md on repair"), "{}", r.stderr);
    // check names the damaged snapshot and what to run about it.
    assert!(r.stderr.contains("cista forget"), "{}", r.stderr);
}

#[test]
fn key_removal_takes_the_exclusive_lock() {
    let repo = Repo::new();
    add_key(&repo, "second passphrase");
    let other = key_list(&repo)
        .into_iter()
        .find(|k| k["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lib = repo.open();
    let held = lib
        .lock(
            cista::format::lock::LockMode::Shared,
            &cista::host::Host::this_process(),
        )
        .unwrap();
    let r = repo.run(&["key", "remove", &other[..8]]).expect_code(11);
    assert!(r.stderr.contains("locked"), "{}", r.stderr);
    drop(held);
    repo.run(&["key", "remove", &other[..8]]).ok();
    assert_eq!(key_list(&repo).len(), 1);
}

#[test]
fn newer_repository_format_is_refused_as_such() {
    // A config from a newer cista: sealed with the repository's own key, so only the version
    // can be the reason it is refused.
    let repo = Repo::new();
    let lib = repo.open();
    let mut cfg = lib.config().clone();
    cfg.format_version = cista::format::config::REPO_FORMAT_VERSION + 1;
    let sealed = lib
        .seal_object(cista::format::ObjectKind::Config, &cfg.encode())
        .unwrap();
    overwrite(&repo.path.join("config"), &sealed);
    let r = repo.run(&["snapshots"]).expect_code(1);
    assert!(
        r.stderr.contains("written by a newer version of cista") && r.stderr.contains("upgrade"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("damaged"), "{}", r.stderr);
}

#[test]
fn new_repositories_declare_their_format_version() {
    let repo = Repo::new();
    let cfg = repo.open().config().clone();
    assert_eq!(
        cfg.format_version,
        cista::format::config::REPO_FORMAT_VERSION
    );
    assert!(cfg.has_feature("tree-parts"));
}

/// Runs cista under `umask 022`, the usual default, whatever the test process's umask.
fn with_umask_022(repo_path: &Path, args: &[&str]) -> super::harness::Run {
    let mut c = super::harness::hermetic("sh");
    c.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(super::harness::BIN)
        .args(args)
        .env("CISTA_REPOSITORY", repo_path)
        .env("CISTA_PASSWORD", super::harness::PASSWORD);
    run_cmd(c, None)
}

#[test]
fn repository_files_are_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    with_umask_022(&repo, &["init", "--kdf-params", CHEAP_KDF]).ok();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), Rng::new(3).bytes(100_000)).unwrap();
    with_umask_022(&repo, &["backup", src.to_str().unwrap()]).ok();
    let mut stack = vec![repo.clone()];
    let (mut files, mut dirs) = (0, 0);
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
        dirs += 1;
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
                files += 1;
            }
        }
    }
    // config, a key, at least one pack, an index file and a snapshot.
    assert!(files >= 5 && dirs > 256, "{files} files, {dirs} folders");
}

/// A tmpfs of a few MiB mounted for one test, unmounted on drop. Needs root.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        if !super::harness::is_root() {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (no CAP_SYS_ADMIN?)");
            return None;
        }
        Some(Self(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_reports_its_real_cause_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "4m") else {
        return;
    };
    let repo_path = disk.0.join("repo");
    let run = |args: &[&str]| {
        let mut c = cista_cmd(&repo_path);
        c.args(args);
        run_cmd(c, None)
    };
    run(&["init", "--kdf-params", CHEAP_KDF, "--pack-size-mib", "1"]).ok();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..8 {
        std::fs::write(src.join(format!("f{i}")), Rng::new(i).bytes(1 << 20)).unwrap();
    }
    let r = run(&["backup", src.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let want = format!(
        "no space left on device writing to local:{}: free space or move the repository",
        repo_path.display()
    );
    assert!(r.stderr.contains(&want), "{}", r.stderr);
    assert!(
        !r.stderr.contains("stopped after an earlier error"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(repo_path.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let r = run(&["check"]).ok();
    assert!(!r.stderr.contains("tmp/"), "{}", r.stderr);
}

fn cista_cmd(repo_path: &Path) -> std::process::Command {
    let mut c = super::harness::cista();
    c.env("CISTA_REPOSITORY", repo_path)
        .env("CISTA_PASSWORD", super::harness::PASSWORD);
    c
}

/// Makes the pack folders unwritable: `chattr +i` as root (root ignores modes), a read-only
/// mode otherwise. Returns an undo, or `None` (with the reason printed) when neither works.
fn freeze_pack_folders(repo: &Repo) -> Option<Box<dyn Fn()>> {
    use std::os::unix::fs::PermissionsExt;
    let dirs: Vec<PathBuf> = std::fs::read_dir(repo.path.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    if super::harness::is_root() {
        let chattr = |flag: &str, dirs: &[PathBuf]| {
            std::process::Command::new("chattr")
                .arg(flag)
                .args(dirs)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !chattr("+i", &dirs) {
            chattr("-i", &dirs);
            eprintln!("skipped: chattr +i is not supported here");
            return None;
        }
        return Some(Box::new(move || {
            chattr("-i", &dirs);
        }));
    }
    for d in &dirs {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o500)).unwrap();
    }
    Some(Box::new(move || {
        for d in &dirs {
            let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700));
        }
    }))
}

#[test]
fn permission_error_reports_its_real_cause_and_leaves_no_temp_files() {
    let repo = Repo::new();
    let src = source(&repo, 2, 200 << 10);
    let Some(undo) = freeze_pack_folders(&repo) else {
        return;
    };
    let r = repo.run(&["backup", &src.to_string_lossy()]);
    undo();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let want = format!("permission denied writing to local:{}", repo.path.display());
    assert!(r.stderr.contains(&want), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(
        repo.files_in("tmp").is_empty(),
        "{:?}",
        repo.files_in("tmp")
    );
    repo.run(&["check"]).ok();
}

#[test]
fn check_reports_leftover_temporary_files() {
    let repo = Repo::new();
    std::fs::write(repo.path.join("tmp").join("abc.partial"), b"half a pack").unwrap();
    let r = repo.run(&["check"]).ok();
    assert!(
        r.stderr.contains("warning: tmp/abc.partial (11 bytes"),
        "{}",
        r.stderr
    );
}
