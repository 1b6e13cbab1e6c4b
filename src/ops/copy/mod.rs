//! Copying snapshots into another repository (restic's `copy`), incrementally: only blobs
//! the target lacks are moved, snapshots already there are skipped ([`plan`]), and an
//! interrupted copy resumes from what it uploaded (packs indexed every
//! [`PACKS_PER_INDEX`] packs; packs uploaded but not yet indexed are adopted, once verified,
//! as a backup adopts them).
//!
//! Two ways to move content, chosen by whether the repositories share their content keys
//! (`init --copy-chunker-params-from`, docs/FORMAT.md §9): [`transfer`] re-seals blobs from
//! source pack ranges under the same ids, trees unchanged; [`rechunk`] reads file contents,
//! cuts and names them for the target and writes new trees.
//!
//! Ordering (docs/FORMAT.md §18, "Copy"): a target snapshot is written only after the packer
//! that stored its blobs has finished, that is after every pack it needs is durable and
//! indexed, and only on a fresh lock. Snapshots are committed in batches of about
//! [`BATCH_PACKS`] packs, so many small snapshots do not each leave two small packs.
//!
//! Locks: shared on the source (it only reads), shared on the target (it adds, as a backup
//! does); a dry run takes none and writes nothing to either.
//!
//! Memory: the two indexes, one id per blob moved in this run (as a backup's claim set), the
//! mover's or rechunker's own bound (see their headers) and the packer's (docs/DESIGN.md,
//! "Memory bound").

pub mod plan;
pub mod ranges;
mod rechunk;
mod transfer;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::config::REPO_FORMAT_VERSION;
use crate::format::lock::LockMode;
use crate::format::snapshot::{MAX_SNAPSHOT_LEN, Snapshot};
use crate::host::Host;
use crate::id::SnapshotId;
use crate::ops::find::SnapshotFilter;
use crate::ops::session::{LockOptions, Session};
use crate::ops::{CancelFlag, Progress};
use crate::repo::Repository;
use crate::repo::packer::Packer;
pub use plan::{Action, Planned};

/// A copy writes an index file after this many packs: an interrupted copy then leaves at most
/// this many packs to adopt, each read back whole from the target (a download, remotely).
pub const PACKS_PER_INDEX: usize = 8;
/// Snapshots are committed once the blobs stored since the last commit fill about this many
/// packs (and at the end).
pub const BATCH_PACKS: u64 = 16;

/// What to copy and how.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Snapshot id prefixes or `latest`; empty: every snapshot passing `filter`.
    pub snapshots: Vec<String>,
    /// `--host`, `--tag`, `--path`.
    pub filter: SnapshotFilter,
    /// Move nothing, write nothing, take no lock: report what would be copied.
    pub dry_run: bool,
    /// How to wait for the locks (`no_lock` is refused: a copy writes).
    pub lock: LockOptions,
    /// Ranged reads of the source in flight at once (the source's `-o connections`); 0:
    /// [`transfer::READERS`].
    pub reads_in_flight: usize,
}

/// What a copy moved (or, in a dry run, would move).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Data blobs stored in the target.
    pub data_blobs: u64,
    /// Tree blobs stored in the target.
    pub tree_blobs: u64,
    /// Their plaintext bytes.
    pub bytes_raw: u64,
    /// Their sealed bytes: what the target's packs grew by, before pack headers and padding.
    pub bytes_sealed: u64,
    /// Bytes read from the source's packs (coalesced ranges, or whole blobs when
    /// re-chunking); trees read for the walk are not counted.
    pub bytes_read: u64,
    /// Read requests for those bytes.
    pub read_requests: u64,
    /// Read requests for the trees walked (with shared keys; without, the rewrite walk reads
    /// each tree on its own and they are not counted).
    pub tree_requests: u64,
    /// Files whose content was re-chunked (without shared keys).
    pub files_rechunked: u64,
    /// Packs written to the target.
    pub packs_written: u64,
    /// Packs an interrupted copy (or backup) had uploaded without indexing, adopted.
    pub packs_adopted: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    bytes_raw: AtomicU64,
    bytes_sealed: AtomicU64,
    bytes_read: AtomicU64,
    read_requests: AtomicU64,
    tree_requests: AtomicU64,
    files_rechunked: AtomicU64,
    packs_written: AtomicU64,
    packs_adopted: AtomicU64,
}

