//! Local-only checks that follow the conformance suite: file layout, leftover temporary
//! files, permissions, opening a missing folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::LocalBackend;
use crate::backend::conformance::{kind_of, object};
use crate::backend::{Backend, ErrorKind, FileType};
use crate::id::Id;

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = LocalBackend::open(dir.path().join("repo")).expect("open");
    crate::backend::conformance::run_all(&b);
    assert_no_stray_files(&dir.path().join("repo"), &b);
}

/// Every file under `root` is `config` or an object at the path its type and id give, and
/// `tmp/` is empty: no write left a temporary file behind.
fn assert_no_stray_files(root: &Path, b: &dyn Backend) {
    let mut expected: BTreeSet<PathBuf> = BTreeSet::new();
    for t in FileType::ALL {
        for (id, _) in b.list(t).expect("list") {
            expected.insert(root.join(t.path(&id)));
        }
    }
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.insert(p);
            }
        }
    }
    assert_eq!(found, expected);
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp")).expect("tmp").collect();
    assert!(tmp.is_empty(), "tmp/ holds {tmp:?}");
}

/// A created local repository in a fresh temporary folder.
fn local_repo() -> (tempfile::TempDir, PathBuf, LocalBackend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    let b = LocalBackend::open(&root).expect("open");
    b.create().expect("create");
    (dir, root, b)
}

#[test]
fn local_packs_land_in_two_hex_digit_folders() {
    let (_dir, root, b) = local_repo();
    for seed in 0..20 {
        let (id, bytes) = object(seed, 10);
        b.write(FileType::Pack, &id, bytes.clone()).expect("write");
        let hex = id.to_hex();
        let file = root.join("data").join(&hex[..2]).join(&hex);
        assert_eq!(std::fs::read(&file).expect("pack file"), bytes);
    }
    let (id, bytes) = object(50, 10);
    b.write(FileType::Key, &id, bytes.clone()).expect("write");
    assert_eq!(
        std::fs::read(root.join("keys").join(id.to_hex())).expect("key"),
        bytes
    );
    b.write(FileType::Config, &id, b"cfg".to_vec())
        .expect("config");
    assert_eq!(std::fs::read(root.join("config")).expect("config"), b"cfg");
    assert_no_stray_files(&root, &b);
}

#[test]
fn local_list_ignores_foreign_names_and_tmp() {
    let (_dir, root, b) = local_repo();
    let (id, bytes) = object(1, 10);
    b.write(FileType::Pack, &id, bytes).expect("write");
    b.write(FileType::Key, &id, vec![1; 7]).expect("write");
    let (stray, _) = object(2, 1);
    let hex = stray.to_hex();
    let foreign = [
        "keys/README".to_owned(),
        format!("keys/{hex}.partial"),
        format!("keys/{}", &hex[..63]),
        format!("keys/{}", hex.to_uppercase().replace('A', "G")),
        // A hex name in the wrong place is not an object of any type.
        format!("tmp/{hex}"),
        format!("data/{hex}"),
        format!("data/zz/{hex}"),
        format!(
            "data/{}/{hex}",
            if hex.starts_with("00") { "01" } else { "00" }
        ),
        format!("index/sub/{hex}"),
        hex.clone(),
    ];
    for name in &foreign {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, b"junk").expect("write foreign");
    }
    assert_eq!(b.list(FileType::Pack).expect("list"), vec![(id, 10)]);
    assert_eq!(b.list(FileType::Key).expect("list"), vec![(id, 7)]);
    assert_eq!(b.list(FileType::Index).expect("list"), vec![]);
    assert_eq!(b.list(FileType::Config).expect("list"), vec![]);
}

