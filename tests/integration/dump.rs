//! `dump` of a directory or a whole snapshot as a tar or zip stream (restic's `dump`), of a
//! symlink (its target text), and what it refuses.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::harness::{Repo, Rng};

/// A tree with a nested directory, a multi-chunk file, an empty file, a symlink, a named pipe
/// and a setuid file.
fn tree(repo: &Repo) -> std::path::PathBuf {
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("d/sub")).unwrap();
    std::fs::write(src.join("d/big"), Rng::new(7).bytes(200_000)).unwrap();
    std::fs::write(src.join("d/empty"), b"").unwrap();
    std::fs::write(src.join("d/sub/deep"), b"deep\n").unwrap();
    std::os::unix::fs::symlink("../big", src.join("d/sub/link")).unwrap();
    nix::unistd::mkfifo(
        &src.join("d/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::write(src.join("d/suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("d/suid"), std::fs::Permissions::from_mode(0o4750)).unwrap();
    src
}

/// The archive name of a source path.
fn name(p: &Path) -> String {
    p.to_string_lossy().trim_start_matches('/').to_owned()
}

#[test]
fn dump_of_a_directory_is_a_tar_stream_by_default() {
    let repo = Repo::new();
    let src = tree(&repo);
    repo.backup(&[&src]);
    let dir = src.join("d");
    let r = repo
        .run(&["dump".as_ref(), "latest".as_ref(), dir.as_os_str()])
        .ok();
    let mut a = tar::Archive::new(&r.stdout[..]);
    let mut seen = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let h = e.header().clone();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        seen.insert(path, (h.entry_type(), h.mode().unwrap(), body, link));
    }
    let n = |rel: &str| name(&src.join(rel));
    let keys: Vec<&String> = seen.keys().collect();
    let mut want = [
        format!("{}/", n("d")),
        n("d/big"),
        n("d/empty"),
        n("d/fifo"),
        format!("{}/", n("d/sub")),
        n("d/sub/deep"),
        n("d/sub/link"),
        n("d/suid"),
    ];
    want.sort();
    assert_eq!(keys, want.iter().collect::<Vec<_>>());
    let big = &seen[&n("d/big")];
    assert!(big.0.is_file());
    assert_eq!(big.2, std::fs::read(src.join("d/big")).unwrap());
    assert_eq!(seen[&n("d/empty")].2, b"");
    assert!(seen[&n("d/fifo")].0.is_fifo());
    let link = &seen[&n("d/sub/link")];
    assert!(link.0.is_symlink());
    assert_eq!(link.3.as_deref(), Some("../big"));
    assert_eq!(seen[&n("d/suid")].1, 0o4750, "setuid bit kept");
    assert!(seen[&format!("{}/", n("d"))].0.is_dir());

    // `/`: the whole snapshot, with every ancestor directory.
    let r = repo.run(&["dump", "latest", "/"]).ok();
    let mut a = tar::Archive::new(&r.stdout[..]);
    let all: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    let top = src.iter().nth(1).unwrap().to_string_lossy().into_owned();
    assert_eq!(all[0], format!("{top}/"), "{all:?}");
    assert!(all.contains(&n("d/sub/deep")));
}

#[test]
fn dump_archive_zip() {
    let repo = Repo::new();
    let src = tree(&repo);
    std::fs::set_permissions(src.join("d/sub"), std::fs::Permissions::from_mode(0o1750)).unwrap();
    repo.backup(&[&src]);
    let dir = src.join("d");
    let r = repo
        .run(&[
            "dump".as_ref(),
            "--archive".as_ref(),
            "zip".as_ref(),
            "latest".as_ref(),
            dir.as_os_str(),
        ])
        .ok();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(r.stdout)).unwrap();
    let n = |rel: &str| name(&src.join(rel));
    let mut big = Vec::new();
    z.by_name(&n("d/big"))
        .unwrap()
        .read_to_end(&mut big)
        .unwrap();
    assert_eq!(big, std::fs::read(src.join("d/big")).unwrap());
    // The whole Unix mode, setuid bit included, is in the external attributes.
    assert_eq!(
        z.by_name(&n("d/suid")).unwrap().external_attributes() >> 16,
        0o104750
    );
    let link = z.by_name(&n("d/sub/link")).unwrap();
    assert!(link.is_symlink());
    drop(link);
    let sub = z.by_name(&format!("{}/", n("d/sub"))).unwrap();
    assert!(sub.is_dir());
    assert_eq!(sub.external_attributes() >> 16, 0o041750, "sticky bit kept");
    drop(sub);
    assert_eq!(z.len(), 8);
}

