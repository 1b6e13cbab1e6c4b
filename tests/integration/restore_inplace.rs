//! Restore that keeps going and restore in place: a damaged chunk fails only its files, an
//! attribute the target refuses is a warning, and restoring onto an existing tree honours
//! `--overwrite` and `--delete`, never writes through a symlink of the target, and handles
//! type changes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cista::backend::FileType;
use cista::format::index::IndexPack;
use cista::format::pack::BlobType;
use cista::format::tree::{Node, NodeKind, Xattr};
use cista::id::BlobId;
use cista::repo::packer::{SealedBlob, assemble};
use filetime::FileTime;

use super::fixture::diff;
use super::harness::{Repo, Rng, Run, num};

/// `restore SPEC --target TARGET EXTRA...`.
fn restore(repo: &Repo, spec: &str, target: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "restore".as_ref(),
        spec.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    repo.run(&args)
}

/// `SNAPSHOT:SRC`, so the target's top level is `src`'s contents.
fn spec_of(snapshot: &str, src: &Path) -> String {
    format!("{snapshot}:{}", src.display())
}

fn set_mtime(path: &Path, secs: i64) {
    let t = FileTime::from_unix_time(secs, 0);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

fn mtime(path: &Path) -> i64 {
    std::fs::symlink_metadata(path).unwrap().mtime()
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

/// A source of several files (some of several chunks), a folder and a symlink, backed up.
fn backed_up(repo: &Repo) -> PathBuf {
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    for (i, name) in ["f1", "f2", "f3", "f4", "dir/g", "dir/sub/h"]
        .iter()
        .enumerate()
    {
        let p = src.join(name);
        std::fs::write(&p, Rng::new(i as u64 + 10).bytes(20_000 + i * 7000)).unwrap();
        set_mtime(&p, 1_600_000_000 + i as i64);
    }
    std::os::unix::fs::symlink("f1", src.join("link")).unwrap();
    repo.backup(&[&src]);
    src
}

/// A fresh restore of `src`'s snapshot into `target`, which must come out identical.
fn fresh_copy(repo: &Repo, src: &Path, target: &Path) {
    restore(repo, &spec_of("latest", src), target, &[]).ok();
    assert_eq!(diff(src, target, false, true), Vec::<String>::new());
}

// --- damage ---------------------------------------------------------------------------------

/// Flips a byte inside the first chunk of the snapshot file at `path`.
fn damage_first_chunk(repo: &Repo, path: &Path) {
    let lib = repo.open();
    let index = lib.load_index().unwrap();
    let (_, snap) = lib.list_snapshots().unwrap().pop().unwrap();
    let mut chunk = None;
    cista::ops::find::walk(&lib, &index, &snap.tree, Path::new("/"), &mut |p, n| {
        if p == path
            && let NodeKind::File { content, .. } = &n.kind
        {
            chunk = content.first().copied();
        }
        Ok(true)
    })
    .unwrap();
    let loc = index.get(&chunk.expect("file has a chunk")).unwrap();
    let h = loc.pack.to_hex();
    let pack = repo.path.join("data").join(&h[..2]).join(&h);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(loc.entry.offset + loc.entry.length / 2) as usize] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();
}

#[test]
fn a_damaged_chunk_fails_only_its_files_and_the_rest_is_restored() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    damage_first_chunk(&repo, &src.join("f2"));
    damage_first_chunk(&repo, &src.join("dir/g"));

    let target = repo.scratch("target");
    let r = restore(&repo, &spec_of("latest", &src), &target, &[]).expect_code(3);
    for bad in ["f2", "dir/g"] {
        let p = target.join(bad);
        assert!(
            r.stderr.contains(&p.display().to_string()),
            "{bad} not named: {}",
            r.stderr
        );
        assert!(!p.exists(), "{bad}: a damaged file was left in the target");
    }
    assert!(
        r.stderr.contains("2 files could not be restored"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("docs/CLI.md"), "{}", r.stderr);
    assert!(r.stderr.contains("cista check --read-data"), "{}", r.stderr);
    for good in ["f1", "f3", "f4", "dir/sub/h"] {
        assert_eq!(
            std::fs::read(target.join(good)).unwrap(),
            std::fs::read(src.join(good)).unwrap(),
            "{good}"
        );
        assert_eq!(mtime(&target.join(good)), mtime(&src.join(good)), "{good}");
    }
    assert_eq!(
        std::fs::read_link(target.join("link")).unwrap(),
        Path::new("f1")
    );

    // JSON: one error line per file, restic's shape, and the count in the summary.
    let json_target = repo.scratch("json");
    let r = repo.run(&[
        "--json".as_ref(),
        "restore".as_ref(),
        spec_of("latest", &src).as_ref(),
        "--target".as_ref(),
        json_target.as_os_str(),
    ]);
    let r = r.expect_code(3);
    let lines = r.json_lines();
    // As restic's JSON printer does, errors go to standard error, the summary to standard
    // output.
    let error_lines: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let errors: Vec<_> = error_lines
        .iter()
        .filter(|l| l["message_type"] == "error")
        .collect();
    assert_eq!(errors.len(), 2, "{lines:?}");
    assert!(errors.iter().all(|e| e["during"] == "restore"
        && e["error"]["message"].is_string()
        && e["item"].is_string()));
    let summary = lines.last().unwrap();
    assert_eq!(num(summary, "errors"), 2, "{summary}");
    assert_eq!(num(summary, "files_restored"), 4, "{summary}");
}

#[test]
fn a_damaged_chunk_leaves_the_existing_file_in_place_untouched() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    let target = repo.scratch("target");
    fresh_copy(&repo, &src, &target);
    std::fs::write(target.join("f2"), b"the live version").unwrap();
    damage_first_chunk(&repo, &src.join("f2"));
    let r = restore(&repo, &spec_of("latest", &src), &target, &[]).expect_code(3);
    assert!(r.stderr.contains("f2"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(target.join("f2")).unwrap(),
        b"the live version",
        "a file that could not be restored lost its old content"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(b".cista-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file left: {leftovers:?}");
}

// --- metadata -------------------------------------------------------------------------------

/// Seals a tree into `blobs`; returns its id.
fn seal_tree(
    lib: &cista::repo::Repository,
    nodes: Vec<Node>,
    blobs: &mut Vec<SealedBlob>,
) -> BlobId {
    let bytes = cista::format::tree::Tree { nodes }.encode();
    let id = lib.blob_id(&bytes);
    let sealed = lib.seal_blob(BlobType::Tree, &id, &bytes).unwrap();
    blobs.push(SealedBlob {
        blob_type: BlobType::Tree,
        id,
        raw_len: bytes.len() as u32,
        sealed,
    });
    id
}

fn rewrite(
    lib: &cista::repo::Repository,
    index: &cista::repo::Index,
    tree: &BlobId,
    path: &[Vec<u8>],
    edit: &dyn Fn(&mut Node),
    blobs: &mut Vec<SealedBlob>,
) -> BlobId {
    let mut t = lib.read_tree(index, tree).unwrap();
    let n = t.nodes.iter_mut().find(|n| n.name == path[0]).unwrap();
    if path.len() == 1 {
        edit(n);
    } else if let NodeKind::Dir { subtree } = &mut n.kind {
        *subtree = rewrite(lib, index, subtree, &path[1..], edit, blobs);
    } else {
        panic!("not a directory");
    }
    seal_tree(lib, t.nodes, blobs)
}

/// Writes a copy of the latest snapshot in which `edit` was applied to the node at the
/// absolute `path`; returns the new snapshot's id. (For metadata a backup cannot produce
/// here.)
fn edited_snapshot(repo: &Repo, path: &Path, edit: &dyn Fn(&mut Node)) -> String {
    let lib = repo.open();
    let index = lib.load_index().unwrap();
    let (_, mut snap) = lib.list_snapshots().unwrap().pop().unwrap();
    let comps: Vec<Vec<u8>> = path
        .components()
        .skip(1)
        .map(|c| c.as_os_str().as_bytes().to_vec())
        .collect();
    let mut blobs = Vec::new();
    snap.tree = rewrite(&lib, &index, &snap.tree, &comps, edit, &mut blobs);
    let p = assemble(&lib, blobs).unwrap();
    lib.backend()
        .write_parts(FileType::Pack, &p.id.0, p.parts)
        .unwrap();
    lib.save_index(vec![IndexPack {
        id: p.id,
        blobs: p.entries,
    }])
    .unwrap();
    lib.save_snapshot(&snap).unwrap().to_hex()
}

#[test]
fn an_xattr_the_target_refuses_is_a_warning_and_all_metadata_is_still_applied() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    for (p, mode) in [
        ("f1", 0o640),
        ("f3", 0o604),
        ("dir", 0o750),
        ("dir/g", 0o400),
    ] {
        std::fs::set_permissions(
            src.join(p),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
    }
    set_mtime(&src.join("dir"), 1_500_000_000);
    repo.backup(&[&src]);
    // No Linux file system knows the `bogus.` namespace: setting it fails with EOPNOTSUPP
    // everywhere, as `trusted.*` does for a non-root user.
    let id = edited_snapshot(&repo, &src.join("f1"), &|n| {
        n.xattrs = vec![Xattr {
            name: b"bogus.attribute".to_vec(),
            value: b"v".to_vec(),
        }];
    });
    let target = repo.scratch("target");
    let r = restore(&repo, &spec_of(&id[..12], &src), &target, &[]).ok();
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains("bogus.attribute"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&target.join("f1").display().to_string()));
    assert_eq!(diff(&src, &target, false, true), Vec::<String>::new());
}

/// The issue's own case: a `trusted.*` attribute, which only root may set, restored by an
/// unprivileged user (run as `nobody` through `setpriv`).
#[test]
fn regression_a_trusted_xattr_as_non_root_stopped_the_restore() {
    const NOBODY: u32 = 65534;
    let setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !super::harness::is_root() || !setpriv {
        eprintln!("note: skipped: needs root and setpriv to restore as an unprivileged user");
        return;
    }
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for (name, mode) in [("a", 0o640), ("b", 0o604), ("sub/c", 0o400)] {
        std::fs::write(src.join(name), name.as_bytes()).unwrap();
        std::fs::set_permissions(
            src.join(name),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
    }
    if xattr::set(src.join("a"), "trusted.cista-test", b"t").is_err() {
        eprintln!("note: skipped: this file system does not store trusted.* attributes");
        return;
    }
    let user_xattrs = xattr::set(src.join("b"), "user.kept", b"u").is_ok();
    for p in ["a", "b", "sub/c", "sub", ""] {
        let p = src.join(p);
        std::os::unix::fs::lchown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
        set_mtime(&p, 1_600_000_000);
    }
    repo.backup(&[&src]);
    // Hand the repository and the scratch folder to nobody.
    let chown_all = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(repo.dir.path())
        .status()
        .unwrap();
    assert!(chown_all.success());

    let target = repo.scratch("target");
    let mut c = super::harness::hermetic("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(super::harness::BIN)
        .arg("restore")
        .arg(spec_of("latest", &src))
        .arg("--target")
        .arg(&target)
        .env("CISTA_REPOSITORY", &repo.path)
        .env("CISTA_PASSWORD", &repo.password);
    let r = super::harness::run_cmd(c, None).ok();
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains("trusted.cista-test"),
        "{}",
        r.stderr
    );
    assert_eq!(
        diff(&src, &target, false, user_xattrs),
        Vec::<String>::new(),
        "metadata missing after the refused attribute"
    );
}

// --- in place -------------------------------------------------------------------------------

#[test]
fn restore_onto_an_existing_tree_keeps_what_the_snapshot_lacks_without_delete() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    let target = repo.scratch("target");
    std::fs::create_dir_all(target.join("dir")).unwrap();
    std::fs::write(target.join("keep-me"), b"old").unwrap();
    std::fs::write(target.join("dir/mine"), b"old").unwrap();
    std::fs::write(target.join("f1"), b"stale").unwrap();
    restore(&repo, &spec_of("latest", &src), &target, &[]).ok();
    assert_eq!(std::fs::read(target.join("keep-me")).unwrap(), b"old");
    assert_eq!(std::fs::read(target.join("dir/mine")).unwrap(), b"old");
    assert_eq!(
        std::fs::read(target.join("f1")).unwrap(),
        std::fs::read(src.join("f1")).unwrap()
    );
}

/// Restores with `mode` onto a fresh copy whose files were changed so that each mode decides
/// differently; returns which of f1..f4 now hold the snapshot's content.
fn after_overwrite(repo: &Repo, src: &Path, mode: &str) -> [bool; 4] {
    let target = repo.scratch(&format!("t-{mode}"));
    fresh_copy(repo, src, &target);
    // f1: other bytes, same size, same mtime as the snapshot (only a content check sees it).
    let f1 = target.join("f1");
    let len = std::fs::metadata(&f1).unwrap().len() as usize;
    let m1 = mtime(&f1);
    std::fs::write(&f1, vec![7u8; len]).unwrap();
    set_mtime(&f1, m1);
    // f2: changed, and newer than the snapshot.
    std::fs::write(target.join("f2"), b"edited after the backup").unwrap();
    set_mtime(&target.join("f2"), 1_900_000_000);
    // f3: changed, and older than the snapshot.
    std::fs::write(target.join("f3"), b"an old version").unwrap();
    set_mtime(&target.join("f3"), 1_000_000_000);
    // f4: missing.
    std::fs::remove_file(target.join("f4")).unwrap();
    let unchanged_inode = inode(&target.join("dir/g"));
    let r = restore(
        repo,
        &spec_of("latest", src),
        &target,
        &["--overwrite", mode],
    )
    .ok();
    if mode == "always" || mode == "if-changed" {
        assert_eq!(
            inode(&target.join("dir/g")),
            unchanged_inode,
            "{mode}: a file that already matched was rewritten"
        );
        assert!(r.stdout_str().contains(" unchanged"), "{}", r.stdout_str());
    }
    let same =
        |n: &str| std::fs::read(target.join(n)).unwrap() == std::fs::read(src.join(n)).unwrap();
    [same("f1"), same("f2"), same("f3"), same("f4")]
}

#[test]
fn each_overwrite_mode_means_what_it_means_in_restic() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    assert_eq!(after_overwrite(&repo, &src, "always"), [true; 4]);
    // Size and mtime match for f1: taken as up to date without reading it.
    assert_eq!(
        after_overwrite(&repo, &src, "if-changed"),
        [false, true, true, true]
    );
    // Only f3 is older than the snapshot; f4 is missing and always restored.
    assert_eq!(
        after_overwrite(&repo, &src, "if-newer"),
        [false, false, true, true]
    );
    assert_eq!(
        after_overwrite(&repo, &src, "never"),
        [false, false, false, true]
    );
    // The default is `always`.
    let target = repo.scratch("t-default");
    fresh_copy(&repo, &src, &target);
    std::fs::write(target.join("f2"), b"x").unwrap();
    set_mtime(&target.join("f2"), 1_900_000_000);
    restore(&repo, &spec_of("latest", &src), &target, &[]).ok();
    assert_eq!(diff(&src, &target, false, true), Vec::<String>::new());
}

