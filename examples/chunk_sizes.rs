//! Chunk-size trade-offs on a synthetic nightly `pg_dump` (docs/DESIGN.md, "Chunk size").
//!
//! ```text
//! cargo run --release --example chunk_sizes -- [SIZE_MIB [SEED [CHANGE_PERCENT]]]
//! ```
//!
//! Generates night 1 of a SQL dump of SIZE_MIB (default 500) and two night-2 variants with
//! CHANGE_PERCENT (default 2) of each table's rows changed (uniform and skewed change models,
//! see `benches/corpus.rs`), then, for each
//! parameter set, chunks them and prints markdown tables: chunk counts, chunking throughput,
//! how much of night 2 deduplicates against night 1, what night 2 adds to the repository
//! (raw, after zstd level 3, and in per-chunk overhead), and the index that results. Needs
//! about 4 × SIZE_MIB of memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/corpus.rs"]
mod corpus;

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use cista::chunker::Chunker;
use cista::compress::compress;
use cista::crypto::MasterKey;
use cista::format::config::ChunkerParams;
use corpus::{ChangeModel, NIGHTLY_CHANGE, SqlDump};

const KIB: u32 = 1 << 10;
const MIB: f64 = (1 << 20) as f64;
/// Per-chunk costs: the AEAD seal (nonce + tag), the index entry (PackEntry on disk and its
/// in-memory form), and the chunk's id in its file's content list in a tree.
const SEAL: u64 = 40;
const INDEX_DISK: u64 = 48;
const INDEX_RAM: u64 = 64;
const TREE_REF: u64 = 32;

fn params(min: u32, avg: u32, max: u32) -> ChunkerParams {
    let p = ChunkerParams { min, avg, max };
    p.validate().unwrap();
    p
}

fn label(p: ChunkerParams) -> String {
    let s = |n: u32| {
        if n >= 1 << 20 {
            format!("{}M", n >> 20)
        } else {
            format!("{}K", n >> 10)
        }
    };
    format!("{} / {} / {}", s(p.min), s(p.avg), s(p.max))
}

/// What night 2 adds to a repository that holds night 1.
#[derive(Debug, Default)]
struct Night2 {
    size: u64,
    chunks: u64,
    dedup_bytes: u64,
    new_chunks: u64,
    new_bytes: u64,
    new_zstd: u64,
}

impl Night2 {
    fn measure(chunker: &Chunker, key: &MasterKey, known: &HashSet<[u8; 32]>, data: &[u8]) -> Self {
        let mut n = Self {
            size: data.len() as u64,
            ..Self::default()
        };
        let mut fresh = HashSet::new();
        let mut pos = 0;
        for len in chunker.cut_all(data) {
            let chunk = &data[pos..pos + len];
            pos += len;
            n.chunks += 1;
            let id = key.blob_id(chunk).0.0;
            if known.contains(&id) {
                n.dedup_bytes += len as u64;
            } else if fresh.insert(id) {
                n.new_chunks += 1;
                n.new_bytes += len as u64;
                n.new_zstd += compress(chunk, 3).map_or(len, |c| c.len()) as u64;
            }
        }
        n
    }

    fn overhead(&self) -> u64 {
        self.new_chunks * (SEAL + INDEX_DISK) + self.chunks * TREE_REF
    }
}

