//! Damaged or tampered repositories: `check` reports the damage, reads fail loudly naming what
//! is affected, and wrong bytes are never handed out as a file's content. Nothing panics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cista::format::pack::{BlobType, PackEntry};
use cista::format::tree::NodeKind;
use cista::id::BlobId;
use cista::repo::BlobLocation;

use super::harness::{Repo, Rng};

/// Every data chunk of the latest snapshot, with the path of a file using it.
fn chunk_owners(repo: &Repo) -> (HashMap<BlobId, PathBuf>, cista::repo::Index) {
    let lib = repo.open();
    let index = lib.load_index().unwrap();
    let (_, snap) = lib.list_snapshots().unwrap().pop().unwrap();
    let mut owners = HashMap::new();
    cista::ops::find::walk(&lib, &index, &snap.tree, Path::new("/"), &mut |p, n| {
        if let NodeKind::File { content, .. } = &n.kind {
            for c in content {
                owners.entry(*c).or_insert_with(|| p.to_path_buf());
            }
        }
        Ok(true)
    })
    .unwrap();
    (owners, index)
}

fn pack_path(repo: &Repo, loc: &BlobLocation) -> PathBuf {
    let h = loc.pack.to_hex();
    repo.path.join("data").join(&h[..2]).join(&h)
}

fn a_chunk_of(repo: &Repo, file: &Path) -> BlobLocation {
    let (owners, index) = chunk_owners(repo);
    let id = owners
        .iter()
        .find(|(_, p)| p.as_path() == file)
        .map(|(id, _)| *id)
        .expect("file has chunks");
    index.get(&id).unwrap()
}

fn run_os(repo: &Repo, args: &[&dyn AsRef<std::ffi::OsStr>]) -> super::harness::Run {
    let v: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    repo.run(&v)
}

fn two_files(repo: &Repo, victim_len: usize) -> (PathBuf, PathBuf, PathBuf) {
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    let (victim, bystander) = (src.join("victim"), src.join("bystander"));
    std::fs::write(&victim, Rng::new(1).bytes(victim_len)).unwrap();
    std::fs::write(&bystander, Rng::new(2).bytes(victim_len)).unwrap();
    repo.backup(&[&src]);
    (src, victim, bystander)
}

#[test]
fn flipped_byte_in_a_pack_is_caught() {
    let repo = Repo::new();
    let (src, victim, bystander) = two_files(&repo, 60 << 10);
    let loc = a_chunk_of(&repo, &victim);
    let pack = pack_path(&repo, &loc);
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = (loc.entry.offset + loc.entry.length / 2) as usize;
    bytes[at] ^= 0x01;
    std::fs::write(&pack, &bytes).unwrap();

    let r = repo.run(&["check", "--read-data"]);
    assert_ne!(r.code, Some(0), "check --read-data missed a flipped byte");
    let short = &loc.pack.to_hex()[..8];
    assert!(
        r.stderr.contains(short),
        "pack {short} not named: {}",
        r.stderr
    );

    let target = repo.scratch("restore");
    let r = run_os(&repo, &[&"restore", &"latest", &"--target", &target]);
    assert_eq!(r.code, Some(3), "restore of damaged data: {}", r.stderr);
    assert!(r.stderr.contains("victim"), "file not named: {}", r.stderr);
    let out = super::fixture::restored_path(&target, &src);
    assert!(
        !out.join("victim").exists(),
        "a damaged file was left behind"
    );
    assert_eq!(
        std::fs::read(out.join("bystander")).unwrap(),
        std::fs::read(&bystander).unwrap()
    );

    let r = run_os(&repo, &[&"dump", &"latest", &victim]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stdout.len() < 60 << 10,
        "dump printed a whole file of wrong bytes"
    );

    // The damage is contained: other files still restore exactly.
    let r = run_os(&repo, &[&"dump", &"latest", &bystander]).ok();
    assert_eq!(r.stdout, std::fs::read(&bystander).unwrap());
    let target = repo.scratch("partial");
    run_os(
        &repo,
        &[
            &"restore",
            &"latest",
            &"--target",
            &target,
            &"--exclude",
            &"victim",
        ],
    )
    .ok();
    let out = super::fixture::restored_path(&target, &src);
    assert_eq!(
        std::fs::read(out.join("bystander")).unwrap(),
        std::fs::read(&bystander).unwrap()
    );
}

