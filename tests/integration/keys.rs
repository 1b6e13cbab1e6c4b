//! `key add|list|remove|passwd`: every passphrase opens the same repository, the key in use and
//! the last key cannot be removed, and a changed passphrase replaces the old one.

use std::path::Path;

use serde_json::Value;

use super::harness::{CHEAP_KDF, Repo, run_cmd};

fn with_password(repo: &Repo, pw: &str, args: &[&str]) -> super::harness::Run {
    let mut c = repo.cmd(args);
    c.env("CISTA_PASSWORD", pw);
    run_cmd(c, None)
}

fn with_new_password(repo: &Repo, pw: &str, new_file: &Path, args: &[&str]) -> super::harness::Run {
    let mut c = repo.cmd(args);
    c.env("CISTA_PASSWORD", pw)
        .env("CISTA_NEW_PASSWORD_FILE", new_file);
    run_cmd(c, None)
}

fn key_list(repo: &Repo, pw: &str) -> Vec<Value> {
    match with_password(repo, pw, &["key", "list", "--json"])
        .ok()
        .json()
    {
        Value::Array(v) => v,
        other => panic!("key list --json printed {other}"),
    }
}

fn id_where(keys: &[Value], current: bool) -> String {
    keys.iter()
        .find(|k| k["current"] == current)
        .and_then(|k| k["id"].as_str())
        .unwrap_or_else(|| panic!("no key with current={current} in {keys:?}"))
        .to_owned()
}

#[test]
fn add_list_remove_keys() {
    let repo = Repo::new();
    let old = repo.password.clone();
    let new_file = repo.scratch("new-pw");
    std::fs::write(&new_file, "second passphrase\n").unwrap();
    with_new_password(
        &repo,
        &old,
        &new_file,
        &["key", "add", "--kdf-params", CHEAP_KDF],
    )
    .ok();

    // Both passphrases open the repository.
    with_password(&repo, "second passphrase", &["snapshots"]).ok();
    with_password(&repo, &old, &["snapshots"]).ok();

    let keys = key_list(&repo, &old);
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        assert_eq!(k["id"].as_str().unwrap().len(), 64);
        assert!(k["hostName"].is_string());
        // restic's `TimeFormat` in local time, as `restic key list --json` prints it.
        let created = k["created"].as_str().unwrap();
        assert!(
            created.len() == 19 && created.as_bytes()[10] == b' ' && created.as_bytes()[4] == b'-',
            "{created}"
        );
    }
    assert_eq!(keys.iter().filter(|k| k["current"] == true).count(), 1);
    let (mine, other) = (id_where(&keys, true), id_where(&keys, false));
    // The new passphrase sees the other key as current.
    assert_eq!(id_where(&key_list(&repo, "second passphrase"), true), other);

    // The key in use cannot be removed, by full id or prefix.
    for id in [&mine[..], &mine[..10]] {
        let r = with_password(&repo, &old, &["key", "remove", id]).expect_code(1);
        assert!(r.stderr.contains("refusing"), "{}", r.stderr);
    }
    assert_eq!(key_list(&repo, &old).len(), 2);
    // An unknown id is an error, not a no-op.
    with_password(&repo, &old, &["key", "remove", "ffffffffff"]).expect_code(1);

    // Removing the other key works; its passphrase stops working.
    with_password(&repo, &old, &["key", "remove", &other[..12]]).ok();
    let keys = key_list(&repo, &old);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], mine);
    with_password(&repo, "second passphrase", &["snapshots"]).expect_code(12);

    // The last key cannot be removed.
    let r = with_password(&repo, &old, &["key", "remove", &mine]).expect_code(1);
    assert!(r.stderr.contains("refusing"), "{}", r.stderr);
    assert_eq!(repo.files_in("keys").len(), 1);
    with_password(&repo, &old, &["snapshots"]).ok();
}

#[test]
fn library_refuses_to_remove_the_last_key() {
    let repo = Repo::new();
    let r = repo.open();
    let err = cista::repo::keys::remove_key(r.backend(), &r.key_id()).unwrap_err();
    assert!(matches!(err, cista::Error::LastKey), "{err}");
    assert_eq!(repo.files_in("keys").len(), 1);
}

#[test]
fn passwd_replaces_the_passphrase() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"kept across passphrase changes").unwrap();
    repo.backup(&[&src]);

    let new_file = repo.scratch("new-pw");
    std::fs::write(&new_file, "brand new passphrase").unwrap();
    let old = repo.password.clone();
    with_new_password(
        &repo,
        &old,
        &new_file,
        &["key", "passwd", "--kdf-params", CHEAP_KDF],
    )
    .ok();
    let r = with_password(&repo, &old, &["snapshots"]).expect_code(12);
    assert!(r.stderr.contains("wrong password"), "{}", r.stderr);
    let r = with_password(
        &repo,
        "brand new passphrase",
        &["dump", "latest", &src.join("f").to_string_lossy()],
    )
    .ok();
    assert_eq!(r.stdout, b"kept across passphrase changes");
    assert_eq!(repo.files_in("keys").len(), 1);

    // An empty new passphrase file is refused and changes nothing.
    std::fs::write(&new_file, "\n").unwrap();
    with_new_password(&repo, "brand new passphrase", &new_file, &["key", "passwd"]).expect_code(1);
    with_password(&repo, "brand new passphrase", &["snapshots"]).ok();
}
