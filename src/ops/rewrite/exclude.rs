//! `rewrite`: removes files from existing snapshots by backup's exclude patterns (a secret
//! backed up by mistake, a document a court ordered erased), with restic's semantics: each
//! snapshot in which something matches gets a new snapshot without it (tagged `rewrite`, or
//! replacing the old one with `forget`); a snapshot in which nothing matches is left alone.
//! The bytes are freed by a later prune, never here.

use std::path::{Path, PathBuf};

use super::{Decision, NodeFilter, TreeStore, commit, replacement, rewrite_tree, select};
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Node;
use crate::id::SnapshotId;
use crate::ops::CancelFlag;
use crate::ops::backup::Excludes;
use crate::ops::find::SnapshotFilter;
use crate::ops::session::Session;

/// Most removed paths kept per snapshot for the report (the count stays exact).
pub const MAX_LISTED: usize = 100_000;

/// The tag restic adds to a rewritten snapshot when the old one is kept.
pub const REWRITE_TAG: &str = "rewrite";

/// What to rewrite and how.
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    /// Entries whose absolute path matches are removed with everything below them.
    pub excludes: Excludes,
    /// Snapshot id prefixes or `latest`; empty: every snapshot passing `filter`.
    pub snapshots: Vec<String>,
    /// `--host`, `--tag`, `--path`.
    pub filter: SnapshotFilter,
    /// Delete each old snapshot once its replacement is saved (else tag the new one).
    pub forget: bool,
    /// Walk and report, write nothing (no lock, no blob, no snapshot).
    pub dry_run: bool,
}

/// What happened to one snapshot.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The snapshot as it was.
    pub old_id: SnapshotId,
    /// Its contents.
    pub old: Snapshot,
    /// How many entries were removed from it (each with what was below it).
    pub excluded_count: u64,
    /// Their paths in walk order, the first [`MAX_LISTED`].
    pub excluded: Vec<PathBuf>,
    /// The replacement (as it would be in a dry run); `None` when nothing matched.
    pub new: Option<Snapshot>,
    /// The replacement's id, once saved.
    pub new_id: Option<SnapshotId>,
}

/// The outcome of a rewrite run, snapshot by snapshot (oldest first).
#[derive(Debug, Clone, Default)]
pub struct RewriteOutcome {
    /// Every snapshot considered.
    pub snapshots: Vec<Rewritten>,
    /// Tree blobs written (or that would be).
    pub tree_blobs: u64,
}

impl RewriteOutcome {
    /// Snapshots that were (or would be) replaced.
    pub fn modified(&self) -> usize {
        self.snapshots.iter().filter(|s| s.new.is_some()).count()
    }
}

struct ExcludeFilter<'a> {
    excludes: &'a Excludes,
    count: u64,
    excluded: Vec<PathBuf>,
}

impl NodeFilter for ExcludeFilter<'_> {
    fn entry(&mut self, path: &Path, _node: &Node) -> Result<Decision> {
        if self.excludes.is_excluded(path) {
            self.count += 1;
            if self.excluded.len() < MAX_LISTED {
                self.excluded.push(path.to_path_buf());
            }
            Ok(Decision::Drop)
        } else {
            Ok(Decision::Keep)
        }
    }
}

/// Rewrites the chosen snapshots without the excluded paths. Plans every snapshot first (new
/// trees stored and indexed), then saves the new snapshots, then forgets the old ones.
///
/// `session` holds the maintenance lock (none for a dry run, which writes nothing): restic
/// takes an append lock without `--forget`, but the new snapshots' `original` field needs
/// format 3, which only a maintenance session upgrades to.
pub fn run(
    session: &Session,
    opts: &RewriteOptions,
    cancel: &CancelFlag,
) -> Result<RewriteOutcome> {
    let repo = session.repo();
    let chosen = select(repo, &opts.snapshots, &opts.filter)?;
    let index = repo.load_index()?;
    let mut store = TreeStore::new(repo, &index, opts.dry_run, cancel)?;
    let mut out = RewriteOutcome::default();
    for (old_id, old) in chosen {
        let mut f = ExcludeFilter {
            excludes: &opts.excludes,
            count: 0,
            excluded: Vec::new(),
        };
        let new = rewrite_tree(repo, &index, &mut store, &old.tree, &mut f)?.map(|t| {
            let tag = (!opts.forget).then_some(REWRITE_TAG);
            let mut s = replacement(old_id, &old, t.tree, tag);
            // restic records the rewritten tree's totals; the rest of the summary describes
            // the backup that made the data.
            s.summary.total_files_processed = t.files;
            s.summary.total_bytes_processed = t.bytes;
            s
        });
        out.snapshots.push(Rewritten {
            old_id,
            old,
            excluded_count: f.count,
            excluded: f.excluded,
            new,
            new_id: None,
        });
    }
    out.tree_blobs = store.tree_blobs;
    store.finish()?;
    if opts.dry_run {
        return Ok(out);
    }
    let planned = out
        .snapshots
        .iter()
        .filter_map(|r| r.new.clone().map(|s| (r.old_id, s)))
        .collect();
    for (old, new) in commit(session, planned, opts.forget, cancel)? {
        if let Some(r) = out.snapshots.iter_mut().find(|r| r.old_id == old) {
            r.new_id = Some(new);
        }
    }
    Ok(out)
}
