//! Prune: remove what no snapshot needs, without ever making a backup wait for it or lose a
//! blob it reused (FORMAT §18, "Retiring and deleting packs"). The decision is the pure
//! [`plan`]; this module gathers its inputs (sessions, usage, pack listing), carries it out in
//! the protocol's order, and reports what it did. It never prints.
//!
//! Memory: the index ([`crate::repo::Index`], ≤ 48 bytes per blob), one bit per index entry
//! for "used", the pack table, the tree cache of the walk, and one index file being written
//! (index files are streamed out, never built whole).

pub mod plan;
mod usage;
mod write;

use std::collections::HashSet;

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::index::{IndexPack, LockSession, ObsoletePack};
use crate::id::{IndexId, PackId};
use crate::ops::CancelFlag;
use crate::repo::Repository;
use crate::repo::lock::LockGuard;

pub use plan::{LiveAction, MaxUnused, ObsoleteAction, Plan, PlanOptions, PlanStats};

/// Options of a prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// What to repack and what to tolerate.
    pub plan: PlanOptions,
    /// Decide and report, change nothing.
    pub dry_run: bool,
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// The plan's totals.
    pub stats: PlanStats,
    /// Snapshots whose trees were walked.
    pub snapshots: usize,
    /// Orphan packs (named by no index file) retired.
    pub orphans_retired: usize,
    /// Orphan packs whose header could not be read: left alone, reported.
    pub orphans_unreadable: Vec<(PackId, String)>,
    /// Live packs named by the index but missing from storage that nothing needed: dropped.
    pub missing_dropped: usize,
    /// New packs written by repacking.
    pub packs_written: usize,
    /// Packs deleted from storage.
    pub packs_deleted: usize,
    /// Retired packs (this run's and earlier ones) that wait for running processes.
    pub packs_waiting: usize,
    /// Running processes (lock sessions) the waiting packs wait for.
    pub waiting_for_sessions: usize,
    /// Index files written and removed.
    pub index_written: usize,
    /// See `index_written`.
    pub index_removed: usize,
    /// Whether nothing was changed because `dry_run` was set.
    pub dry_run: bool,
}

