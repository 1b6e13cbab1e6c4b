//! `backup`.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cista::ops::backup::{self, BackupOptions, Excludes, NotWritten, Source, TagFile, targets};
use cista::ops::globs::Globs;
use clap::Args;
use serde_json::json;

use super::progress::{Reporter, plural};
use super::{Env, code, output};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up (with --stdin-from-command: the command and its
    /// arguments). Any bytes are accepted as a path.
    args: Vec<OsString>,
    /// Back up standard input as one file.
    #[arg(long, conflicts_with = "stdin_from_command")]
    stdin: bool,
    /// Run the command given after `--` and back up its standard output; no snapshot is
    /// written if it exits non-zero.
    #[arg(long)]
    stdin_from_command: bool,
    /// File name for --stdin / --stdin-from-command.
    #[arg(long, default_value = "stdin")]
    stdin_filename: String,
    /// Read the paths to back up from FILE, one pattern a line (`#` comments and empty
    /// lines skipped, globs expanded; `-` is standard input; repeatable).
    #[arg(long = "files-from", value_name = "FILE")]
    files_from: Vec<PathBuf>,
    /// Read the paths to back up from FILE, one literal path a line (repeatable).
    #[arg(long = "files-from-verbatim", value_name = "FILE")]
    files_from_verbatim: Vec<PathBuf>,
    /// Read the paths to back up from FILE, each ended by a NUL byte (`find -print0`;
    /// repeatable).
    #[arg(long = "files-from-raw", value_name = "FILE")]
    files_from_raw: Vec<PathBuf>,
    /// Exclude paths matching this pattern (repeatable).
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    excludes: Vec<String>,
    /// Read exclude patterns from a file (repeatable).
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_files: Vec<PathBuf>,
    /// Like --exclude, ignoring letter case (repeatable).
    #[arg(long = "iexclude", value_name = "GLOB")]
    iexcludes: Vec<String>,
    /// Like --exclude-file, ignoring letter case (repeatable).
    #[arg(long = "iexclude-file", value_name = "FILE")]
    iexclude_files: Vec<PathBuf>,
    /// Keep only the tag file of directories holding a file NAME (that starts with HEADER,
    /// if given) (repeatable).
    #[arg(long = "exclude-if-present", value_name = "NAME[:HEADER]")]
    exclude_if_present: Vec<String>,
    /// Exclude cache directories marked with a CACHEDIR.TAG file (https://bford.info/cachedir/).
    #[arg(long)]
    exclude_caches: bool,
    /// Skip files larger than SIZE (suffixes k, m, g, t: powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    exclude_larger_than: Option<u64>,
    /// Do not cross file-system boundaries.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Add a tag (repeatable; comma-separated lists allowed).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Record this host name instead of the machine's.
    #[arg(long, short = 'H')]
    host: Option<String>,
    /// Compare against this snapshot instead of the latest one of the same host and paths.
    #[arg(long)]
    parent: Option<String>,
    /// Read every file, ignoring the parent snapshot.
    #[arg(long)]
    force: bool,
    /// Ignore inode number and ctime changes when checking for modified files.
    #[arg(long)]
    ignore_inode: bool,
    /// Ignore ctime changes when checking for modified files.
    #[arg(long)]
    ignore_ctime: bool,
    /// Write no snapshot if the tree is identical to the parent snapshot's.
    #[arg(long)]
    skip_if_unchanged: bool,
    /// Read everything but write nothing to the repository; report what would be added.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Store the real access times of files and directories.
    #[arg(long)]
    with_atime: bool,
    /// Do not scan the sources for progress totals (no percentage or ETA).
    #[arg(long)]
    no_scan: bool,
    /// Record this as the snapshot's time: "YYYY-MM-DD HH:MM:SS" in local time, or with a
    /// ±HH:MM offset appended (default: now).
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
}

/// `--exclude-larger-than`: a bad size is a usage error (exit 2).
fn size_arg(s: &str) -> Result<u64, String> {
    backup::parse_size(s).map_err(|e| e.to_string())
}

/// The bytes of a list file, `-` meaning standard input.
fn read_list(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("reading the list from standard input")?;
        return Ok(v);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The source paths: every list file's entries, then the arguments (restic's order).
fn collect_paths(a: &BackupArgs) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for f in &a.files_from {
        let (found, unmatched) = targets::files_from(&read_list(f)?)?;
        for p in unmatched {
            output::warn(format_args!(
                "warning: pattern {p:?} does not match any files, skipping"
            ));
        }
        out.extend(found);
    }
    for f in &a.files_from_verbatim {
        out.extend(targets::files_from_verbatim(&read_list(f)?));
    }
    for f in &a.files_from_raw {
        out.extend(targets::files_from_raw(&read_list(f)?)?);
    }
    out.extend(a.args.iter().map(PathBuf::from));
    Ok(out)
}

fn patterns(inline: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut p = inline.to_vec();
    for f in files {
        p.extend(Globs::read_pattern_file(f)?);
    }
    Ok(p)
}