/// The result of a copy.
#[derive(Debug)]
pub struct CopyOutcome {
    /// Whether the repositories share content keys (blobs moved under their ids).
    pub shared_keys: bool,
    /// Every selected source snapshot and what was decided for it, oldest first.
    pub planned: Vec<Planned>,
    /// `(source, target)` of each snapshot copied, in order; empty in a dry run.
    pub copied: Vec<(SnapshotId, SnapshotId)>,
    /// What was moved.
    pub stats: CopyStats,
}

/// Copies the selected snapshots of `source` into `target` (see the module header). A target
/// below format 3 is refused: its copies record `original`, which older readers do not know.
pub fn run(
    source: &Repository,
    target: &Repository,
    opts: &CopyOptions,
    progress: &dyn Progress,
    cancel: &CancelFlag,
) -> Result<CopyOutcome> {
    if target.config().format_version < REPO_FORMAT_VERSION {
        return Err(Error::InvalidInput(format!(
            "the target repository is format {}; copies record `original`, which needs format {REPO_FORMAT_VERSION}: upgrade it first with a maintenance command such as `cista -r TARGET prune`",
            target.config().format_version
        )));
    }
    if source.id_hex() == target.id_hex() {
        return Err(Error::InvalidInput(
            "the source and the target are the same repository".into(),
        ));
    }
    let (src_session, dst_session) = if opts.dry_run {
        (Session::unlocked(source), Session::unlocked(target))
    } else {
        let lock = LockOptions {
            no_lock: false,
            ..opts.lock.clone()
        };
        let host = Host::this_process();
        let s = Session::open(
            source,
            LockMode::Shared,
            &lock,
            &host,
            progress,
            Some(cancel),
        )?;
        let t = Session::open(
            target,
            LockMode::Shared,
            &lock,
            &host,
            progress,
            Some(cancel),
        )?;
        (s, t)
    };
    let shared = source.shares_content_keys(target);
    let selected = crate::ops::rewrite::select(source, &opts.snapshots, &opts.filter)?;
    let planned = plan::plan(selected, &target.list_snapshots()?, shared);

    let counters = Counters::default();
    let mut outcome = CopyOutcome {
        shared_keys: shared,
        planned: planned.clone(),
        copied: Vec::new(),
        stats: CopyStats::default(),
    };
    if planned.iter().all(|p| p.action != Action::Copy) {
        return Ok(outcome);
    }
    let src_index = source.load_index()?;
    for (id, why) in src_index.damaged() {
        progress.warn(&format!("source index file {id} skipped: {why}"));
    }
    let mut dst_index = target.load_index_files()?;
    for (id, why) in dst_index.damaged() {
        progress.warn(&format!("target index file {id} skipped: {why}"));
    }
    if !opts.dry_run {
        let adoption = target.adopt_orphan_packs(&mut dst_index)?;
        counters
            .packs_adopted
            .store(adoption.adopted as u64, Ordering::Relaxed);
        for (id, e) in adoption.rejected {
            progress.warn(&format!(
                "target pack {id} not adopted (its blobs will be copied again): {e}"
            ));
        }
    }
    let copier = Copier {
        target,
        dst_session: &dst_session,
        counters: &counters,
        progress,
        cancel,
        dry_run: opts.dry_run,
    };
    let readers = match opts.reads_in_flight {
        0 => transfer::READERS,
        n => n,
    };
    let mut mover = transfer::Mover::new(source, &src_index, target, &dst_index, readers);
    let mut rechunker = rechunk::Rechunker::new(source, &src_index, target, &dst_index);
    let mut engine = if shared {
        Engine::Shared(&mut mover)
    } else {
        Engine::Rechunk(&mut rechunker)
    };
    outcome.copied = copier.copy_all(&planned, &mut engine)?;
    drop(src_session);
    outcome.stats = counters.stats();
    Ok(outcome)
}