#[test]
fn delete_removes_only_what_the_snapshot_lacks_inside_the_restored_subtree() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    // A full-path restore, limited to `dir/sub` with --include: only `dir/sub` is covered.
    let target = repo.scratch("target");
    let full = target.join(src.strip_prefix("/").unwrap());
    std::fs::create_dir_all(full.join("dir/sub/extra-dir/deeper")).unwrap();
    std::fs::write(full.join("dir/sub/extra-dir/deeper/x"), b"x").unwrap();
    std::fs::write(full.join("dir/sub/extra-file"), b"x").unwrap();
    std::fs::write(full.join("dir/sub/notes.keep"), b"x").unwrap();
    std::fs::write(full.join("dir/sibling"), b"x").unwrap();
    std::fs::write(target.join("top"), b"x").unwrap();
    let include = src.join("dir/sub").display().to_string();
    let r = restore(
        &repo,
        "latest",
        &target,
        &["--include", &include, "--exclude", "*.keep", "--delete"],
    )
    .ok();
    assert!(!full.join("dir/sub/extra-dir").exists(), "{}", r.stderr);
    assert!(!full.join("dir/sub/extra-file").exists());
    assert!(
        full.join("dir/sub/notes.keep").exists(),
        "an excluded name was deleted"
    );
    assert!(
        full.join("dir/sibling").exists(),
        "deleted outside the subtree"
    );
    assert!(target.join("top").exists(), "deleted outside the subtree");
    assert_eq!(
        std::fs::read(full.join("dir/sub/h")).unwrap(),
        std::fs::read(src.join("dir/sub/h")).unwrap()
    );

    // A subfolder restore with --delete makes the target exactly the snapshot's folder.
    let t2 = repo.scratch("t2");
    fresh_copy(&repo, &src, &t2);
    std::fs::write(t2.join("new"), b"x").unwrap();
    std::fs::create_dir(t2.join("newdir")).unwrap();
    restore(&repo, &spec_of("latest", &src), &t2, &["--delete"]).ok();
    assert_eq!(diff(&src, &t2, false, true), Vec::<String>::new());
}

