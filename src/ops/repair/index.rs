//! `repair index`: rebuild the index from the pack headers alone (restic's `repair index`).
//!
//! Every pack's header is read (it is sealed, so reading it verifies it) and the new index
//! files describe exactly what the headers say. A pack whose header cannot be read is never
//! deleted: if a readable index file described it, that description is carried over (restore
//! verifies every blob it reads, so a wrong entry cannot hand out wrong bytes), else it stays
//! unindexed and is reported. Ordering (FORMAT §18): the new files are written and durable,
//! the last one superseding every old file, and only then are the old files deleted, so a
//! crash at any point leaves an index that names every pack at least once.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use crate::backend::{ErrorKind, FileType};
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack};
use crate::format::pack::PackEntry;
use crate::format::{FormatError, ObjectKind};
use crate::id::{Id, IndexId, PackId};
use crate::ops::session::Session;
use crate::repo::{INDEX_FILE_BLOBS, Repository};

/// Options of `repair index`.
#[derive(Debug, Clone, Default)]
pub struct RepairIndexOptions {
    /// restic's `--read-all-packs`: cista always reads every pack's header, so this only
    /// records that the caller asked for it.
    pub read_all_packs: bool,
}

/// What the repair will write and remove.
#[derive(Debug, Default)]
pub struct RepairIndexPlan {
    /// Index files in storage now; all are superseded and then removed.
    pub old_files: Vec<IndexId>,
    /// Old index files that could not be read (their content is found again in headers).
    pub damaged_files: Vec<(IndexId, String)>,
    /// The packs the new index describes, from their headers or carried over.
    pub packs: Vec<IndexPack>,
    /// Packs whose header could not be read, described as a readable old index file did.
    pub carried_over: Vec<(PackId, String)>,
    /// Packs whose header could not be read and that no readable index file describes: left
    /// alone (not deleted) and unindexed.
    pub unindexed: Vec<(PackId, String)>,
    /// Packs the old index named that are not in storage (dropped from the index).
    pub missing: Vec<PackId>,
}

