//! `cista rewrite` and `cista repair snapshots`: parse, call [`cista::ops::rewrite`], print
//! what restic prints (one block per snapshot, then how many were modified).

use std::path::PathBuf;

use anyhow::{Result, bail};
use cista::format::lock::LockMode;
use cista::format::snapshot::Snapshot;
use cista::id::SnapshotId;
use cista::ops::backup::Excludes;
use cista::ops::globs::Globs;
use cista::ops::rewrite::exclude::{self, RewriteOptions};
use cista::ops::rewrite::repair::{self, LostKind, RepairOptions};
use cista::ops::session::Session;
use clap::Args;
use serde_json::json;

use super::browse::FilterArgs;
use super::{Env, code, output};

#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// Remove entries matching this pattern, as backup's --exclude (repeatable).
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
    /// Remove the original snapshots after creating the new ones (else the new ones are
    /// tagged `rewrite`).
    #[arg(long)]
    forget: bool,
    /// Print what would be done; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Snapshots to rewrite (id prefixes or `latest`; default: all passing the filters).
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RepairSnapshotsArgs {
    /// Remove the original snapshots after creating the new ones (else the new ones are
    /// tagged `repaired`).
    #[arg(long)]
    forget: bool,
    /// Print what would be done; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Also read and verify every data blob (finds damage inside packs; cista's own flag).
    #[arg(long)]
    read_data: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Snapshots to repair (id prefixes or `latest`; default: all passing the filters).
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
}

/// Ctrl-C / SIGTERM stop the run at a safe point (nothing half-saved, the lock released);
/// a second signal exits at once, as for `backup`.
pub(super) fn stop_on_signals(env: &Env) -> Result<()> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(
            sig,
            code::INTERRUPTED.into(),
            env.cancel.clone(),
        )?;
        signal_hook::flag::register(sig, env.cancel.clone())?;
    }
    Ok(())
}

fn patterns(inline: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut p = inline.to_vec();
    for f in files {
        p.extend(Globs::read_pattern_file(f)?);
    }
    Ok(p)
}

/// restic's one-line description of a snapshot, heading its block.
fn heading(id: &SnapshotId, s: &Snapshot) -> String {
    format!(
        "snapshot {id} of [{}] at {} by {}@{}",
        s.paths.join(" "),
        output::short_time(s.time_unix_ns, s.tz_offset_s),
        s.username,
        s.hostname
    )
}

/// The lines after a snapshot's details: saved, removed, or what would be.
fn outcome_lines(
    out: &mut Vec<String>,
    new_id: Option<&SnapshotId>,
    old_id: &SnapshotId,
    dry_run: bool,
    forget: bool,
) {
    match (dry_run, new_id) {
        (true, _) => {
            out.push("would save new snapshot".into());
            if forget {
                out.push("would remove old snapshot".into());
            }
        }
        (false, Some(n)) => {
            out.push(format!("saved new snapshot {n}"));
            if forget {
                out.push(format!("removed old snapshot {old_id}"));
            }
        }
        (false, None) => {}
    }
}

fn total_line(modified: usize, dry_run: bool) -> String {
    match (modified, dry_run) {
        (0, false) => "no snapshots were modified".into(),
        (0, true) => "no snapshots would be modified".into(),
        (n, false) => format!("modified {n} snapshots"),
        (n, true) => format!("would modify {n} snapshots"),
    }
}

fn print(env: &Env, lines: &[String]) -> Result<()> {
    if env.quiet {
        return Ok(());
    }
    let mut out = output::Out::new();
    for l in lines {
        out.line(l)?;
    }
    out.finish()?;
    Ok(())
}

fn print_json(value: serde_json::Value) -> Result<()> {
    let mut out = output::Out::new();
    out.line(value)?;
    out.finish()?;
    Ok(())
}

/// The maintenance session rewriting commands run in; a dry run writes nothing and takes no
/// lock.
fn maintenance(env: &Env, dry_run: bool) -> Result<Session> {
    if dry_run {
        Ok(Session::unlocked(&env.open()?))
    } else {
        env.session_writing(LockMode::Maintenance)
    }
}

