//! A second backup reuses its parent: unchanged files are not read or stored again, and the
//! counts in the `--json` summary say so in restic's field names.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cista::format::tree::NodeKind;
use cista::id::BlobId;
use cista::ops::find::{self, Located};

use super::fixture;
use super::harness::{Repo, Rng, num};

/// Modification and change times of every folder above `path`.
fn ancestor_times(path: &Path) -> Vec<(i64, i64, i64, i64)> {
    path.ancestors()
        .skip(1)
        .map(|a| {
            let m = std::fs::metadata(a).unwrap();
            (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
        })
        .collect()
}

/// The tree id of `dir` in the `nth` snapshot (oldest first).
fn src_subtree(repo: &Repo, dir: &Path, nth: usize) -> BlobId {
    let lib = repo.open();
    let index = lib.load_index().unwrap();
    let (id, snap) = lib.list_snapshots().unwrap().swap_remove(nth);
    match find::locate(&lib, &index, &snap.tree, dir, &id.to_string()).unwrap() {
        Located::Node(_, n) => match n.kind {
            NodeKind::Dir { subtree } => subtree,
            other => panic!("{} is {other:?}", dir.display()),
        },
        Located::Root(_) => panic!("{} is the root", dir.display()),
    }
}

#[test]
fn unchanged_then_one_changed_file() {
    // Away from /tmp, whose times other tests keep changing: the snapshot records them.
    let repo = Repo::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let src = repo.scratch("src");
    fixture::build_random(&src, 11, 300 << 10, 20 << 10);
    std::fs::write(src.join("notes.txt"), fixture::text(40 << 10)).unwrap();
    let files = 16;

    let ancestors_before = ancestor_times(&src);
    let first = repo.backup(&[&src]);
    for f in [
        "files_new",
        "files_changed",
        "files_unmodified",
        "data_added",
        "total_bytes_processed",
        "total_files_processed",
    ] {
        num(&first, f);
    }
    assert!(first["total_duration"].as_f64().is_some(), "{first}");
    assert_eq!(first["snapshot_id"].as_str().unwrap().len(), 64);
    assert_eq!(num(&first, "files_new"), files);
    assert_eq!(num(&first, "total_files_processed"), files);
    assert!(num(&first, "data_added") >= 300 << 10);

    let second = repo.backup(&[&src]);
    assert_eq!(num(&second, "files_unmodified"), files, "{second}");
    assert_eq!(num(&second, "files_new"), 0);
    assert_eq!(num(&second, "files_changed"), 0);
    // Like restic, the directories above the source path count too, and a directory is
    // unmodified only if its node (tree and metadata) equals the parent's.
    let above = src.ancestors().count() as u64 - 2;
    let (unmodified, changed) = (
        num(&second, "dirs_unmodified"),
        num(&second, "dirs_changed"),
    );
    assert_eq!(unmodified + changed, 5 + above, "{second}");
    if ancestor_times(&src) == ancestors_before {
        assert_eq!(changed, 0, "{second}");
    } else {
        assert!(changed <= above, "only ancestors changed: {second}");
    }
    if ancestor_times(&src) == ancestors_before {
        assert_eq!(num(&second, "data_added"), 0, "{second}");
        assert_eq!(num(&second, "data_added_packed"), 0, "{second}");
    } else {
        // Another process changed /tmp (say) meanwhile: the snapshot records the source's
        // ancestors, so their small trees are new; the source's own tree must not be.
        eprintln!("note: an ancestor of the source changed during the test");
        assert!(num(&second, "data_added") < 4096, "{second}");
    }
    assert_eq!(src_subtree(&repo, &src, 0), src_subtree(&repo, &src, 1));
    assert_eq!(
        num(&second, "total_bytes_processed"),
        num(&first, "total_bytes_processed")
    );

    let snaps = repo.snapshots(&[]);
    assert_eq!(snaps.len(), 2);
    assert!(snaps[0]["parent"].is_null());
    assert_eq!(snaps[1]["parent"], first["snapshot_id"]);
    assert_eq!(snaps[1]["id"], second["snapshot_id"]);

    // Change one file (new size, so no timestamp race), add one.
    std::fs::write(src.join("d1/f001"), Rng::new(99).bytes(21 << 10)).unwrap();
    std::fs::write(src.join("d2/new"), b"brand new").unwrap();
    let third = repo.backup(&[&src]);
    assert_eq!(num(&third, "files_changed"), 1, "{third}");
    assert_eq!(num(&third, "files_new"), 1, "{third}");
    assert_eq!(num(&third, "files_unmodified"), files - 1, "{third}");
    let added = num(&third, "data_added");
    assert!(
        added > 0 && added < 100 << 10,
        "only the changed chunks should be added, got {added}"
    );
    let snaps = repo.snapshots(&[]);
    assert_eq!(snaps[2]["parent"], second["snapshot_id"]);
    assert_ne!(src_subtree(&repo, &src, 1), src_subtree(&repo, &src, 2));

    // --force reads everything again but still stores nothing new.
    let r = repo
        .run(&[
            "backup".as_ref(),
            "--json".as_ref(),
            "--force".as_ref(),
            src.as_os_str(),
        ])
        .ok();
    let forced = super::harness::summary_of(&r);
    assert_eq!(num(&forced, "files_unmodified"), 0, "{forced}");
    assert_eq!(num(&forced, "data_added"), 0, "{forced}");

    // And the newest snapshot restores the changed content.
    let r = repo
        .run(&[
            "dump".as_ref(),
            "latest".as_ref(),
            src.join("d1/f001").as_os_str(),
        ])
        .ok();
    assert_eq!(r.stdout, Rng::new(99).bytes(21 << 10));
}

#[test]
fn identical_files_are_stored_once() {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = Rng::new(5).bytes(256 << 10);
    for i in 0..4 {
        std::fs::write(src.join(format!("copy{i}")), &data).unwrap();
    }
    let s = repo.backup(&[&src]);
    let added = num(&s, "data_added");
    assert!(
        added < (256 << 10) + (32 << 10),
        "four copies of 256 KiB added {added} bytes"
    );
    assert_eq!(num(&s, "total_bytes_processed"), 4 * (256 << 10));
}