pub fn run(env: &Env, a: BackupArgs) -> Result<u8> {
    let lists = !(a.files_from.is_empty()
        && a.files_from_verbatim.is_empty()
        && a.files_from_raw.is_empty());
    let source = if a.stdin_from_command {
        if a.args.is_empty() {
            anyhow::bail!("--stdin-from-command needs a command after `--`");
        }
        if lists {
            anyhow::bail!("--stdin-from-command and --files-from* cannot be used together");
        }
        Source::Command {
            name: a.stdin_filename.clone(),
            argv: a.args.clone(),
        }
    } else if a.stdin {
        if !a.args.is_empty() {
            anyhow::bail!("--stdin takes no paths");
        }
        if lists {
            anyhow::bail!("--stdin and --files-from* cannot be used together");
        }
        Source::Stdin {
            name: a.stdin_filename.clone(),
        }
    } else {
        let paths = collect_paths(&a)?;
        if paths.is_empty() {
            anyhow::bail!(
                "nothing to back up: give paths, --files-from, --stdin or --stdin-from-command"
            );
        }
        Source::Paths(paths)
    };
    let mut if_present = a
        .exclude_if_present
        .iter()
        .map(|s| TagFile::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if a.exclude_caches {
        if_present.push(TagFile::cache_dir());
    }
    let excludes = Excludes {
        globs: Globs::new(&patterns(&a.excludes, &a.exclude_files)?)?,
        iglobs: Globs::new_case_insensitive(&patterns(&a.iexcludes, &a.iexclude_files)?)?,
        if_present,
        larger_than: a.exclude_larger_than,
    };
    // Ctrl-C / SIGTERM ask the backup to stop at a safe point (uploaded packs are indexed, no
    // snapshot is written); a second signal exits at once. `rewrite` and `repair` do the same;
    // other commands keep the default.
    super::rewrite::stop_on_signals(env)?;
    let time = match &a.time {
        Some(t) => Some(
            cista::ops::retention::calendar::parse_time(t, &jiff::tz::TimeZone::system())
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let repo = env.open()?;
    let parent = match &a.parent {
        Some(spec) => Some(cista::ops::find::snapshot(&repo, spec, &Default::default())?.0),
        None => None,
    };
    let reporter = Reporter::backup(env.quiet, env.json);
    let opts = BackupOptions {
        excludes,
        one_file_system: a.one_file_system,
        tags: a
            .tags
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        host: a.host.clone(),
        parent,
        force: a.force,
        ignore_ctime: a.ignore_ctime,
        ignore_inode: a.ignore_inode,
        skip_if_unchanged: a.skip_if_unchanged,
        dry_run: a.dry_run,
        with_atime: a.with_atime,
        // Only a visible status needs the totals; otherwise the scan is wasted I/O.
        scan: reporter.is_active() && !a.no_scan,
        // restic's backup ignores --no-lock too: it writes, so it always locks.
        lock: cista::ops::session::LockOptions {
            no_lock: false,
            ..env.lock.clone()
        },
        time,
    };
    let mut stdin = std::io::stdin();
    let stdin_reader: Option<&mut (dyn Read + Send)> =
        if a.stdin { Some(&mut stdin) } else { None };
    let outcome = backup::run(&repo, source, stdin_reader, &opts, &reporter, &env.cancel);
    reporter.finish();
    let outcome = outcome?;
    print_summary(env, &outcome)?;
    let s = &outcome.snapshot;
    if s.incomplete {
        let n = s.summary.errors;
        let what = match outcome.id {
            Some(id) => format!("snapshot {id} is incomplete"),
            None => "the snapshot would be incomplete".into(),
        };
        output::warn(format_args!(
            "warning: {n} source {} could not be read or changed while being read; {what}",
            plural(n, "entry", "entries")
        ));
        return Ok(code::INCOMPLETE);
    }
    Ok(code::OK)
}

pub(super) fn print_summary(env: &Env, o: &backup::BackupOutcome) -> std::io::Result<()> {
    let s = &o.snapshot;
    let m = &s.summary;
    let secs = (m.backup_end_ns - m.backup_start_ns) as f64 / 1e9;
    if env.json {
        let mut v = json!({
            "message_type": "summary",
            "files_new": m.files_new,
            "files_changed": m.files_changed,
            "files_unmodified": m.files_unmodified,
            "dirs_new": m.dirs_new,
            "dirs_changed": m.dirs_changed,
            "dirs_unmodified": m.dirs_unmodified,
            "data_blobs": m.data_blobs,
            "tree_blobs": m.tree_blobs,
            "data_added": m.data_added,
            "data_added_packed": m.data_added_packed,
            "total_files_processed": m.total_files_processed,
            "total_bytes_processed": m.total_bytes_processed,
            "total_duration": secs,
            "backup_start": output::rfc3339(m.backup_start_ns, s.tz_offset_s),
            "backup_end": output::rfc3339(m.backup_end_ns, s.tz_offset_s),
            "incomplete": s.incomplete,
            "errors": m.errors,
        });
        if let Some(obj) = v.as_object_mut() {
            // restic omits an empty snapshot_id and a false dry_run.
            if let Some(id) = o.id {
                obj.insert("snapshot_id".into(), id.to_hex().into());
            }
            if o.not_written == Some(NotWritten::DryRun) {
                obj.insert("dry_run".into(), true.into());
            }
        }
        let mut out = output::Out::new();
        out.line(v)?;
        return out.finish();
    }
    let files = m.total_files_processed;
    let verb = if o.not_written == Some(NotWritten::DryRun) {
        "Would add:  "
    } else {
        "Added:      "
    };
    let last = match (o.id, o.not_written) {
        (Some(id), _) => format!("snapshot {id} saved"),
        (None, Some(NotWritten::Unchanged)) => {
            "skipped creating snapshot: nothing changed since the parent".into()
        }
        (None, _) => "dry run: nothing was written to the repository".into(),
    };
    env.info(format_args!(
        "Files:       {} new, {} changed, {} unmodified\nDirs:        {} new, {} changed, {} unmodified\n{verb} {} ({} stored)\nProcessed:   {files} {}, {} in {:.2}s\n{last}",
        m.files_new,
        m.files_changed,
        m.files_unmodified,
        m.dirs_new,
        m.dirs_changed,
        m.dirs_unmodified,
        output::bytes(m.data_added),
        output::bytes(m.data_added_packed),
        plural(files, "file", "files"),
        output::bytes(m.total_bytes_processed),
        secs,
    ))
}
