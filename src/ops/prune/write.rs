//! Prune's writes: repacking (used blobs copied into new packs as they are sealed, each one
//! verified first) and the new index, streamed out one file at a time so that memory stays
//! the in-memory index plus one file.

use super::usage::Usage;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::index::{IndexFile, IndexPack, ObsoletePack};
use crate::format::pack::MAX_PACK_LEN;
use crate::id::{Id, IndexId, PackId};
use crate::ops::CancelFlag;
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{INDEX_FILE_BLOBS, Index, Repository};

/// Where a live pack's entries come from when the index is written.
#[derive(Debug, Clone)]
pub enum LiveSource {
    /// A pack of the loaded index (entries read from it while writing).
    Index(PackId),
    /// A pack with its entries at hand (repacked, resurrected).
    New(IndexPack),
}

/// An obsolete pack for the new index. Entries of packs retired from the loaded index are
/// read from it while writing (`from_index`), so retiring half the repository does not
/// copy half the index.
#[derive(Debug, Clone)]
pub struct Obsolete {
    /// The record; its `blobs` are empty when `from_index`.
    pub record: ObsoletePack,
    /// Take the entries from the loaded index.
    pub from_index: bool,
}

/// The state the new index describes.
#[derive(Debug, Clone)]
pub struct IndexState {
    /// Live packs.
    pub live: Vec<LiveSource>,
    /// Obsolete packs.
    pub obsolete: Vec<Obsolete>,
}

/// Copies the kept blobs of `packs` into new packs; returns the new packs. Each pack is read
/// whole and must match its name; each blob copied must open and match its id, so damage is
/// never carried into a new pack. A damaged blob that a snapshot needs stops the prune
/// before the index changes (the packs written so far are indexed by the packer and harmless).
pub fn repack(
    repo: &Repository,
    u: &Usage,
    packs: &[PackId],
    cancel: &CancelFlag,
) -> Result<Vec<IndexPack>> {
    if packs.is_empty() {
        return Ok(Vec::new());
    }
    let packer = Packer::new(repo)?;
    for pack in packs {
        super::cancelled(cancel)?;
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
        for i in u.index.pack_positions(pack) {
            if !u.keep.get(i) {
                continue;
            }
            let (_, _, e) = u.index.entry(i);
            let start = e.offset as usize;
            let end = start + e.length as usize;
            let sealed = bytes.get(start..end).ok_or_else(|| Error::PruneRefused {
                reason: format!(
                    "pack {pack}: blob {} lies outside the pack; run `cista repair index`",
                    e.id
                ),
            })?;
            repo.open_blob(&e, sealed)
                .map_err(|err| Error::PruneRefused {
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
    }
    packer.finish()
}

/// Writes index files describing `state`; only the last one names `supersedes`, so a crash
/// part-way leaves old and new files side by side (FORMAT §18). Returns the files written.
pub fn write_index(
    repo: &Repository,
    index: &Index,
    state: &IndexState,
    supersedes: &[IndexId],
) -> Result<Vec<IndexId>> {
    let mut written = Vec::new();
    let mut file = IndexFile::default();
    let mut count = 0usize;
    let mut flush = |file: &mut IndexFile, count: &mut usize, last: bool| -> Result<()> {
        if last {
            file.supersedes = supersedes.to_vec();
        }
        written.push(repo.write_index_object(file)?);
        *file = IndexFile::default();
        *count = 0;
        Ok(())
    };
    for src in &state.live {
        let p = match src {
            LiveSource::Index(id) => IndexPack {
                id: *id,
                blobs: index.pack_entries(id),
            },
            LiveSource::New(p) => p.clone(),
        };
        if count + p.blobs.len() > INDEX_FILE_BLOBS && count > 0 {
            flush(&mut file, &mut count, false)?;
        }
        count += p.blobs.len().max(1);
        file.packs.push(p);
    }
    for o in &state.obsolete {
        let mut rec = o.record.clone();
        if o.from_index {
            rec.blobs = index.pack_entries(&rec.id);
        }
        if count + rec.blobs.len() > INDEX_FILE_BLOBS && count > 0 {
            flush(&mut file, &mut count, false)?;
        }
        count += rec.blobs.len().max(1);
        file.obsolete.push(rec);
    }
    flush(&mut file, &mut count, true)?;
    Ok(written)
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
