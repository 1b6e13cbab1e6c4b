//! Prune's writes: repacking (used blobs copied into new packs as they are sealed, each one
//! verified first) and the new index, streamed out in batches of whole packs so that memory
//! stays the in-memory index plus one index file.

use std::collections::{HashMap, HashSet};

use super::usage::Usage;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::index::{IndexPack, LockSession, ObsoletePack};
use crate::format::pack::{MAX_PACK_LEN, PackEntry};
use crate::id::{Id, IndexId, PackId};
use crate::ops::CancelFlag;
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{PACK_BATCH_BLOBS, Repository};

/// Packs whose entries are gathered in one pass over the index while repacking.
const REPACK_BATCH: usize = 32;

/// What the new index says about one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Named live.
    Live,
    /// Named obsolete with this record (its `blobs` filled in when written).
    Obsolete {
        /// When it was retired.
        marked_unix_ns: i64,
        /// Whether `waiting_for` is recorded.
        armed: bool,
        /// Sessions it waits for.
        waiting_for: Vec<LockSession>,
    },
    /// Not named at all (deleted, or gone from storage).
    Drop,
}

/// The new index: a disposition for every pack of the loaded index (a pack not in the map
/// keeps its state), plus packs whose entries are at hand (new, orphans).
#[derive(Debug, Clone, Default)]
pub struct IndexPlan {
    /// Packs of the loaded index whose state changes.
    pub packs: HashMap<PackId, Disposition>,
    /// Packs not in the loaded index, with their entries.
    pub extra: Vec<(PackId, Vec<PackEntry>, Disposition)>,
}

/// Copies the kept blobs of `packs` into new packs; returns the new packs and the index
/// files the packer wrote for them. Each pack is read
/// whole and must match its name; each blob copied must open and match its id, so damage is
/// never carried into a new pack. A damaged blob that a snapshot needs stops the prune
/// before the index changes (the packs written so far are indexed by the packer and harmless).
pub fn repack(
    repo: &Repository,
    u: &Usage,
    packs: &[PackId],
    cancel: &CancelFlag,
) -> Result<(Vec<IndexPack>, Vec<IndexId>)> {
    if packs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let packer = Packer::new(repo)?;
    for chunk in packs.chunks(REPACK_BATCH) {
        let set: HashSet<PackId> = chunk.iter().copied().collect();
        for pb in u.index.entries_of(&set) {
            super::cancelled(cancel)?;
            if packer.has_failed() {
                break;
            }
            copy_used(repo, u, &packer, &pb.id, &pb.entries, &pb.used)?;
        }
    }
    packer.finish_with_index_files()
}

fn copy_used(
    repo: &Repository,
    u: &Usage,
    packer: &Packer,
    pack: &PackId,
    entries: &[PackEntry],
    used: &[bool],
) -> Result<()> {
    let len = u.sizes.get(pack).copied().unwrap_or(0);
    if len > MAX_PACK_LEN {
        return Err(Error::corrupt("pack", pack, "larger than its cap"));
    }
    let bytes = repo.backend().read(FileType::Pack, &pack.0)?;
    if bytes.len() as u64 != len || Id::of_stored(&bytes) != pack.0 {
        return Err(Error::PruneRefused {
            reason: format!(
                "pack {pack} does not match its name (bit rot or tampering); run `cista check --read-data`"
            ),
        });
    }
    for (e, _) in entries.iter().zip(used).filter(|(_, u)| **u) {
        let start = e.offset as usize;
        let sealed = start
            .checked_add(e.length as usize)
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| Error::PruneRefused {
                reason: format!(
                    "pack {pack}: blob {} lies outside the pack; run `cista repair index`",
                    e.id
                ),
            })?;
        repo.open_blob(e, sealed).map_err(|err| Error::PruneRefused {
            reason: format!(
                "blob {} in pack {pack}, needed by a snapshot, is damaged ({err}); run `cista check --read-data` and `cista repair snapshots`",
                e.id
            ),
        })?;
        packer.add(SealedBlob {
            blob_type: e.blob_type,
            id: e.id,
            raw_len: e.raw_len,
            sealed: sealed.to_vec(),
        })?;
    }
    Ok(())
}

/// Writes index files describing the loaded index changed by `plan`; only the last one names
/// `supersedes` ([`crate::repo::IndexWriter`]). Returns the files written.
pub fn write_index(
    repo: &Repository,
    u: &Usage,
    plan: &IndexPlan,
    supersedes: &[IndexId],
) -> Result<Vec<IndexId>> {
    let mut w = repo.index_writer();
    let mut put = |id: PackId, blobs: Vec<PackEntry>, d: &Disposition| -> Result<()> {
        match d {
            Disposition::Live => w.add_live(IndexPack { id, blobs }),
            Disposition::Obsolete {
                marked_unix_ns,
                armed,
                waiting_for,
            } => w.add_obsolete(ObsoletePack {
                id,
                marked_unix_ns: *marked_unix_ns,
                armed: *armed,
                waiting_for: waiting_for.clone(),
                blobs,
            }),
            Disposition::Drop => Ok(()),
        }
    };
    for batch in u.index.pack_batches(PACK_BATCH_BLOBS) {
        for pb in batch {
            let d = match plan.packs.get(&pb.id) {
                Some(d) => d.clone(),
                None => current(u, &pb.id),
            };
            put(pb.id, pb.entries, &d)?;
        }
    }
    for (id, blobs, d) in &plan.extra {
        put(*id, blobs.clone(), d)?;
    }
    w.finish(supersedes.to_vec())
}

/// A pack's disposition as the loaded index has it.
fn current(u: &Usage, id: &PackId) -> Disposition {
    match u.index.obsolete_info(id) {
        Some(o) if u.index.is_obsolete(id) => Disposition::Obsolete {
            marked_unix_ns: o.marked_unix_ns,
            armed: o.armed,
            waiting_for: o.waiting_for.clone(),
        },
        _ => Disposition::Live,
    }
}

/// Deletes index files (a file already gone counts); returns how many were removed.
pub fn remove_index_files(repo: &Repository, files: &[IndexId]) -> Result<usize> {
    let mut n = 0;
    for f in files {
        match repo.backend().delete(FileType::Index, &f.0) {
            Ok(()) => n += 1,
            Err(e) if e.kind == crate::backend::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}
