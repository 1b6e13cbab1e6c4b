//! Index files (docs/FORMAT.md, "Index"): which blobs each pack holds, so a reader need not
//! open every pack header. Written only after the packs they describe are durable.

use serde::{Deserialize, Serialize};

use super::pack::PackEntry;
use super::{FormatError, decode, encode};
use crate::id::{IndexId, PackId};

/// Largest index plaintext accepted (after decompression).
pub const MAX_INDEX_LEN: u64 = 64 << 20;

/// One pack's blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Its blobs, in the order of its pack header.
    pub blobs: Vec<PackEntry>,
}

/// Plaintext of an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexFile {
    /// Index files this one replaces (written by repair/prune; readers may ignore those).
    pub supersedes: Vec<IndexId>,
    /// The packs described.
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    /// Canonical plaintext.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and checks every entry on its own (pack bounds are checked against the pack).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        super::check_len("index file", bytes.len() as u64, MAX_INDEX_LEN)?;
        let f: Self = decode(bytes, "index file")?;
        for p in &f.packs {
            for e in &p.blobs {
                e.validate("index file")?;
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;
    use crate::id::{BlobId, Id};
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let f = IndexFile {
            supersedes: vec![IndexId(Id([1; 32]))],
            packs: vec![IndexPack {
                id: PackId(Id([2; 32])),
                blobs: vec![PackEntry {
                    blob_type: BlobType::Tree,
                    id: BlobId(Id([3; 32])),
                    offset: 8,
                    length: 50,
                    raw_len: 9,
                }],
            }],
        };
        assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = IndexFile::decode(&bytes);
        }
    }
}
