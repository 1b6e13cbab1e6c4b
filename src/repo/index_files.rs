//! Index files: writing them, loading them into one in-memory [`Index`], and finding again
//! from pack headers what a damaged or missing index file described.
//!
//! One loader for every command (docs/FORMAT.md §14, §18): readers skip superseded files and
//! damaged ones (recording them in the index, so the CLI can warn and `check` can report);
//! when a file was damaged, the packs no readable file names are indexed in memory from their
//! headers, so one bad index file costs nothing that the packs still hold. Backups go further
//! and adopt orphan packs durably, but only after reading each one whole
//! ([`Repository::adopt_orphan_packs`]): a blob that will be deduplicated against must be
//! known to open.

use std::collections::HashSet;

use rayon::prelude::*;

use super::{INDEX_FILE_BLOBS, Index, Repository};
use crate::backend::{ErrorKind, FileType};
use crate::error::{Error, Result};
use crate::format::ObjectKind;
use crate::format::index::{IndexFile, IndexPack, MAX_INDEX_LEN};
use crate::format::pack::{MAX_PACK_LEN, PackHeader};
use crate::id::{Id, IndexId, PackId};

/// What adopting orphan packs did.
#[derive(Debug, Default)]
pub struct Adoption {
    /// Packs verified and written into a new index file.
    pub adopted: usize,
    /// Packs that failed verification: not adopted, their blobs are not reused.
    pub rejected: Vec<(PackId, Error)>,
}

impl Repository {
    /// Stores index files describing `packs`, split so no file exceeds
    /// [`INDEX_FILE_BLOBS`] blobs (well under the 64 MiB cap); returns their ids.
    pub fn save_index(&self, packs: Vec<IndexPack>) -> Result<Vec<IndexId>> {
        let mut ids = Vec::new();
        let mut batch: Vec<IndexPack> = Vec::new();
        let mut blobs = 0;
        for p in packs {
            if blobs + p.blobs.len() > INDEX_FILE_BLOBS && !batch.is_empty() {
                ids.push(self.write_index_file(std::mem::take(&mut batch))?);
                blobs = 0;
            }
            blobs += p.blobs.len();
            batch.push(p);
        }
        if !batch.is_empty() {
            ids.push(self.write_index_file(batch)?);
        }
        Ok(ids)
    }

    fn write_index_file(&self, packs: Vec<IndexPack>) -> Result<IndexId> {
        let file = IndexFile {
            supersedes: Vec::new(),
            packs,
            obsolete: Vec::new(),
        };
        let bytes = self.seal_object(ObjectKind::Index, &self.frame_payload(&file.encode()))?;
        let id = Id::of_stored(&bytes);
        self.backend().write(FileType::Index, &id, bytes)?;
        Ok(IndexId(id))
    }

    /// Loads one index file. `listed` is its size from a listing, if known (else it is
    /// stat'ed): the stored-size cap is checked before the file is read.
    pub fn load_index_file(&self, id: &Id, listed: Option<u64>) -> Result<IndexFile> {
        let bytes = self.read_metadata_object(FileType::Index, id, listed, MAX_INDEX_LEN)?;
        let plain = self.open_object(ObjectKind::Index, id, &bytes)?;
        let body = Self::unframe_payload(&plain, MAX_INDEX_LEN, "index file")
            .map_err(|e| Error::corrupt("index file", id, e))?;
        IndexFile::decode(&body).map_err(|e| Error::corrupt("index file", id, e))
    }

    /// Loads every readable index file into one in-memory index, skipping files another
    /// index file supersedes. A damaged file is recorded in [`Index::damaged`] and skipped;
    /// then the packs no readable file names are indexed from their headers (in memory
    /// only: readers verify every blob they open, and writing is left to backups).
    pub fn load_index(&self) -> Result<Index> {
        let mut index = self.load_index_files()?;
        if !index.damaged().is_empty() {
            self.recover_from_pack_headers(&mut index)?;
        }
        Ok(index)
    }

