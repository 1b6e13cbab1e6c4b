//! The peer-comparison corpus (docs/PERFORMANCE.md, `benches/compare.sh`): one night of an
//! application's data, then the next night's, in the same folder.
//!
//! ```text
//! cargo run --release --example corpus -- night1 DIR [--scale N] [--seed S]
//! cargo run --release --example corpus -- night2 DIR [--scale N] [--seed S]
//! ```
//!
//! `night1` writes into a new or empty DIR: `db/app.sql`, a 600 MB plain-format `pg_dump`, and
//! `vault/`, 660 MB of about 3,000 uploads (mostly incompressible "encrypted" files, some
//! compressible documents), plus `CORPUS`, a one-line marker naming the night.
//!
//! `night2` turns that tree into the next night's in place, so every tool backs up the same
//! path twice and sees a parent/incremental run: the dump is rewritten with 2% of each table's
//! rows changed (the skewed change model of `benches/corpus.rs`; a uniform model exists there
//! too, the worst case for deduplication), and a few dozen vault files are added (24),
//! changed (12: documents grow by about a tenth, uploads are replaced by new bytes) and
//! removed (12).
//!
//! `--scale N` divides every size and count by N (for developing the script), `--seed` picks
//! another corpus. The same arguments give the same bytes. A summary goes to stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/corpus.rs"]
mod corpus;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Instant;

use corpus::{ChangeModel, NIGHTLY_CHANGE, Rng, SqlDump, Vault, VaultShape};

const DUMP_BYTES: usize = 600_000_000;
const VAULT_BYTES: usize = 660_000_000;
/// An application's upload folder: many smaller files (about 230 KB on average), 70% of them
/// (and about 90% of the bytes) incompressible.
const UPLOADS: VaultShape = VaultShape {
    encrypted: 0.70,
    encrypted_sizes: (16 << 10, 1280 << 10),
    document_sizes: (1 << 10, 512 << 10),
};
/// Vault files added, changed and removed on night 2 (before scaling).
const ADDED: usize = 24;
const CHANGED: usize = 12;
const REMOVED: usize = 12;

#[derive(Debug)]
struct Args {
    night: u32,
    dir: PathBuf,
    scale: usize,
    seed: u64,
}

fn usage() -> ! {
    eprintln!("usage: corpus night1|night2 DIR [--scale N] [--seed S]");
    exit(2)
}

fn parse() -> Args {
    let mut args = std::env::args().skip(1);
    let night = match args.next().as_deref() {
        Some("night1") => 1,
        Some("night2") => 2,
        _ => usage(),
    };
    let dir = PathBuf::from(args.next().unwrap_or_else(|| usage()));
    let (mut scale, mut seed) = (1, 1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--scale" => scale = value.parse().unwrap_or_else(|_| usage()),
            "--seed" => seed = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if scale == 0 {
        usage()
    }
    Args {
        night,
        dir,
        scale,
        seed,
    }
}

fn marker(a: &Args, night: u32) -> String {
    format!(
        "cista comparison corpus: night {night}, scale {}, seed {}\n",
        a.scale, a.seed
    )
}

fn fail(msg: String) -> ! {
    eprintln!("corpus: {msg}");
    exit(1)
}

fn write_file(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
}

fn dump(a: &Args) -> SqlDump {
    SqlDump::generate(DUMP_BYTES / a.scale, a.seed)
}

fn night1(a: &Args) {
    if fs::read_dir(&a.dir).is_ok_and(|mut d| d.next().is_some()) {
        fail(format!("{} is not empty", a.dir.display()));
    }
    let sql = dump(a).render();
    write_file(&a.dir.join("db/app.sql"), &sql);
    let (mut files, mut bytes, mut docs) = (0, 0, 0);
    for f in Vault::new(VAULT_BYTES / a.scale, a.seed, UPLOADS) {
        files += 1;
        bytes += f.data.len();
        docs += usize::from(f.path.starts_with("documents/"));
        write_file(&a.dir.join("vault").join(&f.path), &f.data);
    }
    write_file(&a.dir.join("CORPUS"), marker(a, 1).as_bytes());
    eprintln!(
        "night 1: dump {:.1} MB, vault {:.1} MB in {files} files ({docs} documents)",
        sql.len() as f64 / 1e6,
        bytes as f64 / 1e6,
    );
}

/// Every file below `dir`, relative to it, sorted.
fn list(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir.join(rel))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            list(dir, &path, out);
        } else {
            out.push(path);
        }
    }
}

fn night2(a: &Args) {
    let mark = a.dir.join("CORPUS");
    match fs::read_to_string(&mark) {
        Ok(m) if m == marker(a, 1) => {}
        Ok(m) => fail(format!(
            "{} says {:?}; night2 needs a night-1 tree made with the same --scale and --seed",
            mark.display(),
            m.trim_end()
        )),
        Err(e) => fail(format!("{}: {e} (run night1 first)", mark.display())),
    }
    // Rewritten in place, as `pg_dump app > app.sql` does.
    let sql = dump(a)
        .next_night(ChangeModel::Skewed, NIGHTLY_CHANGE)
        .render();
    write_file(&a.dir.join("db/app.sql"), &sql);

    let vault = a.dir.join("vault");
    let mut files = Vec::new();
    list(&vault, Path::new(""), &mut files);
    // Added documents are numbered after the last night-1 one.
    let mut next_doc = files
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let count = |n: usize| (n / a.scale).max(1);
    let mut rng = Rng::new(a.seed ^ 0x2_0000_0000);
    let mut pick = |files: &mut Vec<PathBuf>| files.remove(rng.below(files.len() as u64) as usize);
    let mut changed = 0;
    for _ in 0..count(CHANGED) {
        let rel = pick(&mut files);
        let path = vault.join(&rel);
        let old = fs::metadata(&path).unwrap().len() as usize;
        let mut rng = Rng::new(a.seed ^ old as u64);
        match rel.extension().and_then(|e| e.to_str()) {
            Some("enc") => write_file(&path, &corpus::random_bytes(old, rng.next_u64())),
            ext => {
                let more = corpus::document(ext.unwrap_or("txt"), old / 10 + 1, &mut rng);
                let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
                f.write_all(&more).unwrap();
            }
        }
        changed += 1;
    }
    for _ in 0..count(REMOVED) {
        fs::remove_file(vault.join(pick(&mut files))).unwrap();
    }
    // New uploads come from a generator of their own.
    let mut added_bytes = 0;
    for f in Vault::new(usize::MAX, a.seed ^ 0x2_0000_0001, UPLOADS).take(count(ADDED)) {
        let rel = match f.path.strip_prefix("documents/") {
            Some(name) => {
                next_doc += 1;
                let ext = name.rsplit('.').next().unwrap_or("txt");
                format!("documents/{next_doc:06}.{ext}")
            }
            None => f.path,
        };
        added_bytes += f.data.len();
        write_file(&vault.join(rel), &f.data);
    }
    write_file(&mark, marker(a, 2).as_bytes());
    eprintln!(
        "night 2: dump {:.1} MB ({:?} model, {}% of rows), vault: {} added ({:.1} MB), \
         {changed} changed, {} removed",
        sql.len() as f64 / 1e6,
        ChangeModel::Skewed,
        NIGHTLY_CHANGE * 100.0,
        count(ADDED),
        added_bytes as f64 / 1e6,
        count(REMOVED),
    );
}

fn main() {
    let a = parse();
    let t = Instant::now();
    match a.night {
        1 => night1(&a),
        _ => night2(&a),
    }
    eprintln!("written in {:.1?}", t.elapsed());
}