#[test]
fn local_open_missing_folder_does_not_create_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("missing");
    let b = LocalBackend::open(&root).expect("open");
    assert!(!root.exists(), "opening created the folder");
    let (id, _) = object(1, 1);
    assert_eq!(kind_of(b.read(FileType::Config, &id)), ErrorKind::NotFound);
    assert_eq!(kind_of(b.size(FileType::Config, &id)), ErrorKind::NotFound);
    for t in FileType::ALL {
        assert_eq!(kind_of(b.list(t)), ErrorKind::NotFound, "list {t:?}");
    }
    assert_eq!(
        kind_of(b.write(FileType::Key, &id, vec![1])),
        ErrorKind::NotFound
    );
    assert_eq!(kind_of(b.delete(FileType::Key, &id)), ErrorKind::NotFound);
    assert!(!root.exists(), "a failed operation created the folder");

    // `create` is what makes it a repository.
    b.create().expect("create");
    b.write(FileType::Config, &id, b"cfg".to_vec())
        .expect("write config");
    assert_eq!(b.read(FileType::Config, &id).expect("read"), b"cfg");
}

#[test]
fn local_open_plain_folder_is_not_a_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
    let b = LocalBackend::open(dir.path()).expect("open");
    let (id, _) = object(1, 1);
    assert_eq!(kind_of(b.read(FileType::Config, &id)), ErrorKind::NotFound);
    assert!(!dir.path().join("tmp").exists(), "opening added tmp/");
}

#[test]
fn local_create_refuses_existing_config() {
    let (_dir, root, b) = local_repo();
    b.write(FileType::Config, &Id::default(), b"cfg".to_vec())
        .expect("config");
    assert_eq!(kind_of(b.create()), ErrorKind::AlreadyExists);
    let reopened = LocalBackend::open(&root).expect("reopen");
    assert_eq!(kind_of(reopened.create()), ErrorKind::AlreadyExists);
    assert_eq!(
        reopened
            .read(FileType::Config, &Id::default())
            .expect("read"),
        b"cfg"
    );
}

#[test]
fn local_objects_survive_reopening() {
    let (_dir, root, b) = local_repo();
    let (id, bytes) = object(3, 4096);
    b.write(FileType::Snapshot, &id, bytes.clone())
        .expect("write");
    drop(b);
    let reopened = LocalBackend::open(&root).expect("reopen");
    assert_eq!(reopened.read(FileType::Snapshot, &id).expect("read"), bytes);
    assert_eq!(
        reopened.list(FileType::Snapshot).expect("list"),
        vec![(id, 4096)]
    );
}

/// Regression: `create` on a backend opened before the folder existed left it writing objects
/// in place, not through `tmp/`, so a crash could leave a torn object under its final name.
#[test]
fn local_writes_after_create_go_through_tmp() {
    let (_dir, root, b) = local_repo();
    // With `tmp/` replaced by a file, a write through it must fail.
    std::fs::remove_dir(root.join("tmp")).expect("rmdir");
    std::fs::write(root.join("tmp"), b"").expect("file");
    let (id, bytes) = object(4, 10);
    assert!(b.write(FileType::Index, &id, bytes.clone()).is_err());
    assert!(!root.join(FileType::Index.path(&id)).exists());
    std::fs::remove_file(root.join("tmp")).expect("rm");
    std::fs::create_dir(root.join("tmp")).expect("mkdir");
    b.write(FileType::Index, &id, bytes).expect("write");
    assert_no_stray_files(&root, &b);
}

#[test]
fn local_read_only_repository_refuses_writes() {
    use std::os::unix::fs::PermissionsExt;
    if nix::unistd::geteuid().is_root() {
        // Root ignores permission bits: nothing to test.
        return;
    }
    let (_dir, root, b) = local_repo();
    let set = |mode: u32| {
        for d in ["", "tmp", "keys"] {
            std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
    };
    set(0o555);
    let (id, bytes) = object(5, 10);
    let err = b.write(FileType::Key, &id, bytes);
    set(0o755);
    let err = err.expect_err("write into a read-only folder");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert_eq!(kind_of(b.read(FileType::Key, &id)), ErrorKind::NotFound);
}