/// Runs a prune under `lock` (a maintenance lock, FORMAT §17).
pub fn run(
    repo: &Repository,
    lock: &LockGuard,
    opts: &PruneOptions,
    cancel: &CancelFlag,
) -> Result<PruneReport> {
    // 1. Sessions live before the snapshots are listed.
    let sessions = lock.other_sessions()?;
    // 2. Usage: snapshots, then the index, then the packs.
    let u = usage::measure(repo, cancel)?;
    let mut report = PruneReport {
        snapshots: u.snapshots,
        orphans_unreadable: u.orphans_unreadable.clone(),
        missing_dropped: u.missing_unneeded.len(),
        ..PruneReport::default()
    };
    // 3. Decide.
    let plan = plan::plan(
        &u.live,
        &u.obsolete,
        &sessions.known,
        sessions.unknown,
        &opts.plan,
    );
    report.stats = plan.stats.clone();
    report.orphans_retired = u.orphans.len();
    if opts.dry_run {
        report.dry_run = true;
        report.packs_waiting = plan.stats.packs_retire as usize
            + plan.stats.packs_repack as usize
            + u.orphans.len();
        return Ok(report);
    }
    let nothing_to_do = plan.is_empty() && u.orphans.is_empty() && u.missing_unneeded.is_empty();
    if nothing_to_do {
        return Ok(report);
    }
    cancelled(cancel)?;

    // 4. Write: repacked blobs into new packs, then the index naming every pack's state.
    let repack: Vec<PackId> = plan.live_with(LiveAction::Repack).copied().collect();
    let new_packs = write::repack(repo, &u, &repack, cancel)?;
    report.packs_written = new_packs.len();
    let now = lock.now_unix_ns();
    let retired: HashSet<PackId> = plan
        .live_with(LiveAction::Retire)
        .chain(repack.iter())
        .copied()
        .chain(u.orphans.iter().map(|o| o.id))
        .collect();
    let resurrect: HashSet<PackId> = plan
        .obsolete_with(ObsoleteAction::Resurrect)
        .copied()
        .collect();
    let forget: HashSet<PackId> = plan
        .obsolete_with(ObsoleteAction::Forget)
        .copied()
        .chain(u.missing_unneeded.iter().copied())
        .collect();
    let due_old: Vec<PackId> = plan
        .obsolete_with(ObsoleteAction::Delete)
        .copied()
        .collect();

    let mut state = write::IndexState {
        live: Vec::new(),
        obsolete: Vec::new(),
    };
    for p in u.index.live_packs() {
        if !retired.contains(&p) && !forget.contains(&p) {
            state.live.push(write::LiveSource::Index(p));
        }
    }
    state
        .live
        .extend(new_packs.iter().cloned().map(write::LiveSource::New));
    for o in &u.obsolete_records {
        if resurrect.contains(&o.id) {
            state.live.push(write::LiveSource::New(IndexPack {
                id: o.id,
                blobs: o.blobs.clone(),
            }));
        } else if !forget.contains(&o.id) {
            state.obsolete.push(write::Obsolete {
                record: o.clone(),
                from_index: false,
            });
        }
    }
    let retire = |id: PackId, blobs: Vec<crate::format::pack::PackEntry>, from_index: bool| {
        write::Obsolete {
            record: ObsoletePack {
                id,
                marked_unix_ns: now,
                armed: false,
                waiting_for: Vec::new(),
                blobs,
            },
            from_index,
        }
    };
    for p in u.index.live_packs() {
        if retired.contains(&p) {
            state.obsolete.push(retire(p, Vec::new(), true));
        }
    }
    for o in &u.orphans {
        state.obsolete.push(retire(o.id, o.blobs.clone(), false));
    }
    // Every index file loaded is replaced. The files the repack's packer wrote name only the
    // new packs, live: they stay, and the next prune replaces them.
    let supersede: Vec<IndexId> = u.index_files.clone();
    let first = write::write_index(repo, &u.index, &state, &supersede)?;
    report.index_written += first.len();
    report.index_removed += write::remove_index_files(repo, &supersede)?;
    cancelled(cancel)?;

    // 5. Arm: every process that could have seen the retired packs live is running now.
    let after = lock.other_sessions()?;
    let newly_due = after.known.is_empty() && !after.unknown;
    let waiting_for: Vec<LockSession> = after.known.iter().copied().collect();
    let mut delete: Vec<PackId> = due_old;
    // Arming covers the packs retired now and any a crashed prune left unarmed: a process
    // that saw either live wrote its lock before the index naming it live was deleted, which
    // is before this listing.
    for o in state.obsolete.iter_mut() {
        let o = &mut o.record;
        if retired.contains(&o.id) || !o.armed {
            if newly_due {
                delete.push(o.id);
            } else {
                o.armed = true;
                o.waiting_for = waiting_for.clone();
            }
        }
    }

    // 6. Delete what is due, then write the index without it.
    lock.ensure_fresh()?;
    let deleted = delete_packs(repo, &delete)?;
    report.packs_deleted = deleted.len();
    let gone: HashSet<PackId> = delete.iter().copied().collect();
    state.obsolete.retain(|o| !gone.contains(&o.record.id));
    report.packs_waiting = state.obsolete.len();
    report.waiting_for_sessions = if newly_due { 0 } else { waiting_for.len() };
    let second = write::write_index(repo, &u.index, &state, &first)?;
    report.index_written += second.len();
    report.index_removed += write::remove_index_files(repo, &first)?;
    Ok(report)
}

fn cancelled(cancel: &CancelFlag) -> Result<()> {
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Deletes packs; one already gone counts as deleted (a crashed prune's work).
fn delete_packs(repo: &Repository, packs: &[PackId]) -> Result<Vec<PackId>> {
    use rayon::prelude::*;
    let results: Vec<(PackId, std::result::Result<(), crate::backend::BackendError>)> = packs
        .par_iter()
        .map(|p| (*p, repo.backend().delete(FileType::Pack, &p.0)))
        .collect();
    let mut done = Vec::new();
    for (p, r) in results {
        match r {
            Ok(()) => done.push(p),
            Err(e) if e.kind == crate::backend::ErrorKind::NotFound => done.push(p),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}