pub fn rewrite(env: &Env, a: RewriteArgs) -> Result<u8> {
    let excludes = Excludes {
        globs: Globs::new(&patterns(&a.excludes, &a.exclude_files)?)?,
        iglobs: Globs::new_case_insensitive(&patterns(&a.iexcludes, &a.iexclude_files)?)?,
        ..Excludes::default()
    };
    if excludes.globs.is_empty() && excludes.iglobs.is_empty() {
        bail!("nothing to do: give what to remove with --exclude, --iexclude or a pattern file");
    }
    let session = maintenance(env, a.dry_run)?;
    let opts = RewriteOptions {
        excludes,
        snapshots: a.snapshots,
        filter: a.filter.filter(),
        forget: a.forget,
        dry_run: a.dry_run,
    };
    stop_on_signals(env)?;
    let o = exclude::run(&session, &opts, &env.cancel)?;
    if env.json {
        let list: Vec<_> = o
            .snapshots
            .iter()
            .map(|r| {
                json!({
                    "original": r.old_id.to_hex(),
                    "snapshot": r.new_id.map(|i| i.to_hex()),
                    "modified": r.new.is_some(),
                    "excluded_count": r.excluded_count,
                    "excluded": r.excluded.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
                    "forgotten": r.new_id.is_some() && a.forget,
                })
            })
            .collect();
        print_json(json!({
            "dry_run": a.dry_run,
            "modified": o.modified(),
            "tree_blobs": o.tree_blobs,
            "snapshots": list,
        }))?;
        return Ok(code::OK);
    }
    let mut lines = Vec::new();
    for r in &o.snapshots {
        lines.push(String::new());
        lines.push(heading(&r.old_id, &r.old));
        for p in &r.excluded {
            lines.push(format!("excluding {}", p.display()));
        }
        let unlisted = r.excluded_count - r.excluded.len() as u64;
        if unlisted > 0 {
            lines.push(format!("... and {unlisted} more excluded"));
        }
        if r.new.is_some() {
            outcome_lines(
                &mut lines,
                r.new_id.as_ref(),
                &r.old_id,
                a.dry_run,
                a.forget,
            );
        }
    }
    lines.push(String::new());
    lines.push(total_line(o.modified(), a.dry_run));
    print(env, &lines)?;
    Ok(code::OK)
}

pub fn repair(env: &Env, a: RepairSnapshotsArgs) -> Result<u8> {
    let session = maintenance(env, a.dry_run)?;
    let opts = RepairOptions {
        snapshots: a.snapshots,
        filter: a.filter.filter(),
        forget: a.forget,
        dry_run: a.dry_run,
        read_data: a.read_data,
    };
    stop_on_signals(env)?;
    let o = repair::run(&session, &opts, &env.cancel)?;
    for r in &o.snapshots {
        if let Some(why) = &r.unreadable_root {
            output::warn(format_args!(
                "snapshot {}: its root tree cannot be read ({why}); nothing of it can be kept, so it was left as it is: remove it with `cista forget {}` if no copy of its data exists",
                r.old_id, r.old_id
            ));
        }
    }
    let exit = if o.unrepairable() > 0 {
        code::INCOMPLETE
    } else {
        code::OK
    };
    if env.json {
        let list: Vec<_> = o
            .snapshots
            .iter()
            .map(|r| {
                let lost: Vec<_> = r
                    .lost
                    .iter()
                    .map(|l| {
                        json!({
                            "path": l.path.to_string_lossy(),
                            "type": match l.kind { LostKind::File => "file", LostKind::Dir => "dir" },
                            "reason": l.reason,
                        })
                    })
                    .collect();
                json!({
                    "original": r.old_id.to_hex(),
                    "snapshot": r.new_id.map(|i| i.to_hex()),
                    "modified": r.new.is_some(),
                    "unreadable_root": r.unreadable_root,
                    "lost": lost,
                    "forgotten": r.new_id.is_some() && a.forget,
                })
            })
            .collect();
        print_json(json!({
            "dry_run": a.dry_run,
            "modified": o.modified(),
            "tree_blobs": o.tree_blobs,
            "snapshots": list,
        }))?;
        return Ok(exit);
    }
    let mut lines = Vec::new();
    for r in &o.snapshots {
        lines.push(String::new());
        lines.push(heading(&r.old_id, &r.old));
        for l in &r.lost {
            lines.push(match l.kind {
                LostKind::File => format!(
                    "  file {:?}: content lost ({}); now an empty file",
                    l.path, l.reason
                ),
                LostKind::Dir => format!(
                    "  dir {:?}: tree lost ({}); replaced with what could be read (an empty directory if nothing)",
                    l.path, l.reason
                ),
            });
        }
        if let Some(lost) = r.new.as_ref().and_then(|s| s.lost.as_ref()) {
            let unlisted = (lost.files + lost.dirs).saturating_sub(r.lost.len() as u64);
            let earlier = r.old.lost.as_ref().map_or(0, |l| l.files + l.dirs);
            if unlisted > earlier {
                lines.push(format!("  ... and {} more lost", unlisted - earlier));
            }
        }
        if r.new.is_some() {
            outcome_lines(
                &mut lines,
                r.new_id.as_ref(),
                &r.old_id,
                a.dry_run,
                a.forget,
            );
        }
    }
    lines.push(String::new());
    lines.push(total_line(o.modified(), a.dry_run));
    print(env, &lines)?;
    Ok(exit)
}
