//! `prune`: parse restic's flags, run `ops::prune` under the maintenance lock, print the plan
//! in restic's words (and `--json`).

use anyhow::Result;
use cista::ops::prune::{self, MaxUnused, PlanOptions, PruneOptions, PruneReport};
use cista::ops::session::Session;
use clap::Args;
use serde_json::json;

use super::{Env, code, output};

/// prune's options other than `--dry-run` (also taken by `forget --prune`).
#[derive(Debug, Args, Clone)]
pub struct PruneFlags {
    /// Tolerate this much unused space after pruning: a percentage of the repository (5%),
    /// a size (500m) or `unlimited`.
    #[arg(long, default_value = "5%", value_parser = MaxUnused::parse)]
    pub max_unused: MaxUnused,
    /// Read at most this much for repacking (suffixes k, m, g, t).
    #[arg(long, visible_alias = "max-repack", value_parser = parse_size)]
    pub max_repack_size: Option<u64>,
    /// Also merge packs smaller than half the pack size.
    #[arg(long)]
    pub repack_small: bool,
    /// Only repack packs of trees (the metadata every command reads).
    #[arg(long)]
    pub repack_cacheable_only: bool,
}

#[derive(Debug, Args, Clone)]
pub struct PruneArgs {
    #[command(flatten)]
    pub flags: PruneFlags,
    /// Print what would be done, change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    cista::ops::backup::parse_size(s).map_err(|e| e.to_string())
}

pub fn run(env: &Env, a: PruneArgs) -> Result<u8> {
    // A dry run reads only (and must not upgrade the format): a shared lock is enough.
    let session = if a.dry_run {
        env.session(cista::format::lock::LockMode::Shared)?
    } else {
        env.session_writing(cista::format::lock::LockMode::Maintenance)?
    };
    let report = prune_in(env, &session, &a.flags, a.dry_run)?;
    print(env, &report)?;
    Ok(code::OK)
}

/// Prunes in a session the caller holds (`forget --prune` holds one across both).
pub fn prune_in(
    env: &Env,
    session: &Session,
    a: &PruneFlags,
    dry_run: bool,
) -> Result<PruneReport> {
    let repo = session.repo();
    let opts = PruneOptions {
        plan: PlanOptions {
            max_unused: a.max_unused,
            max_repack_bytes: a.max_repack_size,
            repack_small: a.repack_small,
            repack_cacheable_only: a.repack_cacheable_only,
            pack_size: u64::from(repo.config().pack_size),
        },
        dry_run,
    };
    Ok(prune::run(session, &opts, &env.cancel)?)
}

/// Prints the report: restic's lines (`to repack`, `this removes`, `to delete`, `total
/// prune`, `remaining`, `unused size after prune`), then what waits for running processes.
pub fn print(env: &Env, r: &PruneReport) -> Result<()> {
    let s = &r.stats;
    let blobs_bytes = |b: u64, n: u64| format!("{b} blobs / {}", output::bytes(n));
    if env.json {
        let mut out = output::Out::new();
        out.line(json!({
            "message_type": "prune",
            "dry_run": r.dry_run,
            "snapshots": r.snapshots,
            "used_blobs": s.used_blobs, "used_size": s.used_bytes,
            "unused_blobs": s.unused_blobs, "unused_size": s.unused_bytes,
            "packs_keep": s.packs_keep, "packs_repack": s.packs_repack, "packs_retire": s.packs_retire,
            "repack_size": s.repack_bytes, "repack_freed_size": s.repack_freed_bytes,
            "retire_size": s.retire_bytes,
            "unused_size_after": s.unused_after(),
            "orphans_retired": r.orphans_retired,
            "orphans_unreadable": r.orphans_unreadable.iter().map(|(p, why)| json!({"pack": p.to_string(), "error": why})).collect::<Vec<_>>(),
            "obsolete_deleted": s.obsolete_delete, "obsolete_deleted_size": s.obsolete_delete_bytes,
            "obsolete_waiting": s.obsolete_wait, "obsolete_resurrected": s.obsolete_resurrect,
            "packs_written": r.packs_written, "packs_deleted": r.packs_deleted,
            "packs_waiting": r.packs_waiting, "waiting_for_processes": r.waiting_for_sessions,
            "index_files_written": r.index_written, "index_files_removed": r.index_removed,
        }))?;
        out.finish()?;
        return Ok(());
    }
    for (p, why) in &r.orphans_unreadable {
        output::warn(format_args!(
            "warning: pack {p} is named by no index and its header cannot be read ({why}); left alone: run `cista check --read-data`"
        ));
    }
    let total = s.used_bytes + s.unused_bytes;
    let remaining = total.saturating_sub(s.repack_freed_bytes + s.retire_bytes);
    let lines = [
        format!("used:         {}", blobs_bytes(s.used_blobs, s.used_bytes)),
        format!(
            "unused:       {}",
            blobs_bytes(s.unused_blobs, s.unused_bytes)
        ),
        format!("total:        {}", output::bytes(total)),
        String::new(),
        format!(
            "to repack:    {} in {}",
            output::bytes(s.repack_bytes),
            output::count(s.packs_repack, "pack", "packs")
        ),
        format!("this removes: {}", output::bytes(s.repack_freed_bytes)),
        format!(
            "to delete:    {} in {}",
            output::bytes(s.retire_bytes),
            output::count(s.packs_retire, "unused pack", "unused packs")
        ),
        format!(
            "total prune:  {}",
            output::bytes(s.repack_freed_bytes + s.retire_bytes)
        ),
        format!("remaining:    {}", output::bytes(remaining)),
        format!(
            "unused size after prune: {} ({:.2}% of remaining size)",
            output::bytes(s.unused_after()),
            if remaining == 0 {
                0.0
            } else {
                s.unused_after() as f64 * 100.0 / remaining as f64
            }
        ),
    ];
    for l in lines {
        env.info(l)?;
    }
    if r.orphans_retired > 0 {
        env.info(format_args!(
            "{} named by no index retired (left by interrupted backups)",
            output::count(r.orphans_retired as u64, "pack", "packs")
        ))?;
    }
    if r.dry_run {
        env.info("dry run: nothing was changed")?;
        return Ok(());
    }
    env.info(format_args!(
        "repacked into {}; deleted {} ({} retired earlier)",
        output::count(r.packs_written as u64, "new pack", "new packs"),
        output::count(r.packs_deleted as u64, "pack", "packs"),
        s.obsolete_delete
    ))?;
    if r.packs_waiting > 0 {
        env.info(format_args!(
            "{} retired and kept until {} running now {} finished (the next prune deletes them)",
            output::count(r.packs_waiting as u64, "pack is", "packs are"),
            output::count(r.waiting_for_sessions as u64, "process", "processes"),
            if r.waiting_for_sessions == 1 {
                "has"
            } else {
                "have"
            }
        ))?;
    }
    if s.obsolete_resurrect > 0 {
        env.info(format_args!(
            "{} retired earlier still held data a snapshot needs and {} kept",
            output::count(s.obsolete_resurrect, "pack", "packs"),
            if s.obsolete_resurrect == 1 {
                "is"
            } else {
                "are"
            }
        ))?;
    }
    env.info("done")?;
    Ok(())
}