    /// [`Repository::load_index`] without the recovery from pack headers: exactly what the
    /// readable index files say. Backups start from this and adopt orphans verified.
    pub fn load_index_files(&self) -> Result<Index> {
        let listed = self.backend().list(FileType::Index)?;
        let loaded: Vec<(IndexId, Result<IndexFile>)> = listed
            .par_iter()
            .map(|(id, len)| (IndexId(*id), self.load_index_file(id, Some(*len))))
            .collect();
        let mut files = Vec::with_capacity(loaded.len());
        let mut index = Index::new();
        for (id, r) in loaded {
            match r {
                Ok(f) => files.push((id, f)),
                Err(Error::Corrupt { reason, .. }) => index.note_damaged(id, reason),
                // Removed since the listing (a newer file superseded it): nothing to load.
                Err(e) if e.is_not_found() => {}
                // One file that cannot be read (an I/O error, a permission) is skipped like a
                // damaged one; a transient failure still fails the load (try again).
                Err(Error::Backend(b)) if b.kind == ErrorKind::Permanent => {
                    index.note_damaged(id, format!("unreadable: {b}"));
                }
                Err(e) => return Err(e),
            }
        }
        let superseded: HashSet<IndexId> = files
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        for (id, f) in &files {
            if !superseded.contains(id) {
                f.packs.iter().for_each(|p| index.add_pack(p));
            }
        }
        Ok(index)
    }

    /// Packs in storage that no loaded index file names, with their listed sizes.
    pub fn orphan_packs(&self, index: &Index) -> Result<Vec<(PackId, u64)>> {
        Ok(self
            .backend()
            .list(FileType::Pack)?
            .into_iter()
            .map(|(id, len)| (PackId(id), len))
            .filter(|(id, _)| !index.has_pack(id))
            .collect())
    }

    /// Indexes in memory the orphan packs whose headers open; the rest stay unindexed (and
    /// `check` reports them).
    fn recover_from_pack_headers(&self, index: &mut Index) -> Result<()> {
        let orphans = self.orphan_packs(index)?;
        let found: Vec<IndexPack> = orphans
            .par_iter()
            .filter_map(|(id, len)| {
                self.read_pack_header(id, *len).ok().map(|h| IndexPack {
                    id: *id,
                    blobs: h.entries,
                })
            })
            .collect();
        for p in &found {
            index.add_pack(p);
            index.note_recovered(p.id);
        }
        Ok(())
    }

    /// Reads a pack whole and verifies everything a later reader relies on: its size within
    /// the cap (before reading), its name is the hash of its bytes, its header opens, and
    /// every blob it lists opens and matches its id. Returns the header.
    pub fn verify_pack(&self, id: &PackId, listed: u64) -> Result<PackHeader> {
        if listed > MAX_PACK_LEN {
            return Err(Error::corrupt(
                "pack",
                id,
                format!("{listed} bytes, more than the {MAX_PACK_LEN}-byte cap"),
            ));
        }
        let bytes = self.backend().read(FileType::Pack, &id.0)?;
        if bytes.len() as u64 != listed || Id::of_stored(&bytes) != id.0 {
            return Err(Error::corrupt(
                "pack",
                id,
                "contents do not match the name (bit rot or tampering)",
            ));
        }
        let header = self.pack_header_from_bytes(id, &bytes)?;
        for e in &header.entries {
            let sealed = bytes
                .get(e.offset as usize..e.end() as usize)
                .ok_or_else(|| Error::corrupt("pack", id, "a blob lies outside the pack"))?;
            self.open_blob(e, sealed)?;
        }
        Ok(header)
    }

