//! The in-memory index: blob id -> where it is stored.
//!
//! Compact by design: one hash-map entry per blob holds the 32-byte id and a 20-byte location
//! (pack number, type, offset, lengths); pack ids are stored once in a side table. That is
//! about 52 bytes of payload per blob plus the map's overhead (docs/DESIGN.md, "Index").

use std::collections::HashMap;

use crate::format::index::IndexPack;
use crate::format::pack::{BlobType, PackEntry};
use crate::id::{BlobId, IndexId, PackId};

/// Where one blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding the blob.
    pub pack: PackId,
    /// The blob's entry in that pack.
    pub entry: PackEntry,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    blob_type: BlobType,
    offset: u32,
    length: u32,
    raw_len: u32,
}

/// Blob id -> location, for every pack named by a loaded index file.
#[derive(Debug, Default)]
pub struct Index {
    blobs: HashMap<BlobId, Slot>,
    packs: Vec<PackId>,
    pack_numbers: HashMap<PackId, u32>,
    pack_blob_counts: Vec<u32>,
    /// Index files that could not be read, with why (skipped; see `repo::index_files`).
    damaged: Vec<(IndexId, String)>,
    /// Packs indexed from their own headers because no readable index file names them.
    recovered: Vec<PackId>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a pack's blobs. Adding a pack twice is harmless; when two packs hold the same
    /// blob, the first one recorded wins.
    pub fn add_pack(&mut self, pack: &IndexPack) {
        let n = match self.pack_numbers.get(&pack.id) {
            Some(&n) => n,
            None => {
                let n = self.packs.len() as u32;
                self.packs.push(pack.id);
                self.pack_blob_counts.push(0);
                self.pack_numbers.insert(pack.id, n);
                n
            }
        };
        for e in &pack.blobs {
            self.blobs.entry(e.id).or_insert_with(|| {
                self.pack_blob_counts[n as usize] += 1;
                Slot {
                    pack: n,
                    blob_type: e.blob_type,
                    offset: e.offset,
                    length: e.length,
                    raw_len: e.raw_len,
                }
            });
        }
    }

    /// Location of a blob.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.blobs.get(id).map(|s| self.location(id, s))
    }

    fn location(&self, id: &BlobId, s: &Slot) -> BlobLocation {
        BlobLocation {
            pack: self.packs[s.pack as usize],
            entry: PackEntry {
                blob_type: s.blob_type,
                id: *id,
                offset: s.offset,
                length: s.length,
                raw_len: s.raw_len,
            },
        }
    }

    /// Whether a blob is stored.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// Whether a pack is named by some index.
    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_numbers.contains_key(id)
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether no blob is known.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Every pack known.
    pub fn packs(&self) -> &[PackId] {
        &self.packs
    }

    /// Index files skipped as damaged while loading, with the reason.
    pub fn damaged(&self) -> &[(IndexId, String)] {
        &self.damaged
    }

    /// Packs indexed from their headers (no readable index file names them).
    pub fn recovered(&self) -> &[PackId] {
        &self.recovered
    }

    pub(crate) fn note_damaged(&mut self, id: IndexId, reason: String) {
        self.damaged.push((id, reason));
    }

    pub(crate) fn note_recovered(&mut self, id: PackId) {
        self.recovered.push(id);
    }

    /// Every blob with its location.
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.blobs.iter().map(|(id, s)| self.location(id, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn entry(b: u8, offset: u32) -> PackEntry {
        PackEntry {
            blob_type: BlobType::Data,
            id: BlobId(Id([b; 32])),
            offset,
            length: 50,
            raw_len: 10,
        }
    }

    #[test]
    fn add_get_and_first_wins() {
        let mut ix = Index::new();
        let p1 = IndexPack {
            id: PackId(Id([1; 32])),
            blobs: vec![entry(1, 8), entry(2, 58)],
        };
        let p2 = IndexPack {
            id: PackId(Id([2; 32])),
            blobs: vec![entry(2, 8)],
        };
        ix.add_pack(&p1);
        ix.add_pack(&p2);
        ix.add_pack(&p1);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.packs().len(), 2);
        let loc = ix.get(&BlobId(Id([2; 32]))).unwrap();
        assert_eq!(loc.pack, p1.id);
        assert_eq!(loc.entry.offset, 58);
        assert!(ix.get(&BlobId(Id([3; 32]))).is_none());
        assert!(ix.has_pack(&p2.id));
        assert_eq!(ix.iter().count(), 2);
    }
}