#[test]
fn swapped_blobs_of_equal_length_are_refused() {
    let repo = Repo::new();
    // Below the minimum chunk size and incompressible: one chunk each, sealed to equal lengths.
    let (_, a, b) = two_files(&repo, 1000);
    let (la, lb) = (a_chunk_of(&repo, &a), a_chunk_of(&repo, &b));
    assert_eq!(la.pack, lb.pack, "both chunks should share a pack");
    assert_eq!(la.entry.length, lb.entry.length);
    let pack = pack_path(&repo, &la);
    let mut bytes = std::fs::read(&pack).unwrap();
    let (oa, ob, n) = (
        la.entry.offset as usize,
        lb.entry.offset as usize,
        la.entry.length as usize,
    );
    let blob_a = bytes[oa..oa + n].to_vec();
    let blob_b = bytes[ob..ob + n].to_vec();
    bytes[oa..oa + n].copy_from_slice(&blob_b);
    bytes[ob..ob + n].copy_from_slice(&blob_a);
    std::fs::write(&pack, &bytes).unwrap();

    for (file, other) in [(&a, &b), (&b, &a)] {
        let r = run_os(&repo, &[&"dump", &"latest", file]);
        assert_ne!(r.code, Some(0), "dump of a swapped blob succeeded");
        assert_ne!(
            r.stdout,
            std::fs::read(other).unwrap(),
            "served the other file's bytes"
        );
        assert!(r.stdout.is_empty(), "dump printed unverified bytes");
    }
    let target = repo.scratch("restore");
    let r = run_os(&repo, &[&"restore", &"latest", &"--target", &target]);
    assert_eq!(
        r.code,
        Some(3),
        "both files fail, the restore goes to its end"
    );
    assert!(
        r.stderr.contains("victim") && r.stderr.contains("bystander"),
        "{}",
        r.stderr
    );
    assert_ne!(repo.run(&["check", "--read-data"]).code, Some(0));
}

#[test]
fn open_blob_checks_the_id_and_type_in_the_associated_data() {
    let repo = Repo::new();
    let lib = repo.open();
    let (a, b) = (Rng::new(10).bytes(500), Rng::new(11).bytes(500));
    let (ia, ib) = (lib.blob_id(&a), lib.blob_id(&b));
    let sealed_a = lib.seal_blob(BlobType::Data, &ia, &a).unwrap();
    let entry = |blob_type, id| PackEntry {
        blob_type,
        id,
        offset: 8,
        length: sealed_a.len() as u32,
        raw_len: 500,
    };
    assert_eq!(
        lib.open_blob(&entry(BlobType::Data, ia), &sealed_a)
            .unwrap(),
        a
    );
    let err = lib
        .open_blob(&entry(BlobType::Data, ib), &sealed_a)
        .unwrap_err();
    assert!(matches!(err, cista::Error::Corrupt { .. }), "{err}");
    assert!(
        lib.open_blob(&entry(BlobType::Tree, ia), &sealed_a)
            .is_err()
    );
    // A blob sealed under the id of other content does not verify either.
    let lying = lib.seal_blob(BlobType::Data, &ib, &a).unwrap();
    assert!(lib.open_blob(&entry(BlobType::Data, ib), &lying).is_err());
}

fn backed_up_small() -> Repo {
    let repo = Repo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), Rng::new(4).bytes(30 << 10)).unwrap();
    repo.backup(&[&src]);
    repo
}

#[test]
fn truncated_snapshot_is_reported_without_panicking() {
    let repo = backed_up_small();
    let snap = repo.files_in("snapshots").pop().unwrap();
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &bytes[..bytes.len() / 2]).unwrap();
    let name = snap.file_name().unwrap().to_string_lossy().into_owned();

    let r = repo.run(&["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&name[..8]),
        "snapshot not named: {}",
        r.stderr
    );
    // Like restic, `snapshots` lists what it can and warns about the damaged one.
    let r = repo.run(&["snapshots"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: skipping snapshot") && r.stderr.contains(&name[..8]),
        "{}",
        r.stderr
    );
    assert_ne!(
        repo.run(&["restore", "latest", "--target", "/nonexistent/x"])
            .code,
        Some(0)
    );
    // Empty is damaged too.
    std::fs::write(&snap, b"").unwrap();
    assert_eq!(repo.run(&["check"]).code, Some(1));
}

#[test]
fn garbage_index_is_reported_without_panicking() {
    let repo = backed_up_small();
    let fake = repo.path.join("index").join("ab".repeat(32));
    std::fs::write(&fake, Rng::new(9).bytes(333)).unwrap();
    let r = repo.run(&["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("index"), "{}", r.stderr);
    let target = repo.scratch("t");
    let r = repo.run(&[
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    // One damaged index file is skipped with a warning; the packs' headers say the rest.
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("index file abababab skipped"),
        "{}",
        r.stderr
    );

    // A real index whose bytes no longer match its name.
    std::fs::remove_file(&fake).unwrap();
    let real = repo.files_in("index").pop().unwrap();
    let mut bytes = std::fs::read(&real).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&real, &bytes).unwrap();
    let r = repo.run(&["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
}

#[test]
fn missing_or_truncated_pack_is_reported() {
    let repo = backed_up_small();
    let packs = repo.files_in("data");
    assert!(
        packs.len() >= 2,
        "expected a data and a tree pack: {packs:?}"
    );
    repo.run(&["check", "--read-data"]).ok();

    // Truncated: the header at the end is gone.
    let victim = &packs[0];
    let bytes = std::fs::read(victim).unwrap();
    std::fs::write(victim, &bytes[..bytes.len() - 10]).unwrap();
    let r = repo.run(&["check", "--read-data"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(r.stderr.contains(&name[..8]), "{}", r.stderr);

    // Missing: even the structural check sees it.
    std::fs::remove_file(victim).unwrap();
    let r = repo.run(&["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("missing"), "{}", r.stderr);
}