#[test]
fn a_symlink_in_the_target_is_replaced_never_written_through() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    let outside = repo.scratch("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("g"), b"outside, must survive").unwrap();
    std::fs::write(outside.join("f1"), b"outside f1").unwrap();
    let target = repo.scratch("target");
    std::fs::create_dir(&target).unwrap();
    // A symlink where the snapshot has the directory `dir`, one where it has the file `f1`.
    std::os::unix::fs::symlink(&outside, target.join("dir")).unwrap();
    std::os::unix::fs::symlink(outside.join("f1"), target.join("f1")).unwrap();

    // `never` leaves the links, and nothing is written below them.
    restore(
        &repo,
        &spec_of("latest", &src),
        &target,
        &["--overwrite", "never"],
    )
    .ok();
    assert!(
        std::fs::symlink_metadata(target.join("dir"))
            .unwrap()
            .is_symlink()
    );
    let names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 2, "restore wrote through a symlink: {names:?}");

    for mode in ["if-changed", "always"] {
        restore(
            &repo,
            &spec_of("latest", &src),
            &target,
            &["--overwrite", mode],
        )
        .ok();
        assert_eq!(
            diff(&src, &target, false, true),
            Vec::<String>::new(),
            "{mode}"
        );
        assert!(
            std::fs::symlink_metadata(target.join("dir"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(
            std::fs::read(outside.join("g")).unwrap(),
            b"outside, must survive"
        );
        assert_eq!(std::fs::read(outside.join("f1")).unwrap(), b"outside f1");
        assert!(
            !outside.join("sub").exists(),
            "restore wrote through a symlink"
        );
    }

    // A symlinked parent further down: `dir/sub -> outside`.
    std::fs::remove_dir_all(target.join("dir/sub")).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("dir/sub")).unwrap();
    restore(&repo, &spec_of("latest", &src), &target, &[]).ok();
    assert_eq!(diff(&src, &target, false, true), Vec::<String>::new());
    assert!(
        !outside.join("h").exists(),
        "restore wrote through a symlinked parent"
    );
}

#[test]
fn a_type_change_in_the_target_is_restored() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    let target = repo.scratch("target");
    fresh_copy(&repo, &src, &target);
    // A file where the directory `dir` was; an empty directory where `f1` was.
    std::fs::remove_dir_all(target.join("dir")).unwrap();
    std::fs::write(target.join("dir"), b"file now").unwrap();
    std::fs::remove_file(target.join("f1")).unwrap();
    std::fs::create_dir(target.join("f1")).unwrap();
    // A non-empty directory where `f2` was: needs --delete.
    std::fs::remove_file(target.join("f2")).unwrap();
    std::fs::create_dir(target.join("f2")).unwrap();
    std::fs::write(target.join("f2/inside"), b"x").unwrap();
    // A file where the symlink was.
    std::fs::remove_file(target.join("link")).unwrap();
    std::fs::write(target.join("link"), b"not a link").unwrap();

    let r = restore(&repo, &spec_of("latest", &src), &target, &[]).expect_code(3);
    assert!(r.stderr.contains("--delete"), "{}", r.stderr);
    assert!(
        r.stderr.contains("1 file could not be restored"),
        "{}",
        r.stderr
    );
    assert!(target.join("f2/inside").exists());
    assert!(
        std::fs::symlink_metadata(target.join("dir"))
            .unwrap()
            .is_dir()
    );
    assert!(
        std::fs::symlink_metadata(target.join("f1"))
            .unwrap()
            .is_file()
    );

    restore(&repo, &spec_of("latest", &src), &target, &["--delete"]).ok();
    assert_eq!(diff(&src, &target, false, true), Vec::<String>::new());
}

