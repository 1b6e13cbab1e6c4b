//! `backup`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Result;
use cista::id::SnapshotId;
use cista::ops::backup::{self, BackupOptions, Excludes, Source};
use cista::ops::globs::Globs;
use clap::Args;
use serde_json::json;

use super::progress::Reporter;
use super::{Env, code, output};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up (with --stdin-from-command: the command and its arguments).
    args: Vec<String>,
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
    /// Exclude paths matching this pattern (repeatable).
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    excludes: Vec<String>,
    /// Read exclude patterns from a file (repeatable).
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_files: Vec<PathBuf>,
    /// Exclude directories containing an entry with this name (repeatable).
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    exclude_if_present: Vec<String>,
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
}

/// Sums file sizes below the sources so the progress line can show an ETA.
fn scan_total(paths: &[PathBuf], reporter: &Reporter) {
    fn walk(p: &std::path::Path, total: &mut u64) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return;
        };
        if m.is_file() {
            *total += m.len();
        } else if m.is_dir()
            && let Ok(rd) = std::fs::read_dir(p)
        {
            for e in rd.flatten() {
                walk(&e.path(), total);
            }
        }
    }
    let mut total = 0;
    for p in paths {
        walk(p, &mut total);
    }
    reporter.set_total(total);
}

pub fn run(env: &Env, a: BackupArgs) -> Result<u8> {
    let source = if a.stdin_from_command {
        if a.args.is_empty() {
            anyhow::bail!("--stdin-from-command needs a command after `--`");
        }
        Source::Command {
            name: a.stdin_filename.clone(),
            argv: a.args.clone(),
        }
    } else if a.stdin {
        if !a.args.is_empty() {
            anyhow::bail!("--stdin takes no paths");
        }
        Source::Stdin {
            name: a.stdin_filename.clone(),
        }
    } else {
        if a.args.is_empty() {
            anyhow::bail!("nothing to back up: give paths, --stdin or --stdin-from-command");
        }
        Source::Paths(a.args.iter().map(PathBuf::from).collect())
    };
    let mut patterns = a.excludes.clone();
    for f in &a.exclude_files {
        patterns.extend(Globs::read_pattern_file(f)?);
    }
    // Ctrl-C / SIGTERM ask the backup to stop at a safe point (uploaded packs are indexed, no
    // snapshot is written); a second signal exits at once. Other commands keep the default.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(
            sig,
            code::INTERRUPTED.into(),
            env.cancel.clone(),
        )?;
        signal_hook::flag::register(sig, env.cancel.clone())?;
    }
    let repo = env.open()?;
    let parent = match &a.parent {
        Some(spec) => Some(cista::ops::find::snapshot(&repo, spec, &Default::default())?.0),
        None => None,
    };
    let opts = BackupOptions {
        excludes: Excludes {
            globs: Globs::new(&patterns)?,
            if_present: a.exclude_if_present.clone(),
        },
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
    };
    let reporter = Reporter::start("backed up", env.quiet || env.json);
    let scanner_paths = match &source {
        Source::Paths(p) => p.clone(),
        _ => Vec::new(),
    };
    let mut stdin = std::io::stdin();
    let stdin_reader: Option<&mut (dyn Read + Send)> =
        if a.stdin { Some(&mut stdin) } else { None };
    let outcome = std::thread::scope(|s| {
        // Only a visible status line needs the total; otherwise the scan is wasted I/O.
        if !scanner_paths.is_empty() && reporter.is_active() {
            s.spawn(|| scan_total(&scanner_paths, &reporter));
        }
        backup::run(&repo, source, stdin_reader, &opts, &reporter, &env.cancel)
    });
    reporter.finish();
    let outcome = outcome?;
    print_summary(env, &outcome.id, &outcome.snapshot)?;
    if outcome.snapshot.incomplete {
        output::warn(format_args!(
            "warning: {} source entries could not be read; snapshot {} is incomplete",
            outcome.snapshot.summary.errors, outcome.id
        ));
        return Ok(code::INCOMPLETE);
    }
    Ok(code::OK)
}

fn print_summary(
    env: &Env,
    id: &SnapshotId,
    s: &cista::format::snapshot::Snapshot,
) -> std::io::Result<()> {
    let m = &s.summary;
    let secs = (m.backup_end_ns - m.backup_start_ns) as f64 / 1e9;
    if env.json {
        let mut out = output::Out::new();
        out.line(json!({
                "message_type": "summary",
                "files_new": m.files_new,
                "files_changed": m.files_changed,
                "files_unmodified": m.files_unmodified,
                "dirs_new": m.dirs_new,
                "dirs_changed": m.dirs_changed,
                "dirs_unmodified": m.dirs_unmodified,
                "data_blobs": m.blobs_added,
                "data_added": m.data_added,
                "data_added_packed": m.data_added_packed,
                "total_files_processed": m.total_files_processed,
                "total_bytes_processed": m.total_bytes_processed,
                "total_duration": secs,
                "snapshot_id": id.to_hex(),
                "incomplete": s.incomplete,
                "errors": m.errors,
        }))?;
        return out.finish();
    }
    env.info(format_args!(
        "Files:       {} new, {} changed, {} unmodified\nDirs:        {} new, {} changed, {} unmodified\nAdded:       {} ({} stored)\nProcessed:   {} files, {} in {:.2}s\nsnapshot {} saved",
        m.files_new,
        m.files_changed,
        m.files_unmodified,
        m.dirs_new,
        m.dirs_changed,
        m.dirs_unmodified,
        output::bytes(m.data_added),
        output::bytes(m.data_added_packed),
        m.total_files_processed,
        output::bytes(m.total_bytes_processed),
        secs,
        id
    ))
}
