//! Backup then restore (or dump) gives back exactly what was saved: content, types, modes,
//! times, owners, links, xattrs; and subfolder, single-file and filtered restores.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::fixture::{self, SPARSE_LEN, Tree, diff, os, restored_path};
use super::harness::{Repo, Rng, is_root, num};

/// A repository holding one snapshot of the every-kind tree.
fn backed_up() -> (Repo, Tree) {
    let repo = Repo::new();
    let tree = fixture::build_full(&repo.scratch("src"), 7);
    let s = repo.backup(&[&tree.root]);
    assert_eq!(num(&s, "errors"), 0, "{s}");
    (repo, tree)
}

fn restore(repo: &Repo, spec: &OsStr, target: &Path, extra: &[&str]) {
    let mut args: Vec<&OsStr> = vec!["restore".as_ref(), spec, "--target".as_ref(), os(target)];
    args.extend(extra.iter().map(OsStr::new));
    repo.run(&args).ok();
}

fn spec_for(path: &Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from("latest:");
    s.push(path);
    s
}

#[track_caller]
fn assert_same(src: &Path, dst: &Path, root_meta: bool, xattrs: bool) {
    let d = diff(src, dst, root_meta, xattrs);
    assert!(d.is_empty(), "restore differs:\n{}", d.join("\n"));
}