    /// Indexes durably the packs no index file names (left by an interrupted backup, or
    /// named only by a damaged index file), so their blobs are reused instead of uploaded
    /// again. Each is read whole and verified first ([`Repository::verify_pack`]); one that
    /// fails is not adopted and is returned in [`Adoption::rejected`]. Call with a shared lock
    /// held and an index from [`Repository::load_index_files`].
    pub fn adopt_orphan_packs(&self, index: &mut Index) -> Result<Adoption> {
        let orphans = self.orphan_packs(index)?;
        if orphans.is_empty() {
            return Ok(Adoption::default());
        }
        let checked: Vec<(PackId, Result<PackHeader>)> = orphans
            .par_iter()
            .map(|(id, len)| (*id, self.verify_pack(id, *len)))
            .collect();
        let mut adopted = Vec::new();
        let mut rejected = Vec::new();
        for (id, r) in checked {
            match r {
                Ok(h) => adopted.push(IndexPack {
                    id,
                    blobs: h.entries,
                }),
                // Deleted since the listing: nothing to adopt.
                Err(Error::Backend(b)) if b.kind == ErrorKind::NotFound => {}
                Err(e @ Error::Corrupt { .. }) => rejected.push((id, e)),
                Err(e) => return Err(e),
            }
        }
        for p in &adopted {
            index.add_pack(p);
        }
        let n = adopted.len();
        if n > 0 {
            self.save_index(adopted)?;
        }
        Ok(Adoption {
            adopted: n,
            rejected,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::FileType;
    use crate::error::Error;
    use crate::format::index::IndexPack;
    use crate::format::pack::BlobType;
    use crate::id::BlobId;
    use crate::repo::packer::{SealedBlob, assemble};
    use crate::repo::tests::repo;

    fn stored_pack(r: &crate::repo::Repository, tag: &str) -> (IndexPack, BlobId) {
        let data = format!("blob of {tag}").into_bytes();
        let id = r.blob_id(&data);
        let sealed = r.seal_blob(BlobType::Data, &id, &data).unwrap();
        let p = assemble(
            r,
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
        (
            IndexPack {
                id: p.id,
                blobs: p.entries,
            },
            id,
        )
    }

    #[test]
    fn damaged_index_file_is_skipped_and_its_packs_found_from_headers() {
        let r = repo();
        let (a, blob_a) = stored_pack(&r, "a");
        let (b, blob_b) = stored_pack(&r, "b");
        r.save_index(vec![a]).unwrap();
        let b_id = b.id;
        let bad = r.save_index(vec![b]).unwrap()[0];
        // Replace the second index file by garbage under the same name.
        r.backend().delete(FileType::Index, &bad.0).unwrap();
        r.backend()
            .write(FileType::Index, &bad.0, b"garbage".to_vec())
            .unwrap();

        let files_only = r.load_index_files().unwrap();
        assert!(files_only.contains(&blob_a) && !files_only.contains(&blob_b));
        assert_eq!(files_only.damaged().len(), 1);

        let index = r.load_index().unwrap();
        assert!(index.contains(&blob_a) && index.contains(&blob_b));
        assert_eq!(index.damaged()[0].0, bad);
        assert_eq!(index.recovered(), &[b_id][..]);
    }

    #[test]
    fn orphan_pack_is_adopted_only_when_every_byte_verifies() {
        let r = repo();
        let (good, good_blob) = stored_pack(&r, "good");
        let (bad, bad_blob) = stored_pack(&r, "bad");
        // Damage one pack: same name, one byte changed.
        let mut bytes = r.backend().read(FileType::Pack, &bad.id.0).unwrap();
        bytes[12] ^= 1;
        r.backend().delete(FileType::Pack, &bad.id.0).unwrap();
        r.backend().write(FileType::Pack, &bad.id.0, bytes).unwrap();

        let mut index = r.load_index_files().unwrap();
        let adoption = r.adopt_orphan_packs(&mut index).unwrap();
        assert_eq!(adoption.adopted, 1);
        assert_eq!(adoption.rejected.len(), 1);
        assert_eq!(adoption.rejected[0].0, bad.id);
        assert!(matches!(adoption.rejected[0].1, Error::Corrupt { .. }));
        assert!(index.contains(&good_blob) && !index.contains(&bad_blob));
        // The adoption is durable: a fresh load finds the good pack, not the bad one.
        let again = r.load_index_files().unwrap();
        assert!(again.has_pack(&good.id) && !again.has_pack(&bad.id));
    }
}
