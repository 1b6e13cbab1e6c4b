//! `snapshots`, `ls`, `dump`, `restore`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use cista::format::tree::NodeKind;
use cista::ops::find::{self, Located, SnapshotFilter};
use cista::ops::globs::Globs;
use cista::ops::restore::{self, Overwrite, RestoreOptions};
use clap::Args;

use super::progress::Reporter;
use super::{Env, code, output};

#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host", short = 'H')]
    hosts: Vec<String>,
    /// Only snapshots with these tags (repeatable; `a,b` means both).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only snapshots that include this path (repeatable).
    #[arg(long = "path")]
    paths: Vec<String>,
}

impl FilterArgs {
    fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: self.tags.clone(),
            paths: self.paths.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn snapshots(env: &Env, a: SnapshotsArgs) -> Result<u8> {
    let repo = env.open()?;
    let (all, damaged) = repo.scan_snapshots()?;
    for (id, e) in &damaged {
        eprintln!("warning: skipping snapshot {id}: {e}");
    }
    let filter = a.filter.filter();
    let list: Vec<_> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    if env.json {
        let v: Vec<_> = list
            .iter()
            .map(|(id, s)| output::snapshot_json(id, s))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(code::OK);
    }
    println!(
        "{:<9} {:<19} {:<16} {:<16} {:>11}  paths",
        "ID", "Time", "Host", "Tags", "Size"
    );
    println!("{}", "-".repeat(90));
    for (id, s) in &list {
        let mark = if s.incomplete { " (incomplete)" } else { "" };
        println!(
            "{:<9} {:<19} {:<16} {:<16} {:>11}  {}{mark}",
            id.to_string(),
            output::short_time(s.time_unix_ns, s.tz_offset_s),
            s.hostname,
            s.tags.join(","),
            output::bytes(s.summary.total_bytes_processed),
            s.paths.join(" "),
        );
    }
    println!("{}", "-".repeat(90));
    println!("{} snapshots", list.len());
    Ok(code::OK)
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id prefix or `latest`.
    snapshot: String,
    /// Directory or file inside the snapshot (default: everything).
    path: Option<PathBuf>,
    /// With a path: list everything below it, not only its entries.
    #[arg(long)]
    recursive: bool,
    /// Long listing: mode, owner, size, time.
    #[arg(long, short = 'l')]
    long: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn ls(env: &Env, a: LsArgs) -> Result<u8> {
    let repo = env.open()?;
    let (id, snap) = find::snapshot(&repo, &a.snapshot, &a.filter.filter())?;
    let index = repo.load_index()?;
    let print = |p: &Path, n: &cista::format::tree::Node| {
        let path = p.to_string_lossy();
        if env.json {
            println!("{}", output::node_json(&path, n));
        } else if a.long {
            let size = match &n.kind {
                NodeKind::File { size, .. } => *size,
                _ => 0,
            };
            let link = match &n.kind {
                NodeKind::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
                _ => String::new(),
            };
            println!(
                "{} {:>6} {:>6} {:>12} {} {path}{link}",
                output::mode_string(n),
                n.uid,
                n.gid,
                size,
                output::short_time(n.mtime_ns, snap.tz_offset_s)
            );
        } else {
            println!("{path}");
        }
    };
    if env.json {
        let mut head = output::snapshot_json(&id, &snap);
        head["struct_type"] = "snapshot".into();
        head["message_type"] = "snapshot".into();
        println!("{head}");
    }
    let label = id.to_string();
    match a.path.as_deref().filter(|p| *p != Path::new("/")) {
        None => find::walk(&repo, &index, &snap.tree, Path::new("/"), &mut |p, n| {
            print(p, n);
            Ok(a.path.is_none() || a.recursive)
        })?,
        Some(path) => match find::locate(&repo, &index, &snap.tree, path, &label)? {
            Located::Root(_) => {}
            Located::Node(abs, node) => {
                print(&abs, &node);
                if let NodeKind::Dir { subtree } = &node.kind {
                    find::walk(&repo, &index, subtree, &abs, &mut |p, n| {
                        print(p, n);
                        Ok(a.recursive)
                    })?;
                }
            }
        },
    }
    Ok(code::OK)
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id prefix or `latest`.
    snapshot: String,
    /// Path of a file inside the snapshot (stdin backups live at `/NAME`).
    path: PathBuf,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn dump(env: &Env, a: DumpArgs) -> Result<u8> {
    let repo = env.open()?;
    let (id, snap) = find::snapshot(&repo, &a.snapshot, &a.filter.filter())?;
    let index = repo.load_index()?;
    let node = match find::locate(&repo, &index, &snap.tree, &a.path, &id.to_string())? {
        Located::Node(_, n) => n,
        Located::Root(_) => {
            anyhow::bail!("`dump` writes one file; use `cista restore` for a whole snapshot")
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    restore::dump_file(&repo, &index, &node, &mut out)?;
    Ok(code::OK)
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// `SNAPSHOT` or `SNAPSHOT:PATH` (id prefix or `latest`).
    snapshot: std::ffi::OsString,
    /// Directory to restore into: new, empty, or an existing tree to restore onto.
    #[arg(long, short = 't')]
    target: PathBuf,
    /// What to do with files already in the target: `always` replaces them (a file whose
    /// content already matches is left as it is), `if-changed` takes a file with the
    /// snapshot's size and mtime as up to date without reading it, `if-newer` replaces only
    /// where the snapshot's mtime is newer, `never` only adds what is missing.
    #[arg(long, value_enum, default_value_t = OverwriteArg::Always)]
    overwrite: OverwriteArg,
    /// Remove what the snapshot does not have from the restored directories (and let a file
    /// replace a non-empty directory).
    #[arg(long)]
    delete: bool,
    /// Change nothing: report what would be restored, left and deleted (existing files are
    /// still read to compare them).
    #[arg(long)]
    dry_run: bool,
    /// Restore only paths matching this pattern (repeatable).
    #[arg(long = "include", short = 'i')]
    includes: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable).
    #[arg(long = "exclude", short = 'e')]
    excludes: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

/// `--overwrite` values, as restic spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OverwriteArg {
    Always,
    IfChanged,
    IfNewer,
    Never,
}

impl From<OverwriteArg> for Overwrite {
    fn from(a: OverwriteArg) -> Self {
        match a {
            OverwriteArg::Always => Self::Always,
            OverwriteArg::IfChanged => Self::IfChanged,
            OverwriteArg::IfNewer => Self::IfNewer,
            OverwriteArg::Never => Self::Never,
        }
    }
}

/// How many failed paths the final line names; all of them were printed above it.
const NAMED_FAILURES: usize = 3;

pub fn restore(env: &Env, a: RestoreArgs) -> Result<u8> {
    let (spec, sub) = find::split_spec(&a.snapshot);
    let spec = spec
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{spec:?} is neither `latest` nor a snapshot id"))?;
    let repo = env.open()?;
    let (id, snap) = find::snapshot(&repo, spec, &a.filter.filter())?;
    let index = repo.load_index()?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        includes: Globs::new(&a.includes)?,
        excludes: Globs::new(&a.excludes)?,
        overwrite: a.overwrite.into(),
        delete: a.delete,
        dry_run: a.dry_run,
    };
    let reporter = Reporter::start("restored", env.quiet || env.json);
    reporter.set_total(snap.summary.total_bytes_processed);
    let stats = restore::run(
        &repo,
        &index,
        &snap.tree,
        sub.unwrap_or(Path::new("/")),
        &id.to_string(),
        &opts,
        &reporter,
    );
    reporter.finish();
    let stats = stats?;
    for f in &stats.failed {
        if env.json {
            println!(
                "{}",
                serde_json::json!({"message_type": "error", "error": {"message": f.reason},
                                   "during": "restore", "item": f.path.to_string_lossy()})
            );
        } else {
            eprintln!("error: {f}");
        }
    }
    if env.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "files_restored": stats.files, "dirs_restored": stats.dirs,
                               "others_restored": stats.others, "bytes_restored": stats.bytes,
                               "files_skipped": stats.files_unchanged + stats.skipped, "bytes_skipped": stats.bytes_skipped,
                               "files_deleted": stats.deleted, "errors": stats.failed.len(), "warnings": stats.warnings,
                               "dry_run": a.dry_run,
                               "snapshot_id": id.to_hex()})
        );
    } else {
        let (did, left, deleted) = if a.dry_run {
            (
                "dry run: would restore",
                "would be left",
                "would be deleted",
            )
        } else {
            ("restored", "left", "deleted")
        };
        let mut extra = String::new();
        if stats.files_unchanged > 0 {
            extra += &format!(", {} files unchanged", stats.files_unchanged);
        }
        if stats.skipped > 0 {
            extra += &format!(", {} existing entries {left} as they were", stats.skipped);
        }
        if stats.deleted > 0 {
            extra += &format!(", {} entries {deleted}", stats.deleted);
        }
        env.info(format_args!(
            "{did} snapshot {id} to {}: {} files, {} directories, {} other entries, {}{extra}",
            a.target.display(),
            stats.files,
            stats.dirs,
            stats.others,
            output::bytes(stats.bytes)
        ));
    }
    if stats.failed.is_empty() {
        return Ok(code::OK);
    }
    let n = stats.failed.len();
    let mut named: Vec<String> = stats
        .failed
        .iter()
        .take(NAMED_FAILURES)
        .map(|f| f.path.display().to_string())
        .collect();
    if n > NAMED_FAILURES {
        named.push(format!("and {} more", n - NAMED_FAILURES));
    }
    let files = if n == 1 { "file" } else { "files" };
    if a.dry_run {
        eprintln!(
            "cista: dry run: {n} {files} could not be restored: {} (each is listed above)",
            named.join(", ")
        );
    } else {
        eprintln!(
            "cista: restored {} files; {n} {files} could not be restored: {} (each is listed \
             above with the reason; none was left with wrong content: a new file was removed, \
             an existing one keeps its old content). For damaged data, run `cista check \
             --read-data` to see what the repository lost, and restore those paths from an \
             older snapshot (`cista snapshots`) if one has them",
            stats.files,
            named.join(", "),
        );
    }
    Ok(code::INCOMPLETE)
}