#[test]
fn dry_run_changes_nothing_and_counts_what_would_be_done() {
    let repo = Repo::new();
    let src = backed_up(&repo);
    let target = repo.scratch("target");
    fresh_copy(&repo, &src, &target);
    std::fs::write(target.join("f2"), b"edited").unwrap();
    std::fs::remove_file(target.join("f4")).unwrap();
    std::fs::write(target.join("extra"), b"x").unwrap();
    let outside = repo.scratch("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::remove_dir_all(target.join("dir")).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("dir")).unwrap();
    let before = super::fixture::diff(&src, &target, false, true);

    let r = repo
        .run(&[
            "--json".as_ref(),
            "restore".as_ref(),
            spec_of("latest", &src).as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
            "--delete".as_ref(),
            "--dry-run".as_ref(),
        ])
        .ok();
    let s = r.json_lines().pop().unwrap();
    assert_eq!(s["dry_run"], true, "{s}");
    // f2 and f4, and below the symlink that would become a directory: g and h.
    assert_eq!(num(&s, "files_restored"), 4, "{s}");
    assert_eq!(num(&s, "files_skipped"), 2, "f1 and f3 already match: {s}");
    assert_eq!(num(&s, "files_deleted"), 1, "{s}");
    assert_eq!(
        super::fixture::diff(&src, &target, false, true),
        before,
        "a dry run changed the target"
    );
    assert!(target.join("extra").exists());
    assert!(
        std::fs::symlink_metadata(target.join("dir"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    // A dry run into a new folder creates nothing.
    let new = repo.scratch("new");
    restore(&repo, &spec_of("latest", &src), &new, &["--dry-run"]).ok();
    assert!(!new.exists());
}
