//! `ls`, `dump`, `restore`, and the snapshot filter flags they share with `snapshots`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use cista::backend::FileType;
use cista::format::tree::{Node, NodeKind};
use cista::ops::dump;
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
    pub(super) fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: self.tags.clone(),
            paths: self.paths.clone(),
        }
    }
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
    let session = env.session_listing(
        cista::format::lock::LockMode::Shared,
        &[FileType::Snapshot, FileType::Index],
    )?;
    let repo = session.repo().clone();
    let (id, snap) = find::snapshot(&repo, &a.snapshot, &a.filter.filter())?;
    let index = super::repo_cmds::load_index(&repo)?;
    let mut out = output::Out::new();
    if env.json {
        out.line(output::ls_snapshot_json(&id, &snap))?;
    }
    let style = if env.json {
        LsStyle::Json
    } else if a.long {
        LsStyle::Long(snap.tz_offset_s)
    } else {
        LsStyle::Plain
    };
    let mut print = |p: &Path, n: &Node| {
        print_node(&mut out, style, p, n).map_err(|e| cista::Error::io("standard output", e))
    };
    let label = id.to_string();
    match a.path.as_deref().filter(|p| *p != Path::new("/")) {
        None => find::walk(&repo, &index, &snap.tree, Path::new("/"), &mut |p, n| {
            print(p, n)?;
            Ok(a.path.is_none() || a.recursive)
        })?,
        Some(path) => match find::locate(&repo, &index, &snap.tree, path, &label)? {
            Located::Root(_) => {}
            Located::Node(abs, node) => {
                print(&abs, &node)?;
                find::walk_dir(&repo, &index, &node.kind, &abs, &mut |p, n| {
                    print(p, n)?;
                    Ok(a.recursive)
                })?;
            }
        },
    }
    out.finish()?;
    Ok(code::OK)
}

/// How `ls` prints a node; `Long` carries the snapshot's UTC offset for the times.
#[derive(Debug, Clone, Copy)]
enum LsStyle {
    Plain,
    Long(i32),
    Json,
}

fn print_node(out: &mut output::Out, style: LsStyle, p: &Path, n: &Node) -> std::io::Result<()> {
    let path = p.to_string_lossy();
    match style {
        LsStyle::Json => out.line(output::node_json(&path, n)),
        LsStyle::Long(offset) => {
            let size = match &n.kind {
                NodeKind::File { size, .. } => *size,
                _ => 0,
            };
            let link = match &n.kind {
                NodeKind::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
                _ => String::new(),
            };
            out.line(format_args!(
                "{} {:>6} {:>6} {:>12} {} {path}{link}",
                output::mode_string(n),
                n.uid,
                n.gid,
                size,
                output::short_time(n.mtime_ns, offset)
            ))
        }
        LsStyle::Plain => out.line(path),
    }
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id prefix or `latest`.
    snapshot: String,
    /// Path inside the snapshot: a file (its content), a symlink (its target), a directory
    /// or `/` (an archive). Stdin backups live at `/NAME`.
    path: PathBuf,
    /// Archive format for a directory or `/`.
    #[arg(long, short = 'a', value_enum, default_value_t = ArchiveArg::Tar)]
    archive: ArchiveArg,
    #[command(flatten)]
    filter: FilterArgs,
}

/// `--archive` values (restic's).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ArchiveArg {
    Tar,
    Zip,
}

pub fn dump(env: &Env, a: DumpArgs) -> Result<u8> {
    let session = env.session_listing(
        cista::format::lock::LockMode::Shared,
        &[FileType::Snapshot, FileType::Index],
    )?;
    let repo = session.repo().clone();
    let (id, snap) = find::snapshot(&repo, &a.snapshot, &a.filter.filter())?;
    let index = super::repo_cmds::load_index(&repo)?;
    let located = find::locate(&repo, &index, &snap.tree, &a.path, &id.to_string())?;
    let top = match &located {
        Located::Node(p, n) => match &n.kind {
            NodeKind::Dir { .. } | NodeKind::DirParts { .. } => Some((p.as_path(), n)),
            NodeKind::Symlink { target } => {
                // restic refuses; the target text is what a script asking for it wants.
                let mut out = output::Out::new();
                std::io::Write::write_all(&mut out, target)?;
                out.finish()?;
                return Ok(code::OK);
            }
            NodeKind::Fifo => anyhow::bail!(
                "{} is a named pipe in snapshot {id}: it has no content to dump",
                a.path.display()
            ),
            NodeKind::File { .. } => {
                let mut out = output::Out::new();
                restore::dump_file(&repo, &index, n, &mut out)?;
                out.finish()?;
                return Ok(code::OK);
            }
        },
        Located::Root(_) => None,
    };
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        anyhow::bail!(
            "refusing to write a {} archive to a terminal: redirect standard output to a file or a pipe",
            match a.archive {
                ArchiveArg::Tar => "tar",
                ArchiveArg::Zip => "zip",
            }
        );
    }
    let format = match a.archive {
        ArchiveArg::Tar => dump::Archive::Tar,
        ArchiveArg::Zip => dump::Archive::Zip,
    };
    let mut out = output::Out::new();
    dump::archive(&repo, &index, &snap.tree, top, format, &mut out)?;
    out.finish()?;
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
    /// Write files of 256 KiB or more with O_DIRECT, bypassing the page cache: leaves what
    /// the machine caches (a database's working set) in place and skips the cost of first
    /// touching a fresh VM's memory, but is slower where the page cache is warm.
    #[arg(long)]
    direct_io: bool,
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