enum Engine<'m, 'a> {
    Shared(&'m mut transfer::Mover<'a>),
    Rechunk(&'m mut rechunk::Rechunker<'a>),
}

struct Copier<'a> {
    target: &'a Repository,
    dst_session: &'a Session,
    counters: &'a Counters,
    progress: &'a dyn Progress,
    cancel: &'a CancelFlag,
    dry_run: bool,
}

impl Copier<'_> {
    fn new_packer(&self) -> Result<Option<Packer>> {
        if self.dry_run {
            return Ok(None);
        }
        Packer::with_index_every(self.target, PACKS_PER_INDEX).map(Some)
    }

    /// Stores one snapshot's missing content through `packer`; returns its root tree in the
    /// target.
    fn content(
        &self,
        engine: &mut Engine<'_, '_>,
        snap: &Snapshot,
        packer: Option<&Packer>,
    ) -> Result<crate::id::BlobId> {
        match engine {
            Engine::Shared(m) => {
                let missing = m.missing_below(&snap.tree, self.counters, self.cancel)?;
                match packer {
                    Some(p) => m.transfer(missing, p, self.counters, self.progress, self.cancel)?,
                    None => m.count(&missing, self.counters),
                }
                Ok(snap.tree)
            }
            Engine::Rechunk(r) => r.copy_tree(
                &snap.tree,
                packer,
                self.counters,
                self.progress,
                self.cancel,
            ),
        }
    }

    /// Makes the packer's packs durable and indexed, then writes the pending snapshots
    /// (FORMAT §18: data, then index, then snapshot), each on a fresh lock.
    fn commit(
        &self,
        packer: Option<Packer>,
        pending: &mut Vec<(SnapshotId, Snapshot)>,
        done: &mut Vec<(SnapshotId, SnapshotId)>,
    ) -> Result<()> {
        if let Some(p) = packer {
            let packs = p.finish()?;
            self.counters
                .packs_written
                .fetch_add(packs.len() as u64, Ordering::Relaxed);
        }
        if self.dry_run {
            pending.clear();
            return Ok(());
        }
        for (src, snap) in pending.drain(..) {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            self.dst_session.ensure_fresh()?;
            done.push((src, self.target.save_snapshot(&snap)?));
        }
        Ok(())
    }

    fn copy_all(
        &self,
        planned: &[Planned],
        engine: &mut Engine<'_, '_>,
    ) -> Result<Vec<(SnapshotId, SnapshotId)>> {
        let batch_bytes = BATCH_PACKS * u64::from(self.target.config().pack_size);
        let mut done = Vec::new();
        let mut pending = Vec::new();
        let mut packer = self.new_packer()?;
        let mut since_commit = 0u64;
        for p in planned.iter().filter(|p| p.action == Action::Copy) {
            let before = self.counters.bytes_sealed.load(Ordering::Relaxed);
            let step = (|| {
                if self.cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                let tree = self.content(engine, &p.snapshot, packer.as_ref())?;
                let snap = plan::target_snapshot(p.id, &p.snapshot, tree);
                let len = snap.encode().len() as u64;
                if len > MAX_SNAPSHOT_LEN {
                    return Err(Error::InvalidInput(format!(
                        "the copy of snapshot {} would take {len} bytes, more than the {MAX_SNAPSHOT_LEN}-byte cap",
                        p.id
                    )));
                }
                Ok(snap)
            })();
            let snap = match step {
                Ok(s) => s,
                Err(e) => {
                    // Whatever was uploaded is made durable and indexed, so a second run
                    // reuses it; nothing of this snapshot is committed.
                    if let Some(pk) = packer.take() {
                        let _ = pk.finish();
                    }
                    return Err(e);
                }
            };
            pending.push((p.id, snap));
            since_commit += self.counters.bytes_sealed.load(Ordering::Relaxed) - before;
            if since_commit >= batch_bytes {
                self.commit(packer.take(), &mut pending, &mut done)?;
                packer = self.new_packer()?;
                since_commit = 0;
            }
        }
        self.commit(packer.take(), &mut pending, &mut done)?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests;