/// Bytes of `new`'s lines that are not lines of `old`: what a row-level diff would store.
fn changed_line_bytes(old: &[u8], new: &[u8]) -> u64 {
    let h = RandomState::new();
    let lines: HashSet<u64> = old.split(|&b| b == b'\n').map(|l| h.hash_one(l)).collect();
    new.split(|&b| b == b'\n')
        .filter(|l| !lines.contains(&h.hash_one(l)))
        .map(|l| l.len() as u64 + 1)
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let size_mib: usize = args.next().map_or(500, |s| s.parse().expect("SIZE_MIB"));
    let seed: u64 = args.next().map_or(1, |s| s.parse().expect("SEED"));
    let change: f64 = args.next().map_or(NIGHTLY_CHANGE, |s| {
        s.parse::<f64>().expect("CHANGE_PERCENT") / 100.0
    });

    let t = Instant::now();
    let db = SqlDump::generate(size_mib << 20, seed);
    let night1 = db.render();
    let nights2: Vec<(ChangeModel, Vec<u8>)> = [ChangeModel::Uniform, ChangeModel::Skewed]
        .into_iter()
        .map(|m| (m, db.next_night(m, change).render()))
        .collect();
    drop(db);
    let vault = corpus::vault_files((size_mib << 20) / 4, seed);
    eprintln!("corpus generated in {:.1?}", t.elapsed());

    let key = MasterKey::from_bytes(&[7; 96]);
    let gear = key.gear_table();
    let mut sets: Vec<ChunkerParams> = [64, 128, 256, 512, 1024, 2048]
        .into_iter()
        .map(|avg| params(avg * KIB / 4, avg * KIB, avg * KIB * 4))
        .collect();
    // restic's sizes, cista's provisional default. (Borg's 512K / 2M / 8M is the last of the
    // avg/4, avg*4 sets.)
    sets.push(params(512 * KIB, 1024 * KIB, 8192 * KIB));

    let mut t1 = vec![
        "| min / avg / max | chunks | mean chunk | chunking MB/s | index per TiB stored: entries | on disk (48 B) | in RAM (64 B) |".to_owned(),
        "|---|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    let mut t2: Vec<Vec<String>> = nights2
        .iter()
        .map(|_| {
            vec![
                "| min / avg / max | night-2 chunks | dedup vs night 1 | new raw MiB | new zstd-3 MiB | per-chunk overhead MiB | night-2 upload MiB | unique chunks (2 nights) | index disk / RAM MiB |".to_owned(),
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned(),
            ]
        })
        .collect();
    let mut t3 = vec![
        "| min / avg / max | files | chunks | mean chunk | per-chunk overhead MiB |".to_owned(),
        "|---|---:|---:|---:|---:|".to_owned(),
    ];

    for p in sets {
        eprintln!("measuring {}", label(p));
        let chunker = Chunker::new(p, gear);
        let start = Instant::now();
        let cuts = chunker.cut_all(&night1);
        let secs = start.elapsed().as_secs_f64();
        let mut known = HashSet::with_capacity(cuts.len());
        let mut pos = 0;
        for &len in &cuts {
            known.insert(key.blob_id(&night1[pos..pos + len]).0.0);
            pos += len;
        }
        let mean = night1.len() as f64 / cuts.len() as f64;
        let per_tib = (1u64 << 40) as f64 / mean;
        t1.push(format!(
            "| {} | {} | {:.0} KiB | {:.0} | {:.2} M | {:.0} MiB | {:.0} MiB |",
            label(p),
            cuts.len(),
            mean / 1024.0,
            night1.len() as f64 / 1e6 / secs,
            per_tib / 1e6,
            per_tib * INDEX_DISK as f64 / MIB,
            per_tib * INDEX_RAM as f64 / MIB,
        ));
        for ((_, night2), rows) in nights2.iter().zip(&mut t2) {
            let n = Night2::measure(&chunker, &key, &known, night2);
            let unique = known.len() as u64 + n.new_chunks;
            rows.push(format!(
                "| {} | {} | {:.1}% | {:.1} | {:.1} | {:.2} | {:.1} | {} | {:.2} / {:.2} |",
                label(p),
                n.chunks,
                100.0 * n.dedup_bytes as f64 / n.size as f64,
                n.new_bytes as f64 / MIB,
                n.new_zstd as f64 / MIB,
                n.overhead() as f64 / MIB,
                (n.new_zstd + n.overhead()) as f64 / MIB,
                unique,
                (unique * INDEX_DISK) as f64 / MIB,
                (unique * INDEX_RAM) as f64 / MIB,
            ));
        }
        let (files, bytes, chunks) = vault.iter().fold((0u64, 0u64, 0u64), |(f, b, c), v| {
            (
                f + 1,
                b + v.data.len() as u64,
                c + chunker.cut_all(&v.data).len() as u64,
            )
        });
        t3.push(format!(
            "| {} | {files} | {chunks} | {:.0} KiB | {:.2} |",
            label(p),
            bytes as f64 / chunks as f64 / 1024.0,
            (chunks * (SEAL + INDEX_DISK + TREE_REF)) as f64 / MIB,
        ));
    }

    println!(
        "Night 1: {:.1} MiB of SQL dump (seed {seed}); night 2 changes {}% of rows; chunking \
         throughput is one thread.\n",
        night1.len() as f64 / MIB,
        change * 100.0,
    );
    println!("{}\n", t1.join("\n"));
    for ((model, night2), rows) in nights2.iter().zip(&t2) {
        let floor = changed_line_bytes(&night1, night2);
        println!(
            "Night 2, {model:?} model: {:.1} MiB; rows not in night 1: {:.1} MiB ({:.1}%).\n",
            night2.len() as f64 / MIB,
            floor as f64 / MIB,
            100.0 * floor as f64 / night2.len() as f64,
        );
        println!("{}\n", rows.join("\n"));
    }
    let vault_bytes: usize = vault.iter().map(|v| v.data.len()).sum();
    println!(
        "Vault: {:.1} MiB in {} files (chunk overhead = seal + index entry + tree reference).\n",
        vault_bytes as f64 / MIB,
        vault.len()
    );
    println!("{}", t3.join("\n"));
    eprintln!("total {:.1?}", t.elapsed());
}
