//! The in-memory index's lookups as a backup makes them (docs/DESIGN.md, "Index"): the
//! dedup test `contains` for ids that are stored (an unchanged file's chunks) and ids that
//! are not (new data), and `get` as restore uses it, on an index of one million blobs loaded
//! from real index files. Uses only API that predates the compact index, so the same file
//! measures both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use cista::backend::Backend;
use cista::backend::opendal::OpendalBackend;
use cista::format::index::IndexPack;
use cista::format::key::KdfParams;
use cista::format::pack::{BlobType, PackEntry};
use cista::id::{BlobId, Id, PackId};
use cista::repo::{InitOptions, Repository};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BLOBS: u64 = 1_000_000;
const PER_PACK: u64 = 10_000;
const LOOKUPS: u64 = 100_000;

fn id(n: u64) -> [u8; 32] {
    *blake3::hash(&n.to_le_bytes()).as_bytes()
}

fn loaded() -> (Repository, cista::repo::Index) {
    let backend: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
    let opts = InitOptions {
        kdf: KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        },
        ..InitOptions::default()
    };
    let repo = Repository::init(backend, b"bench", &opts).unwrap();
    let packs: Vec<IndexPack> = (0..BLOBS / PER_PACK)
        .map(|p| IndexPack {
            id: PackId(Id(id(u64::MAX - p))),
            blobs: (0..PER_PACK)
                .map(|i| PackEntry {
                    blob_type: BlobType::Data,
                    id: BlobId(Id(id(p * PER_PACK + i))),
                    offset: 8 + 100 * i as u32,
                    length: 100,
                    raw_len: 59,
                })
                .collect(),
        })
        .collect();
    repo.save_index(packs).unwrap();
    let index = repo.load_index_files().unwrap();
    (repo, index)
}

fn bench(c: &mut Criterion) {
    let (_repo, index) = loaded();
    let hits: Vec<BlobId> = (0..LOOKUPS)
        .map(|n| BlobId(Id(id(n * (BLOBS / LOOKUPS)))))
        .collect();
    let misses: Vec<BlobId> = (0..LOOKUPS).map(|n| BlobId(Id(id(BLOBS + n)))).collect();
    let mut g = c.benchmark_group("index_1m");
    g.throughput(Throughput::Elements(LOOKUPS));
    g.bench_function("contains_hit", |b| {
        b.iter(|| hits.iter().filter(|i| index.contains(black_box(i))).count())
    });
    g.bench_function("contains_miss", |b| {
        b.iter(|| {
            misses
                .iter()
                .filter(|i| index.contains(black_box(i)))
                .count()
        })
    });
    g.bench_function("get_hit", |b| {
        b.iter(|| hits.iter().filter_map(|i| index.get(black_box(i))).count())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