/// Raises the soft limit on open descriptors towards `wanted` (never above the hard limit),
/// as Go programs such as restic do at start: a remote restore writes thousands of files at
/// once, and the restore lowers its batches to whatever limit it finds if this fails.
fn raise_open_files(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < wanted
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard);
    }
}

pub fn restore(env: &Env, a: RestoreArgs) -> Result<u8> {
    let (spec, sub) = find::split_spec(&a.snapshot);
    let spec = spec
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{spec:?} is neither `latest` nor a snapshot id"))?;
    let session = env.session_listing(
        cista::format::lock::LockMode::Shared,
        &[FileType::Snapshot, FileType::Index],
    )?;
    let repo = session.repo().clone();
    let (id, snap) = find::snapshot(&repo, spec, &a.filter.filter())?;
    let index = super::repo_cmds::load_index(&repo)?;
    let remote = env.is_remote()?;
    if remote {
        raise_open_files(2 * restore::REMOTE_BATCH_FILES as u64 + 256);
    }
    let opts = RestoreOptions {
        target: a.target.clone(),
        includes: Globs::new(&a.includes)?,
        excludes: Globs::new(&a.excludes)?,
        overwrite: a.overwrite.into(),
        delete: a.delete,
        dry_run: a.dry_run,
        reads_in_flight: env.reads_in_flight()?,
        remote,
        direct_io: a.direct_io,
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
            output::warn(
                serde_json::json!({"message_type": "error", "error": {"message": f.reason},
                                   "during": "restore", "item": f.path.to_string_lossy()}),
            );
        } else {
            output::warn(format_args!("error: {f}"));
        }
    }
    if env.json {
        let mut out = output::Out::new();
        out.line(serde_json::json!({"message_type": "summary", "files_restored": stats.files, "dirs_restored": stats.dirs,
                               "others_restored": stats.others, "bytes_restored": stats.bytes,
                               "files_skipped": stats.files_unchanged + stats.skipped, "bytes_skipped": stats.bytes_skipped,
                               "files_deleted": stats.deleted, "errors": stats.failed.len(), "warnings": stats.warnings,
                               "dry_run": a.dry_run,
                               "snapshot_id": id.to_hex()}))?;
        out.finish()?;
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
            extra += &format!(
                ", {} unchanged",
                output::count(stats.files_unchanged, "file", "files")
            );
        }
        if stats.skipped > 0 {
            extra += &format!(
                ", {} {left} as they were",
                output::count(stats.skipped, "existing entry", "existing entries")
            );
        }
        if stats.deleted > 0 {
            extra += &format!(
                ", {} {deleted}",
                output::count(stats.deleted, "entry", "entries")
            );
        }
        env.info(format_args!(
            "{did} snapshot {id} to {}: {}, {}, {}, {}{extra}",
            a.target.display(),
            output::count(stats.files, "file", "files"),
            output::count(stats.dirs, "directory", "directories"),
            output::count(stats.others, "other entry", "other entries"),
            output::bytes(stats.bytes)
        ))?;
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
        output::warn(format_args!(
            "cista: dry run: {n} {files} could not be restored: {} (each is listed above)",
            named.join(", ")
        ));
    } else {
        output::warn(format_args!(
            "cista: restored {} files; {n} {files} could not be restored: {} (each is listed \
             above with the reason; none was left with wrong content: a new file was removed, \
             an existing one keeps its old content). For damaged data, run `cista check \
             --read-data` to see what the repository lost, and restore those paths from an \
             older snapshot (`cista snapshots`) if one has them",
            stats.files,
            named.join(", "),
        ));
    }
    Ok(code::INCOMPLETE)
}