impl RepairIndexPlan {
    /// Blobs the new index describes.
    pub fn blobs(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}

/// What the repair did.
#[derive(Debug, Default)]
pub struct RepairIndexReport {
    /// The plan it executed (its `packs` moved into the new index files).
    pub plan: RepairIndexPlan,
    /// Packs the new index describes.
    pub packs: usize,
    /// Blobs the new index describes.
    pub blobs: usize,
    /// New index files written.
    pub written: Vec<IndexId>,
    /// Old index files removed.
    pub removed: usize,
}

/// Plans the repair: lists index files and packs, reads every pack's header. Reads only.
/// Refuses (before anything is written) when an index file was written by a newer cista.
///
/// Memory: the new index (what the headers say) is the only large thing held. Old index
/// files are read once to learn which are readable and which packs they name, and read
/// again only if some header is unreadable, keeping just those packs' entries.
pub fn plan(repo: &Repository, _opts: &RepairIndexOptions) -> Result<RepairIndexPlan> {
    let mut p = RepairIndexPlan::default();
    let mut listed = repo.backend().list(FileType::Index)?;
    listed.sort();
    let loaded: Vec<(Id, u64, Result<Vec<PackId>>)> = listed
        .par_iter()
        .map(|(id, len)| {
            let r = repo
                .load_index_file(id, Some(*len))
                .map(|f| f.packs.into_iter().map(|ip| ip.id).collect());
            (*id, *len, r)
        })
        .collect();
    let mut readable = Vec::new();
    let mut named: HashSet<PackId> = HashSet::new();
    for (id, len, r) in loaded {
        match r {
            Ok(packs) => {
                named.extend(packs);
                readable.push((id, len));
            }
            Err(Error::Format(e @ FormatError::NewerVersion { .. })) => {
                return Err(Error::InvalidInput(format!(
                    "index file {id}: {e}; `repair index` never replaces what a newer cista wrote"
                )));
            }
            Err(Error::Corrupt { reason, .. }) => p.damaged_files.push((IndexId(id), reason)),
            Err(e) if e.is_not_found() => continue,
            Err(Error::Backend(b)) if b.kind == ErrorKind::Permanent => {
                p.damaged_files
                    .push((IndexId(id), format!("unreadable: {b}")));
            }
            Err(e) => return Err(e),
        }
        p.old_files.push(IndexId(id));
    }
    let packs: BTreeMap<PackId, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .map(|(id, n)| (PackId(id), n))
        .collect();
    let mut missing: Vec<PackId> = named
        .iter()
        .filter(|k| !packs.contains_key(k))
        .copied()
        .collect();
    missing.sort();
    p.missing = missing;
    let headers: Vec<(PackId, u64, Result<Vec<PackEntry>>)> = packs
        .par_iter()
        .map(|(id, len)| {
            (
                *id,
                *len,
                repo.read_pack_header(id, *len).map(|h| h.entries),
            )
        })
        .collect();
    let mut failed: BTreeMap<PackId, (u64, String)> = BTreeMap::new();
    for (id, len, r) in headers {
        match r {
            Ok(blobs) => p.packs.push(IndexPack { id, blobs }),
            // Deleted since the listing: nothing to index.
            Err(e) if e.is_not_found() => {}
            Err(Error::Corrupt { reason, .. }) => {
                failed.insert(id, (len, reason));
            }
            Err(Error::Format(e)) => {
                failed.insert(id, (len, e.to_string()));
            }
            Err(Error::Backend(b)) if b.kind == ErrorKind::Permanent => {
                failed.insert(id, (len, format!("unreadable: {b}")));
            }
            Err(e) => return Err(e),
        }
    }
    let old = if failed.keys().any(|k| named.contains(k)) {
        old_entries(repo, &readable, &failed)?
    } else {
        HashMap::new()
    };
    for (id, (len, why)) in failed {
        // An old entry is carried over only if it lies inside the pack: past the end it can
        // never be read (a truncated pack), and unindexed it is stored again by the next
        // backup.
        let blobs: Vec<PackEntry> = old
            .get(&id)
            .map(|v| v.iter().filter(|e| e.end() <= len).copied().collect())
            .unwrap_or_default();
        if blobs.is_empty() {
            p.unindexed.push((id, why));
        } else {
            p.packs.push(IndexPack { id, blobs });
            p.carried_over.push((id, why));
        }
    }
    Ok(p)
}

/// What the readable old index files say about the packs in `wanted`.
fn old_entries(
    repo: &Repository,
    readable: &[(Id, u64)],
    wanted: &BTreeMap<PackId, (u64, String)>,
) -> Result<HashMap<PackId, Vec<PackEntry>>> {
    let mut out: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for (id, len) in readable {
        let file = match repo.load_index_file(id, Some(*len)) {
            Ok(f) => f,
            // It was readable a moment ago; if it is not now, the headers stand alone.
            Err(Error::Corrupt { .. }) => continue,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        for ip in file.packs {
            if wanted.contains_key(&ip.id) {
                out.entry(ip.id).or_insert(ip.blobs);
            }
        }
    }
    Ok(out)
}

/// Executes a plan: writes the new index files (the last one superseding every old file),
/// then removes the old files. Call with the maintenance lock held.
pub fn execute(repo: &Repository, plan: RepairIndexPlan) -> Result<RepairIndexReport> {
    execute_batched(repo, plan, INDEX_FILE_BLOBS)
}

/// [`execute`] with at most `max_blobs` blobs per new index file (small in tests, to make
/// several files and crash between them).
fn execute_batched(
    repo: &Repository,
    mut plan: RepairIndexPlan,
    max_blobs: usize,
) -> Result<RepairIndexReport> {
    let (packs, blobs_total) = (plan.packs.len(), plan.blobs());
    let mut batches: Vec<Vec<IndexPack>> = Vec::new();
    let mut blobs = 0;
    for ip in std::mem::take(&mut plan.packs) {
        if batches.is_empty() || (blobs + ip.blobs.len() > max_blobs && blobs > 0) {
            batches.push(Vec::new());
            blobs = 0;
        }
        blobs += ip.blobs.len();
        if let Some(b) = batches.last_mut() {
            b.push(ip);
        }
    }
    if batches.is_empty() && !plan.old_files.is_empty() {
        // No pack left: one empty file still supersedes the old ones.
        batches.push(Vec::new());
    }
    let last = batches.len().saturating_sub(1);
    let mut written = Vec::new();
    for (i, packs) in batches.into_iter().enumerate() {
        // Only the last file supersedes: until it is durable, the old files still load, so
        // a crash before it leaves old and new both (duplicates are harmless).
        let supersedes = if i == last {
            plan.old_files.clone()
        } else {
            Vec::new()
        };
        written.push(write_index_file(
            repo,
            IndexFile {
                supersedes,
                packs,
                obsolete: Vec::new(),
            },
        )?);
    }
    let mut removed = 0;
    for id in &plan.old_files {
        match repo.backend().delete(FileType::Index, &id.0) {
            Ok(()) => removed += 1,
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(RepairIndexReport {
        plan,
        packs,
        blobs: blobs_total,
        written,
        removed,
    })
}

/// Plans and executes in `session`, which holds the maintenance lock (FORMAT §17): no prune
/// runs meanwhile. Every readable pack is named live, packs a prune had retired included: a
/// retirement then starts again at the next prune, which is always safe (nothing is lost, a
/// deletion is only postponed).
pub fn run(session: &Session, opts: &RepairIndexOptions) -> Result<RepairIndexReport> {
    let repo = session.repo();
    let p = plan(repo, opts)?;
    session.ensure_fresh()?;
    execute(repo, p)
}

/// Seals and stores one index file, checking first that it opens and decodes again (verify
/// after write, FORMAT §13's habit for headers applied to the index being rebuilt).
fn write_index_file(repo: &Repository, file: IndexFile) -> Result<IndexId> {
    let bytes = repo.seal_object(ObjectKind::Index, &repo.frame_payload(&file.encode()))?;
    let id = Id::of_stored(&bytes);
    repo.backend().write(FileType::Index, &id, bytes)?;
    let back = repo.load_index_file(&id, None)?;
    if back != file {
        return Err(Error::corrupt(
            "index file",
            id,
            "does not read back as written",
        ));
    }
    Ok(IndexId(id))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::Backend;
    use crate::backend::fault::FaultBackend;
    use crate::backend::opendal::OpendalBackend;
    use crate::format::pack::BlobType;
    use crate::id::BlobId;
    use crate::repo::packer::{SealedBlob, assemble};

    /// A repository with three packs of one blob each, each named by its own index file.
    fn three_packs() -> (Arc<dyn Backend>, Vec<BlobId>) {
        let inner: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let r = crate::repo::tests::repo_on(inner.clone());
        let mut blobs = Vec::new();
        for tag in ["a", "b", "c"] {
            let data = format!("blob {tag}").into_bytes();
            let id = r.blob_id(&data);
            let sealed = r.seal_blob(BlobType::Data, &id, &data).unwrap();
            let p = assemble(
                &r,
                vec![SealedBlob {
                    blob_type: BlobType::Data,
                    id,
                    raw_len: data.len() as u32,
                    sealed,
                }],
            )
            .unwrap();
            r.backend()
                .write_parts(FileType::Pack, &p.id.0, p.parts)
                .unwrap();
            r.save_index(vec![IndexPack {
                id: p.id,
                blobs: p.entries,
            }])
            .unwrap();
            blobs.push(id);
        }
        (inner, blobs)
    }

    /// Killed after any number of index writes, the repository still indexes every blob:
    /// the old files are superseded only by the last new file, and deleted after it.
    #[test]
    fn a_crash_at_any_write_leaves_every_blob_indexed() {
        for allowed in 0..=3 {
            let (inner, blobs) = three_packs();
            let faulty: Arc<dyn Backend> = Arc::new(
                FaultBackend::new(inner.clone()).fail_writes_of_after(FileType::Index, allowed),
            );
            let repo = Repository::open(faulty, b"pw").unwrap();
            let plan = plan(&repo, &RepairIndexOptions::default()).unwrap();
            assert_eq!(plan.packs.len(), 3);
            let done = execute_batched(&repo, plan, 1);
            assert_eq!(done.is_ok(), allowed == 3, "{allowed} writes allowed");
            let after = Repository::open(inner.clone(), b"pw").unwrap();
            let index = after.load_index_files().unwrap();
            for b in &blobs {
                assert!(index.contains(b), "{allowed} writes allowed: blob {b} lost");
            }
            let files = inner.list(FileType::Index).unwrap().len();
            if allowed == 3 {
                assert_eq!(files, 3, "old files removed after the new ones");
            } else {
                assert_eq!(
                    files,
                    3 + allowed as usize,
                    "no old file removed before the last new one"
                );
            }
        }
    }

    #[test]
    fn damaged_index_files_are_replaced_and_unreadable_headers_left_in_place() {
        let (inner, blobs) = three_packs();
        let repo = Repository::open(inner.clone(), b"pw").unwrap();
        // One index file garbage; one pack's header (its end) truncated away.
        let idx = inner.list(FileType::Index).unwrap();
        inner.delete(FileType::Index, &idx[0].0).unwrap();
        inner
            .write(FileType::Index, &idx[0].0, b"garbage".to_vec())
            .unwrap();
        let packs = inner.list(FileType::Pack).unwrap();
        let (victim, len) = packs[0];
        let bytes = inner.read(FileType::Pack, &victim).unwrap();
        inner.delete(FileType::Pack, &victim).unwrap();
        inner
            .write(FileType::Pack, &victim, bytes[..bytes.len() - 4].to_vec())
            .unwrap();
        let p = plan(&repo, &RepairIndexOptions::default()).unwrap();
        assert_eq!(p.damaged_files.len(), 1);
        assert_eq!(p.old_files.len(), 3);
        assert_eq!(p.carried_over.len() + p.unindexed.len(), 1);
        let r = execute(&repo, p).unwrap();
        assert_eq!((r.written.len(), r.removed), (1, 3));
        assert!(
            inner.size(FileType::Pack, &victim).unwrap() < len,
            "the damaged pack is still there"
        );
        let index = repo.load_index_files().unwrap();
        assert!(index.damaged().is_empty());
        let indexed = blobs.iter().filter(|b| index.contains(b)).count();
        assert!(indexed >= 2, "the readable packs are indexed");
    }
}
