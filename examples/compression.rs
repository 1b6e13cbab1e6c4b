//! zstd parameter sets on real data (docs/DESIGN.md, "Compression level").
//!
//! ```text
//! cargo run --release --example compression -- DIR [DIR...]
//! ```
//!
//! Reads every regular file below the DIRs, cuts it with cista's default chunker, keeps each
//! distinct chunk once (what a repository stores), then compresses all of them with each
//! candidate parameter set the way a backup does (`cista::compress::kept_below`: the level-1
//! incompressibility trial, and raw storage unless zstd saves 1/64) and prints a
//! markdown table: stored bytes, the ratio against level 3, and the CPU seconds the
//! compression took on one thread (the least of three interleaved passes, because one pass
//! moves by 10-25% on a shared VM). Holds the distinct chunks in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use cista::chunker::Chunker;
use cista::compress::kept_below;
use cista::crypto::MasterKey;
use cista::format::config::ChunkerParams;
use zstd::zstd_safe::{CParameter, Strategy};

/// Files below `roots`, depth first, without following symlinks.
fn files(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                names.sort();
                stack.extend(names.into_iter().rev());
            }
        } else if md.is_file() {
            out.push(p);
        }
    }
    out
}

/// The thread's CPU time so far, in seconds.
fn thread_cpu() -> f64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9
}

fn main() {
    let roots: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    assert!(!roots.is_empty(), "usage: compression DIR [DIR...]");
    let key = MasterKey::from_bytes(&[7; 96]);
    let chunker = Chunker::new(ChunkerParams::DEFAULT, key.gear_table());

    let t = Instant::now();
    let mut seen = HashSet::new();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let (mut total, mut nfiles) = (0u64, 0u64);
    for f in files(&roots) {
        let Ok(data) = std::fs::read(&f) else {
            continue;
        };
        nfiles += 1;
        total += data.len() as u64;
        let mut pos = 0;
        for len in chunker.cut_all(&data) {
            let chunk = &data[pos..pos + len];
            pos += len;
            if seen.insert(key.blob_id(chunk).0.0) {
                chunks.push(chunk.to_vec());
            }
        }
    }
    let distinct: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    eprintln!(
        "{nfiles} files, {total} bytes, {} distinct chunks of {distinct} bytes, read in {:.1?}",
        chunks.len(),
        t.elapsed()
    );

    use CParameter::{MinMatch, Strategy as Strat, WindowLog};
    let sets: Vec<(&str, i32, Vec<CParameter>)> = vec![
        ("level 1", 1, vec![]),
        ("level 2", 2, vec![]),
        ("level 3", 3, vec![]),
        ("level 2, dfast", 2, vec![Strat(Strategy::ZSTD_dfast)]),
        (
            "level 2, dfast, min match 5",
            2,
            vec![Strat(Strategy::ZSTD_dfast), MinMatch(5)],
        ),
        ("level 3, min match 6", 3, vec![MinMatch(6)]),
        ("level 3, window log 20", 3, vec![WindowLog(20)]),
    ];
    println!("| parameters | stored bytes | vs level 3 | CPU s |");
    println!("|---|---:|---:|---:|");
    let mut base = None;
    let mut rows: Vec<(&str, u64, f64)> = Vec::new();
    for pass in 0..3 {
        for (i, (name, level, params)) in sets.iter().enumerate() {
            let mut ctx = zstd::bulk::Compressor::new(*level).unwrap();
            for p in params {
                ctx.set_parameter(*p).unwrap();
            }
            let mut buf = Vec::new();
            let c0 = thread_cpu();
            let stored: u64 = chunks
                .iter()
                .map(|c| {
                    // A backup's rules (cista::compress::with_compressed).
                    let Some(limit) = kept_below(c) else {
                        return c.len() as u64;
                    };
                    buf.clear();
                    buf.resize(limit, 0);
                    ctx.compress_to_buffer(c, &mut buf[..])
                        .map_or(c.len(), |n| n) as u64
                })
                .sum();
            let cpu = thread_cpu() - c0;
            if *name == "level 3" {
                base = Some(stored);
            }
            if pass == 0 {
                rows.push((name, stored, cpu));
            } else {
                rows[i].2 = rows[i].2.min(cpu);
            }
        }
    }
    let base = base.unwrap() as f64;
    for (name, stored, cpu) in rows {
        println!(
            "| {name} | {stored} | {:+.2}% | {cpu:.2} |",
            (stored as f64 / base - 1.0) * 100.0
        );
    }
}
