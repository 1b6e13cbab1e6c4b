//! Packs pending deletion (FORMAT §14, format 3) as every command sees them: a repository
//! whose packs a prune retired (set up through the library, as a prune that stopped before its
//! sweep leaves it) still checks clean and restores, backups store such blobs again instead
//! of reusing them and never adopt the retired packs, and a retired pack already deleted is
//! information, not damage.

use std::path::Path;

use cista::backend::FileType;
use cista::format::index::{IndexPack, ObsoletePack};
use cista::id::{Id, IndexId, PackId};

use crate::harness::{Repo, Run, num};

/// Retires every live pack: one index file names them obsolete and supersedes every index
/// file, which are then deleted (what a prune's first step leaves). Returns the packs.
fn retire_all(repo: &Repo) -> Vec<PackId> {
    let r = repo.open();
    let index = r.load_index_files().unwrap();
    let old: Vec<IndexId> = r
        .backend()
        .list(FileType::Index)
        .unwrap()
        .into_iter()
        .map(|(id, _)| IndexId(id))
        .collect();
    let mut w = r.index_writer();
    let mut retired = Vec::new();
    for batch in index.pack_batches(100_000) {
        for p in batch {
            retired.push(p.id);
            w.add_obsolete(ObsoletePack {
                id: p.id,
                marked_unix_ns: 1,
                armed: false,
                waiting_for: Vec::new(),
                blobs: p.entries,
            })
            .unwrap();
        }
    }
    w.finish(old.clone()).unwrap();
    for id in old {
        r.backend().delete(FileType::Index, &id.0).unwrap();
    }
    retired
}

/// Everything a run printed (check's findings go to stderr, its summary to stdout).
fn output(r: &Run) -> String {
    format!("{}{}", r.stdout_str(), r.stderr)
}

fn source(repo: &Repo) -> std::path::PathBuf {
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(
        src.join("a.txt"),
        b"kept while its pack waits for deletion\n".repeat(40),
    )
    .unwrap();
    std::fs::write(
        src.join("sub/b.bin"),
        crate::harness::Rng::new(8).bytes(50_000),
    )
    .unwrap();
    src
}

fn same_tree(a: &Path, b: &Path) {
    for f in ["a.txt", "sub/b.bin"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn snapshots_whose_packs_are_pending_deletion_check_clean_and_restore() {
    let repo = Repo::new();
    let src = source(&repo);
    repo.backup(&[&src]);
    let retired = retire_all(&repo);
    assert!(!retired.is_empty());

    let r = repo.run(&["check"]).ok();
    let out = output(&r);
    assert!(out.contains("only in packs pending deletion"), "{out}");
    assert!(
        !out.contains("not indexed"),
        "an obsolete pack is no orphan: {out}"
    );

    let target = repo.scratch("restored");
    repo.restore_latest(&target);
    same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn a_backup_stores_again_what_only_a_retired_pack_holds_and_adopts_none() {
    let repo = Repo::new();
    let src = source(&repo);
    let first = repo.backup(&[&src]);
    let retired = retire_all(&repo);

    let again = repo.backup(&[&src]);
    // Unchanged files are read again (their chunks are not live) and every blob stored anew.
    assert_eq!(num(&again, "data_blobs"), num(&first, "data_blobs"));
    assert!(num(&again, "data_added") > 0);
    let index = repo.open().load_index_files().unwrap();
    for p in &retired {
        assert!(
            index.is_obsolete(p),
            "pack {p} was adopted, undoing a prune"
        );
    }

    // The first snapshot may still have trees only in retired packs (its ancestor
    // directories' trees hold their metadata, and /tmp changes as other tests run). Once it
    // is forgotten, every remaining blob is live: no warning. A retired pack
    // deleted before its index entry is dropped is information, and reading goes on from
    // the live copy.
    let r_lib = repo.open();
    let first_id = Id::from_hex(first["snapshot_id"].as_str().unwrap()).unwrap();
    r_lib
        .backend()
        .delete(FileType::Snapshot, &first_id)
        .unwrap();
    let r = repo.run(&["check"]).ok();
    assert!(!output(&r).contains("pending deletion"), "{}", output(&r));
    r_lib
        .backend()
        .delete(FileType::Pack, &retired[0].0)
        .unwrap();
    let r = repo.run(&["check"]).ok();
    assert!(
        output(&r).contains("pending deletion and already deleted"),
        "{}",
        output(&r)
    );
    let target = repo.scratch("restored");
    repo.restore_latest(&target);
    same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn a_pack_live_in_one_file_and_obsolete_in_another_is_live() {
    let repo = Repo::new();
    let src = source(&repo);
    repo.backup(&[&src]);
    let r = repo.open();
    let index = r.load_index_files().unwrap();
    let packs: Vec<IndexPack> = index
        .pack_batches(100_000)
        .flatten()
        .map(|p| IndexPack {
            id: p.id,
            blobs: p.entries,
        })
        .collect();
    let mut w = r.index_writer();
    for p in &packs {
        w.add_obsolete(ObsoletePack {
            id: p.id,
            marked_unix_ns: 1,
            armed: true,
            waiting_for: Vec::new(),
            blobs: p.blobs.clone(),
        })
        .unwrap();
    }
    w.finish(Vec::new()).unwrap();
    let index = r.load_index_files().unwrap();
    assert!(packs.iter().all(|p| index.is_live(&p.id)));
    let r = repo.run(&["check"]).ok();
    assert!(!output(&r).contains("pending deletion"), "{}", output(&r));
}