#[test]
fn dump_of_a_symlink_prints_its_target_and_a_fifo_is_refused() {
    let repo = Repo::new();
    let src = tree(&repo);
    repo.backup(&[&src]);
    let link = src.join("d/sub/link");
    let r = repo
        .run(&["dump".as_ref(), "latest".as_ref(), link.as_os_str()])
        .ok();
    assert_eq!(r.stdout, b"../big");
    let fifo = src.join("d/fifo");
    let r = repo
        .run(&["dump".as_ref(), "latest".as_ref(), fifo.as_os_str()])
        .expect_code(1);
    assert!(r.stderr.contains("named pipe"), "{}", r.stderr);
    // A file is still its bytes, whatever --archive says.
    let big = src.join("d/big");
    let r = repo
        .run(&[
            "dump".as_ref(),
            "-a".as_ref(),
            "zip".as_ref(),
            "latest".as_ref(),
            big.as_os_str(),
        ])
        .ok();
    assert_eq!(r.stdout, std::fs::read(&big).unwrap());
    // An archive into a closed pipe: quiet, 141.
    let r = super::cli::run_into_closed_pipe(
        &repo,
        &["dump".as_ref(), "latest".as_ref(), "/".as_ref()],
    );
    assert_eq!((r.code, r.stderr.as_str()), (Some(141), ""));
    repo.run(&["check"]).ok();
}

/// Stores `tree` as a tree blob and returns its id.
fn store_tree(
    lib: &cista::repo::Repository,
    packer: &cista::repo::packer::Packer,
    tree: &cista::format::tree::Tree,
) -> cista::id::BlobId {
    let plain = tree.encode();
    let id = lib.blob_id(&plain);
    let sealed = lib
        .seal_blob(cista::format::pack::BlobType::Tree, &id, &plain)
        .unwrap();
    packer
        .add(cista::repo::packer::SealedBlob {
            blob_type: cista::format::pack::BlobType::Tree,
            id,
            raw_len: plain.len() as u32,
            sealed,
        })
        .unwrap();
    id
}

/// Rewrites the trees from `root` down `path`, applying `f` to the node at its end; returns
/// the new root id.
fn rewrite(
    lib: &cista::repo::Repository,
    index: &cista::repo::Index,
    packer: &cista::repo::packer::Packer,
    root: &cista::id::BlobId,
    path: &[Vec<u8>],
    f: &dyn Fn(&mut cista::format::tree::Node),
) -> cista::id::BlobId {
    use cista::format::tree::NodeKind;
    let mut tree = lib.read_tree(index, root).unwrap();
    let node = tree.nodes.iter_mut().find(|n| n.name == path[0]).unwrap();
    if path.len() == 1 {
        f(node);
    } else {
        let NodeKind::Dir { subtree } = &node.kind else {
            panic!("not a directory")
        };
        let sub = rewrite(lib, index, packer, subtree, &path[1..], f);
        node.kind = NodeKind::Dir { subtree: sub };
    }
    store_tree(lib, packer, &tree)
}

/// A tree whose file node claims more bytes than its content holds would shift every later
/// tar header (a corrupt archive that looks fine to the pipe's reader): the dump stops with
/// one line saying the repository is damaged, and never panics.
#[test]
fn archive_refuses_a_file_whose_content_disagrees_with_its_size() {
    use std::os::unix::ffi::OsStrExt;
    let repo = Repo::new();
    let src = tree(&repo);
    repo.backup(&[&src]);
    let lib = repo.open();
    let index = lib.load_index().unwrap();
    let (_, mut snap) = lib.list_snapshots().unwrap().pop().unwrap();
    let packer = cista::repo::packer::Packer::new(&lib).unwrap();
    let comps: Vec<Vec<u8>> = src
        .join("d/big")
        .components()
        .skip(1)
        .map(|c| c.as_os_str().as_bytes().to_vec())
        .collect();
    snap.tree = rewrite(&lib, &index, &packer, &snap.tree, &comps, &|n| {
        if let cista::format::tree::NodeKind::File { size, .. } = &mut n.kind {
            *size += 1000;
        }
    });
    packer.finish().unwrap();
    // Later than the original, so `latest` is this one (equal times are ordered by id).
    snap.time_unix_ns += 1_000_000_000;
    lib.save_snapshot(&snap).unwrap();
    for archive in ["tar", "zip"] {
        let r = repo
            .run(&[
                "dump".as_ref(),
                "-a".as_ref(),
                archive.as_ref(),
                "latest".as_ref(),
                src.join("d").as_os_str(),
            ])
            .expect_code(1);
        assert!(r.stderr.contains("damaged"), "{archive}: {}", r.stderr);
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    }
}
