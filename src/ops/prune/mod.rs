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
use crate::format::index::LockSession;
use crate::format::lock::LockMode;
use crate::id::PackId;
use crate::ops::CancelFlag;
use crate::ops::session::Session;
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

/// The sessions of the other live locks, and whether one of them is a version-2 lock of
/// unknown session (an older cista), which holds every deletion back.
fn sessions(lock: &LockGuard) -> Result<(HashSet<LockSession>, bool)> {
    let mut known = HashSet::new();
    let mut unknown = false;
    for l in lock.other_live_locks()? {
        match l.lock.session {
            Some(s) => {
                known.insert(s.id);
            }
            None => unknown = true,
        }
    }
    Ok((known, unknown))
}

/// Runs a prune in a session holding the maintenance lock (FORMAT §17), in the order of FORMAT §18
/// ("Retiring and deleting packs"); the step numbers below are that section's.
pub fn run(session: &Session, opts: &PruneOptions, cancel: &CancelFlag) -> Result<PruneReport> {
    let repo = session.repo();
    // A dry run only reads, so any lock will do; a real one needs the maintenance lock.
    let lock = match session.guard() {
        Some(g) if g.mode() == LockMode::Maintenance || opts.dry_run => g,
        _ => {
            return Err(Error::InvalidInput(
                "prune needs the maintenance lock (FORMAT §17)".into(),
            ));
        }
    };
    // 1. Sessions live before the snapshots are listed.
    let (known, unknown) = sessions(lock)?;
    // 2. Usage: snapshots, then the index, then the packs.
    let u = usage::measure(repo, cancel)?;
    // 3. Decide.
    let plan = plan::plan(&u.live, &u.obsolete, &known, unknown, &opts.plan);
    let mut report = PruneReport {
        stats: plan.stats.clone(),
        snapshots: u.snapshots,
        orphans_retired: u.orphans.len(),
        orphans_unreadable: u.orphans_unreadable.clone(),
        missing_dropped: u.missing_unneeded.len(),
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    let unarmed = u.obsolete.iter().any(|o| o.present && !o.armed);
    if opts.dry_run
        || (plan.is_empty() && u.orphans.is_empty() && u.missing_unneeded.is_empty() && !unarmed)
    {
        report.packs_waiting = plan.stats.obsolete_wait as usize;
        return Ok(report);
    }
    cancelled(cancel)?;

    // 4. Write: repacked blobs into new packs, then the index naming every pack's state,
    //    newly retired packs unarmed; then the old index files go.
    let repack: Vec<PackId> = plan.live_with(LiveAction::Repack).copied().collect();
    let (new_packs, packer_files) = write::repack(repo, &u, &repack, cancel)?;
    report.packs_written = new_packs.len();
    let now = lock.host().now_unix_ns();
    let unarmed_now = write::Disposition::Obsolete {
        marked_unix_ns: now,
        armed: false,
        waiting_for: Vec::new(),
    };
    let mut ip = write::IndexPlan::default();
    for id in plan.live_with(LiveAction::Retire).chain(&repack) {
        ip.packs.insert(*id, unarmed_now.clone());
    }
    for id in &u.missing_unneeded {
        ip.packs.insert(*id, write::Disposition::Drop);
    }
    for (id, action) in &plan.obsolete {
        match action {
            ObsoleteAction::Resurrect => {
                ip.packs.insert(*id, write::Disposition::Live);
            }
            ObsoleteAction::Forget => {
                ip.packs.insert(*id, write::Disposition::Drop);
            }
            ObsoleteAction::Wait | ObsoleteAction::Delete => {}
        }
    }
    for o in &u.orphans {
        ip.extra.push((o.id, o.blobs.clone(), unarmed_now.clone()));
    }
    for p in &new_packs {
        ip.extra
            .push((p.id, p.blobs.clone(), write::Disposition::Live));
    }
    let first = write::write_index(repo, &u, &ip, &u.index_files)?;
    report.index_written += first.len();
    report.index_removed += write::remove_index_files(repo, &u.index_files)?;
    cancelled(cancel)?;

    // 5. Arm: every process that could have seen a newly retired pack live wrote its lock
    //    before the files naming it live were deleted, so it is listed now.
    let (after, after_unknown) = sessions(lock)?;
    // Deleting at once is safe only if no process could have seen them live: none is running
    // now, and none committed anything since the snapshots were listed (a backup that began
    // after step 1 and ended before this listing left a snapshot or an index file behind).
    // Else they wait for a later prune, whose usage is measured after these sessions end.
    let nobody = after.is_empty()
        && !after_unknown
        && nothing_committed_since(repo, &u, &[&first[..], &packer_files[..]].concat())?;
    let waiting_for: Vec<LockSession> = after.into_iter().collect();
    let armed_now = write::Disposition::Obsolete {
        marked_unix_ns: now,
        armed: true,
        waiting_for: waiting_for.clone(),
    };
    let mut delete: Vec<PackId> = plan
        .obsolete_with(ObsoleteAction::Delete)
        .copied()
        .collect();
    // To arm: this run's retirements and any a crashed prune left unarmed.
    let mut to_arm: Vec<PackId> = ip
        .packs
        .iter()
        .filter(|(_, d)| **d == unarmed_now)
        .map(|(id, _)| *id)
        .chain(
            ip.extra
                .iter()
                .filter(|(.., d)| *d == unarmed_now)
                .map(|(id, ..)| *id),
        )
        .collect();
    to_arm.extend(
        u.obsolete
            .iter()
            .filter(|o| o.present && !o.armed)
            .filter(|o| !matches!(ip.packs.get(&o.id), Some(write::Disposition::Live)))
            .map(|o| o.id),
    );
    if nobody {
        delete.extend(to_arm.iter().copied());
    } else {
        for id in &to_arm {
            set_disposition(&mut ip, id, armed_now.clone());
        }
    }

    // 6. Delete what is due, then write the index without it.
    lock.ensure_fresh()?;
    let deleted = delete_packs(repo, &delete)?;
    report.packs_deleted = deleted.len();
    for id in &deleted {
        set_disposition(&mut ip, id, write::Disposition::Drop);
    }
    let second = write::write_index(repo, &u, &ip, &first)?;
    report.index_written += second.len();
    report.index_removed += write::remove_index_files(repo, &first)?;
    let waiting_old = plan
        .obsolete
        .iter()
        .zip(&u.obsolete)
        .filter(|((_, a), o)| *a == ObsoleteAction::Wait && o.armed)
        .count();
    report.packs_waiting = waiting_old + if nobody { 0 } else { to_arm.len() };
    report.waiting_for_sessions = if nobody { 0 } else { waiting_for.len() };
    Ok(report)
}

/// Whether the snapshots are those `u` listed and the index files only `ours`: nothing was
/// committed beside this prune since it measured usage.
fn nothing_committed_since(
    repo: &Repository,
    u: &usage::Usage,
    ours: &[crate::id::IndexId],
) -> Result<bool> {
    let snapshots: HashSet<crate::id::SnapshotId> = repo
        .backend()
        .list(FileType::Snapshot)?
        .into_iter()
        .map(|(id, _)| crate::id::SnapshotId(id))
        .collect();
    if snapshots != u.snapshot_ids {
        return Ok(false);
    }
    let ours: HashSet<&crate::id::IndexId> = ours.iter().collect();
    Ok(repo
        .backend()
        .list(FileType::Index)?
        .iter()
        .all(|(id, _)| ours.contains(&crate::id::IndexId(*id))))
}

/// Sets a pack's disposition, whether it comes from the loaded index or is an extra.
fn set_disposition(ip: &mut write::IndexPlan, id: &PackId, d: write::Disposition) {
    if let Some(e) = ip.extra.iter_mut().find(|(p, ..)| p == id) {
        e.2 = d;
    } else {
        ip.packs.insert(*id, d);
    }
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
    let results: Vec<(
        PackId,
        std::result::Result<(), crate::backend::BackendError>,
    )> = packs
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