#[test]
fn full_tree_round_trip_is_identical() {
    let (repo, tree) = backed_up();
    let target = repo.scratch("restore");
    restore(&repo, "latest".as_ref(), &target, &[]);
    let out = restored_path(&target, &tree.root);
    assert_same(&tree.root, &out, true, tree.xattrs);
    // The same through O_DIRECT (where the scratch file system allows it; ordinary writes
    // where it does not), which large and odd-sized files take with --direct-io.
    let direct = repo.scratch("restore-direct");
    restore(&repo, "latest".as_ref(), &direct, &["--direct-io"]);
    let out_direct = restored_path(&direct, &tree.root);
    assert_same(&tree.root, &out_direct, true, tree.xattrs);
    let sparse = std::fs::metadata(out_direct.join("sparse")).unwrap();
    assert_eq!(sparse.len(), SPARSE_LEN);

    // Hardlinks come back as one inode.
    let (a, b) = (
        std::fs::metadata(out.join("hard/a")).unwrap(),
        std::fs::metadata(out.join("hard/b")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hardlink pair restored as two files");
    assert_eq!(a.nlink(), 2);

    // The hole stays a hole when the source file system made one.
    let src_sparse = std::fs::metadata(tree.root.join("sparse")).unwrap();
    let dst_sparse = std::fs::metadata(out.join("sparse")).unwrap();
    assert_eq!(dst_sparse.len(), SPARSE_LEN);
    if src_sparse.blocks() * 512 < SPARSE_LEN / 2 {
        assert!(
            dst_sparse.blocks() * 512 < SPARSE_LEN / 2,
            "sparse file restored with {} blocks allocated",
            dst_sparse.blocks()
        );
    }

    if tree.xattrs {
        assert_eq!(
            xattr::get(out.join("xattr/file"), "user.cista.test").unwrap(),
            Some(b"v\0\x01bin".to_vec())
        );
    }
    if is_root() {
        let m = std::fs::metadata(out.join("owned/file")).unwrap();
        assert_eq!((m.uid(), m.gid()), fixture::OWNED_UID_GID);
    }
    let m = std::fs::metadata(out.join("files/setuid")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4755);
    let m = std::fs::symlink_metadata(out.join("files/pre_epoch")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (-315_619_200, 5));
    assert!(out.join("special/fifo").exists());
    assert_eq!(
        std::fs::read_link(out.join("links/dangling")).unwrap(),
        Path::new("no/such/target")
    );
}

#[test]
fn restore_of_a_subfolder_puts_its_contents_into_the_target() {
    let (repo, tree) = backed_up();
    let target = repo.scratch("sub");
    restore(&repo, &spec_for(&tree.root.join("deep")), &target, &[]);
    assert!(target.join("d00").is_dir(), "subfolder not flattened");
    assert!(!target.join("deep").exists());
    assert_same(&tree.root.join("deep"), &target, false, tree.xattrs);

    let target = repo.scratch("names");
    restore(&repo, &spec_for(&tree.root.join("names")), &target, &[]);
    assert_same(&tree.root.join("names"), &target, false, tree.xattrs);
}

#[test]
fn restore_of_one_file() {
    let (repo, tree) = backed_up();
    for rel in ["files/random_200k", "names/line\nbreak", "files/setuid"] {
        let target = repo.scratch("one");
        let src = tree.root.join(rel);
        restore(&repo, &spec_for(&src), &target, &[]);
        let name = src.file_name().unwrap();
        let entries: Vec<_> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![name.to_os_string()]);
        assert_same(&src, &target.join(name), true, tree.xattrs);
        std::fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn restore_with_include_and_exclude_patterns() {
    let (repo, tree) = backed_up();
    let target = repo.scratch("inc");
    restore(&repo, "latest".as_ref(), &target, &["--include", "*.txt"]);
    let out = restored_path(&target, &tree.root);
    assert_eq!(
        std::fs::read(out.join(Tree::deep_leaf())).unwrap(),
        b"at the bottom\n"
    );
    assert!(out.join("files/text_200k.txt").is_file());
    assert!(
        !out.join("files/one").exists(),
        "--include restored too much"
    );
    assert!(!out.join("names").exists());
    assert!(!out.join("empty_dir").exists());

    let target = repo.scratch("exc");
    restore(
        &repo,
        "latest".as_ref(),
        &target,
        &["--exclude", "files", "--exclude", "*.txt"],
    );
    let out = restored_path(&target, &tree.root);
    assert!(!out.join("files").exists(), "--exclude kept a folder");
    assert!(!out.join(Tree::deep_leaf()).exists());
    assert!(out.join(Tree::deep_leaf()).parent().unwrap().is_dir());
    assert_same(
        &tree.root.join("names"),
        &out.join("names"),
        true,
        tree.xattrs,
    );
    assert_same(
        &tree.root.join("hard"),
        &out.join("hard"),
        true,
        tree.xattrs,
    );
}

#[test]
fn dump_prints_the_exact_bytes() {
    let (repo, tree) = backed_up();
    for rel in [
        "files/random_200k",
        "files/text_200k.txt",
        "files/empty",
        "files/max_plus_1",
        "sparse",
        "names/line\nbreak",
        "names/-leading-dash",
    ] {
        let src = tree.root.join(rel);
        let r = repo
            .run(&[OsStr::new("dump"), OsStr::new("latest"), os(&src)])
            .ok();
        assert_eq!(r.stdout, std::fs::read(&src).unwrap(), "dump of {rel}");
    }
    // A directory is a tar stream (restic's `dump`; tests/integration/dump.rs has the rest).
    let r = repo
        .run(&[OsStr::new("dump"), OsStr::new("latest"), os(&tree.root)])
        .ok();
    assert_eq!(&r.stdout[257..262], b"ustar", "not a tar stream");
}

#[test]
fn stdin_backup_dumps_identically() {
    let repo = Repo::new();
    let mut data = fixture::text(150 << 10);
    data.extend(Rng::new(3).bytes(300 << 10));
    let s = super::harness::summary_of(
        &repo
            .run_stdin(
                &["backup", "--json", "--stdin", "--stdin-filename", "db.sql"],
                &data,
            )
            .ok(),
    );
    assert_eq!(num(&s, "files_new"), 1);
    assert_eq!(num(&s, "total_bytes_processed"), data.len() as u64);
    let r = repo.run(&["dump", "latest", "/db.sql"]).ok();
    assert_eq!(r.stdout.len(), data.len());
    assert!(r.stdout == data, "dumped bytes differ from stdin");
    let snaps = repo.snapshots(&[]);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/db.sql"]));
    // A full restore puts it at the top of the target.
    let target = repo.scratch("t");
    restore(&repo, "latest".as_ref(), &target, &[]);
    assert!(std::fs::read(target.join("db.sql")).unwrap() == data);
}
