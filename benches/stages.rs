//! Throughput of each stage of the backup pipeline, one at a time, on 16 MiB of SQL dump text
//! and 16 MiB of random bytes (docs/DESIGN.md, "Chunk size" for the corpus).
//!
//! Stages that work per blob (hashing, compression, sealing) are fed the input as 1 MiB blobs,
//! the way the pipeline calls them, so per-call setup (a zstd context, an allocation, a nonce)
//! is counted. Chunking takes the whole input as one stream.
//!
//! Sample counts are small so `cargo bench --bench stages` finishes in a few minutes; the
//! numbers are for comparing stages, not for publishing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corpus;

use std::hint::black_box;
use std::time::Duration;

use cista::chunker::Chunker;
use cista::compress::{compress, decompress_exact};
use cista::crypto::MasterKey;
use cista::format::config::ChunkerParams;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

const INPUT: usize = 16 << 20;
const BLOB: usize = 1 << 20;

struct Inputs {
    sql: Vec<u8>,
    random: Vec<u8>,
}

impl Inputs {
    fn new() -> Self {
        Self {
            sql: corpus::sql_dump(INPUT, 1),
            random: corpus::random_bytes(INPUT, 2),
        }
    }

    fn each(&self) -> [(&'static str, &[u8]); 2] {
        [("sql", &self.sql), ("random", &self.random)]
    }
}

fn key() -> MasterKey {
    MasterKey::from_bytes(&[7; 96])
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(INPUT as u64));
    g
}

fn chunking(c: &mut Criterion, inputs: &Inputs) {
    let chunker = Chunker::new(ChunkerParams::DEFAULT, key().gear_table());
    let mut g = group(c, "chunk");
    for (name, data) in inputs.each() {
        g.bench_function(name, |b| b.iter(|| chunker.cut_all(black_box(data))));
        // As the backup cuts a read segment: two passes from the start and the middle.
        g.bench_function(format!("{name}/two-pass"), |b| {
            b.iter(|| chunker.cuts(black_box(data), true))
        });
    }
    g.finish();
}

fn hashing(c: &mut Criterion, inputs: &Inputs) {
    let key = key();
    let mut g = group(c, "blob_id");
    for (name, data) in inputs.each() {
        g.bench_function(name, |b| {
            b.iter(|| {
                for blob in data.chunks(BLOB) {
                    black_box(key.blob_id(black_box(blob)));
                }
            })
        });
    }
    g.finish();
}

fn compression(c: &mut Criterion, inputs: &Inputs) {
    let mut g = group(c, "zstd_compress");
    for level in [1, 2, 3] {
        for (name, data) in inputs.each() {
            g.bench_function(format!("{name}/level{level}"), |b| {
                b.iter(|| {
                    for blob in data.chunks(BLOB) {
                        black_box(compress(black_box(blob), level));
                    }
                })
            });
        }
    }
    g.finish();

    // Random blobs are stored raw (compress returns None), so only text is decompressed.
    let mut g = group(c, "zstd_decompress");
    for level in [1, 2, 3] {
        let frames: Vec<(Vec<u8>, usize)> = inputs
            .sql
            .chunks(BLOB)
            .map(|blob| (compress(blob, level).expect("text compresses"), blob.len()))
            .collect();
        g.bench_function(format!("sql/level{level}"), |b| {
            b.iter(|| {
                for (frame, len) in &frames {
                    black_box(decompress_exact(black_box(frame), *len, "bench").unwrap());
                }
            })
        });
    }
    g.finish();
}

fn sealing(c: &mut Criterion, inputs: &Inputs) {
    let key = key();
    let mut g = group(c, "seal");
    for (name, data) in inputs.each() {
        g.bench_function(name, |b| {
            b.iter(|| {
                for blob in data.chunks(BLOB) {
                    black_box(key.seal(b"ad", black_box(blob)).unwrap());
                }
            })
        });
    }
    g.finish();

    let mut g = group(c, "open");
    for (name, data) in inputs.each() {
        let sealed: Vec<Vec<u8>> = data
            .chunks(BLOB)
            .map(|blob| key.seal(b"ad", blob).unwrap())
            .collect();
        g.bench_function(name, |b| {
            b.iter(|| {
                for s in &sealed {
                    black_box(key.open(b"ad", black_box(s)).unwrap());
                }
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// END-TO-END BACKUP BENCH: to be added once the backup API (src/ops) exists.
//
// Intended shape: init a repository on the in-memory OpenDAL backend, back up night 1 of
// `corpus::SqlDump` plus `corpus::vault_files`, then measure backing up night 2
// (`next_night(ChangeModel::Skewed, corpus::NIGHTLY_CHANGE)`), reporting bytes/s of input and
// bytes written to the backend. Deliberately not stubbed: there is nothing to measure yet.
// ---------------------------------------------------------------------------------------------

fn stages(c: &mut Criterion) {
    let inputs = Inputs::new();
    chunking(c, &inputs);
    hashing(c, &inputs);
    compression(c, &inputs);
    sealing(c, &inputs);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = stages
}
criterion_main!(benches);
