//! End-to-end throughput: initial backup, unchanged re-backup, and full restore of a mixed
//! 64 MiB tree (half SQL-like text, half random "encrypted uploads") on a local repository.
//! Run with `cargo bench --bench backup`. The peer comparison (restic, borg, ...) lives in a
//! separate script; this bench catches regressions of cista's own pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cista::backend::Backend;
use cista::backend::local::LocalBackend;
use cista::format::key::KdfParams;
use cista::ops::backup::{self, BackupOptions, Source};
use cista::ops::restore::{self, RestoreOptions};
use cista::ops::{CancelFlag, NoProgress};
use cista::repo::{InitOptions, Repository};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const TEXT_BYTES: usize = 32 << 20;
const RANDOM_FILES: usize = 64;
const RANDOM_FILE_BYTES: usize = 512 << 10;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn corpus(dir: &Path) -> u64 {
    let mut x = 0x2545f4914f6cdd1du64;
    std::fs::create_dir_all(dir.join("vault")).unwrap();
    let mut sql = String::with_capacity(TEXT_BYTES + 200);
    sql.push_str("COPY public.cases (id, name, email, amount, note) FROM stdin;\n");
    let mut i = 0u64;
    while sql.len() < TEXT_BYTES {
        let r = xorshift(&mut x);
        sql.push_str(&format!(
            "{i}\tclient {}\tc{i}@example.com\t{}.{:02}\tnote {:x}\n",
            r % 9973,
            r % 100_000,
            r % 100,
            r >> 20
        ));
        i += 1;
    }
    std::fs::write(dir.join("dump.sql"), &sql).unwrap();
    for f in 0..RANDOM_FILES {
        let data: Vec<u8> = (0..RANDOM_FILE_BYTES / 8)
            .flat_map(|_| xorshift(&mut x).to_le_bytes())
            .collect();
        std::fs::write(dir.join("vault").join(format!("u{f}.bin")), data).unwrap();
    }
    (sql.len() + RANDOM_FILES * RANDOM_FILE_BYTES) as u64
}

fn new_repo(dir: &Path) -> Repository {
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::open(dir).unwrap());
    let opts = InitOptions {
        kdf: KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        },
        ..InitOptions::default()
    };
    Repository::init(backend, b"bench", &opts).unwrap()
}

fn run_backup(repo: &Repository, src: &Path) {
    let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
    backup::run(
        repo,
        Source::Paths(vec![src.to_path_buf()]),
        None,
        &BackupOptions::default(),
        &NoProgress,
        &cancel,
    )
    .unwrap();
}

fn bench(c: &mut Criterion) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let total = corpus(&src);
    let mut g = c.benchmark_group("end_to_end");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total));

    g.bench_function("initial_backup", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir_in(work.path()).unwrap();
                let repo = new_repo(&d.path().join("repo"));
                (d, repo)
            },
            |(_d, repo)| run_backup(&repo, &src),
            BatchSize::PerIteration,
        )
    });

    let kept = tempfile::tempdir_in(work.path()).unwrap();
    let repo = new_repo(&kept.path().join("repo"));
    run_backup(&repo, &src);
    g.bench_function("unchanged_backup", |b| b.iter(|| run_backup(&repo, &src)));

    let snap = repo.list_snapshots().unwrap().pop().unwrap().1;
    let index = repo.load_index().unwrap();
    g.bench_function("full_restore", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(work.path()).unwrap(),
            |t| {
                let opts = RestoreOptions {
                    target: t.path().join("r"),
                    ..RestoreOptions::default()
                };
                restore::run(
                    &repo,
                    &index,
                    &snap.tree,
                    Path::new("/"),
                    "bench",
                    &opts,
                    &NoProgress,
                )
                .unwrap();
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
