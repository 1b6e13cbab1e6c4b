//! A synthetic repository generator (not a CLI command): writes a VALID repository of N
//! tiny, distinct data blobs quickly, for the memory benchmark (`benches/memory.sh`,
//! docs/DESIGN.md "Index").
//!
//! The shape: blob `i` holds the 8 bytes of `i` (little endian) after a per-run tag, sealed
//! and stored in real packs (1 MiB pack target, about 21,000 blobs each) written by the
//! library's own packer, which also writes the index files. One snapshot references every
//! blob: files of `--chunks-per-file` chunks (default 4096) in directories of 32 files (4 MiB trees, under the 8 MiB part budget), under
//! one root. `cista check` passes on the result and `cista restore` restores it.
//!
//! ```text
//! cargo bench --bench synth -- --repo /var/tmp/synth-1m --blobs 1000000 --password pw
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cista::backend::Backend;
use cista::backend::local::LocalBackend;
use cista::format::key::KdfParams;
use cista::format::pack::BlobType;
use cista::format::snapshot::{Snapshot, Summary};
use cista::format::tree::{Node, NodeKind, Tree};
use cista::id::BlobId;
use cista::repo::packer::{Packer, SealedBlob};
use cista::repo::{InitOptions, Repository};
use rayon::prelude::*;

/// Files per directory tree.
const FILES_PER_DIR: usize = 32;

struct Args {
    repo: PathBuf,
    blobs: u64,
    chunks_per_file: u64,
    password: String,
}

/// The arguments, or `None` when no repository was named (as when `cargo test --all-targets`
/// or a plain `cargo bench` runs every bench target without arguments).
fn parse() -> Option<Args> {
    let mut a = Args {
        repo: PathBuf::new(),
        blobs: 0,
        chunks_per_file: 4096,
        password: "synth".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--repo" => a.repo = it.next().expect("--repo DIR").into(),
            "--blobs" => a.blobs = it.next().expect("--blobs N").parse().expect("a number"),
            "--chunks-per-file" => {
                a.chunks_per_file = it.next().expect("N").parse().expect("a number")
            }
            "--password" => a.password = it.next().expect("--password PW"),
            // cargo bench passes --bench.
            "--bench" => {}
            other => panic!("unknown argument {other:?}"),
        }
    }
    if a.repo.as_os_str().is_empty() || a.blobs == 0 {
        return None;
    }
    Some(a)
}

fn content(i: u64) -> Vec<u8> {
    let mut v = b"synth:".to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v
}

fn node(name: String, kind: NodeKind, mode: u32) -> Node {
    Node {
        name: name.into_bytes(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime_ns: 1_780_000_000_000_000_000,
        atime_ns: 1_780_000_000_000_000_000,
        ctime_ns: 1_780_000_000_000_000_000,
        inode: 0,
        device: 0,
        links: 1,
        xattrs: Vec::new(),
    }
}

fn store(repo: &Repository, packer: &Packer, t: BlobType, data: &[u8]) -> BlobId {
    let id = repo.blob_id(data);
    let sealed = repo.seal_blob(t, &id, data).unwrap();
    packer
        .add(SealedBlob {
            blob_type: t,
            id,
            raw_len: data.len() as u32,
            sealed,
        })
        .unwrap();
    id
}

fn main() {
    let Some(a) = parse() else {
        println!("usage: synth --repo DIR --blobs N [--chunks-per-file K] [--password PW]");
        return;
    };
    let started = Instant::now();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::open(&a.repo).unwrap());
    let opts = InitOptions {
        kdf: KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        },
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    let repo = Repository::init(backend, a.password.as_bytes(), &opts).unwrap();
    let packer = Packer::new(&repo).unwrap();

    // Files of consecutive chunks; each file's chunks are stored and listed in parallel.
    let files: Vec<(u64, u64)> = (0..a.blobs)
        .step_by(a.chunks_per_file as usize)
        .map(|s| (s, (s + a.chunks_per_file).min(a.blobs)))
        .collect();
    let file_nodes: Vec<Node> = files
        .par_iter()
        .enumerate()
        .map(|(n, (s, e))| {
            let ids: Vec<BlobId> = (*s..*e)
                .map(|i| store(&repo, &packer, BlobType::Data, &content(i)))
                .collect();
            let size = ids.len() as u64 * content(0).len() as u64;
            let kind = NodeKind::File { size, content: ids };
            node(format!("file{n:07}"), kind, 0o100644)
        })
        .collect();
    let dirs: Vec<Node> = file_nodes
        .chunks(FILES_PER_DIR)
        .enumerate()
        .map(|(n, nodes)| {
            let tree = Tree {
                nodes: nodes.to_vec(),
            }
            .encode();
            let subtree = store(&repo, &packer, BlobType::Tree, &tree);
            node(format!("dir{n:05}"), NodeKind::Dir { subtree }, 0o040755)
        })
        .collect();
    let root = Tree { nodes: dirs }.encode();
    let root = store(&repo, &packer, BlobType::Tree, &root);
    let packs = packer.finish().unwrap();

    let snap = Snapshot {
        time_unix_ns: 1_780_000_000_000_000_000,
        tz_offset_s: 0,
        hostname: "synth".into(),
        username: "synth".into(),
        uid: 0,
        gid: 0,
        paths: vec!["/synth".into()],
        tags: Vec::new(),
        tree: root,
        parent: None,
        program_version: "cista synth".into(),
        incomplete: false,
        summary: Summary {
            data_blobs: a.blobs,
            total_files_processed: files.len() as u64,
            ..Summary::default()
        },
        original: None,
        lost: None,
    };
    let sid = repo.save_snapshot(&snap).unwrap();
    println!(
        "synth: {} data blobs, {} files, {} packs, snapshot {sid}, in {:.1} s",
        a.blobs,
        files.len(),
        packs.len(),
        started.elapsed().as_secs_f64()
    );
}
