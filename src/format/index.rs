//! Index files (docs/FORMAT.md §14): which blobs each pack holds, so a reader need not open
//! every pack header, and (format version 3) which packs a prune retired and will delete.
//! Written only after the packs they describe are durable. Pure encoding; what the states
//! mean to each command is `repo::index_files`' business.
//!
//! The third field, `obsolete`, is encoded only when it is non-empty: a file without retired
//! packs is byte for byte the version-2 two-field layout, so backups keep writing what older
//! readers read. The two layouts cannot be confused: bincode reads fields in order, a
//! two-field file has no bytes after `packs`, and a three-field file has at least the
//! obsolete list's count there.

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

/// A lock session (the random 16 bytes a lock holder keeps across refreshes, FORMAT §17):
/// what an armed obsolete pack waits for.
pub type LockSession = [u8; 16];

/// A pack pending deletion: a prune retired it, and a later prune deletes it once no session
/// that could still reuse its blobs is alive (FORMAT §14, §18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObsoletePack {
    /// The pack.
    pub id: PackId,
    /// When the prune retired it (the writer's clock; informational, never compared across
    /// hosts).
    pub marked_unix_ns: i64,
    /// Whether `waiting_for` has been filled in (by the prune that retired it, after it
    /// listed locks once the old index files were gone).
    pub armed: bool,
    /// Lock sessions alive when the pack was armed; it may be deleted once none of them is.
    pub waiting_for: Vec<LockSession>,
    /// The pack header's entries, so the pack can be read, resurrected or checked without
    /// its header.
    pub blobs: Vec<PackEntry>,
}

/// Plaintext of an index file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// Index files this one replaces (written by repair/prune; readers ignore those).
    pub supersedes: Vec<IndexId>,
    /// The packs described: live, their blobs usable by every command.
    pub packs: Vec<IndexPack>,
    /// Packs pending deletion (format version 3). Encoded only when non-empty.
    pub obsolete: Vec<ObsoletePack>,
}

/// The version-2 layout, borrowed for encoding.
#[derive(Serialize)]
struct TwoFieldsRef<'a> {
    supersedes: &'a [IndexId],
    packs: &'a [IndexPack],
}

/// The three-field layout, borrowed for encoding.
#[derive(Serialize)]
struct ThreeFieldsRef<'a> {
    supersedes: &'a [IndexId],
    packs: &'a [IndexPack],
    obsolete: &'a [ObsoletePack],
}

/// The version-2 layout, owned for decoding.
#[derive(Deserialize)]
struct TwoFields {
    supersedes: Vec<IndexId>,
    packs: Vec<IndexPack>,
}

impl IndexFile {
    /// Canonical plaintext: two fields when `obsolete` is empty, else three.
    pub fn encode(&self) -> Vec<u8> {
        if self.obsolete.is_empty() {
            encode(&TwoFieldsRef {
                supersedes: &self.supersedes,
                packs: &self.packs,
            })
        } else {
            encode(&ThreeFieldsRef {
                supersedes: &self.supersedes,
                packs: &self.packs,
                obsolete: &self.obsolete,
            })
        }
    }

    /// Decodes either layout and checks every entry on its own (pack bounds are checked
    /// against the pack). A third field holding an empty list is refused: no writer writes
    /// it, and accepting it would give one file two encodings.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        const WHAT: &str = "index file";
        super::check_len(WHAT, bytes.len() as u64, MAX_INDEX_LEN)?;
        let (two, used): (TwoFields, usize) = super::decode_prefix(bytes, WHAT)?;
        let rest = bytes.get(used..).unwrap_or_default();
        let obsolete: Vec<ObsoletePack> = if rest.is_empty() {
            Vec::new()
        } else {
            decode(rest, WHAT)?
        };
        if !rest.is_empty() && obsolete.is_empty() {
            return Err(FormatError::malformed(
                WHAT,
                "an empty obsolete list is encoded (writers omit it)",
            ));
        }
        let f = Self {
            supersedes: two.supersedes,
            packs: two.packs,
            obsolete,
        };
        let live = f.packs.iter().flat_map(|p| &p.blobs);
        for e in live.chain(f.obsolete.iter().flat_map(|p| &p.blobs)) {
            e.validate(WHAT)?;
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

    fn entry(b: u8) -> PackEntry {
        PackEntry {
            blob_type: BlobType::Tree,
            id: BlobId(Id([b; 32])),
            offset: 8,
            length: 50,
            raw_len: 9,
        }
    }

    fn two_field() -> IndexFile {
        IndexFile {
            supersedes: vec![IndexId(Id([1; 32]))],
            packs: vec![IndexPack {
                id: PackId(Id([2; 32])),
                blobs: vec![entry(3)],
            }],
            obsolete: Vec::new(),
        }
    }

    fn with_obsolete() -> IndexFile {
        IndexFile {
            obsolete: vec![ObsoletePack {
                id: PackId(Id([4; 32])),
                marked_unix_ns: -7,
                armed: true,
                waiting_for: vec![[9; 16], [10; 16]],
                blobs: vec![entry(5), entry(6)],
            }],
            ..two_field()
        }
    }

    #[test]
    fn round_trip() {
        for f in [two_field(), with_obsolete()] {
            assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
        }
    }

    #[test]
    fn without_obsolete_packs_the_encoding_is_the_two_field_layout() {
        let f = two_field();
        let old = encode(&(&f.supersedes, &f.packs));
        assert_eq!(f.encode(), old);
        // And the three-field file is the two-field one with the list appended.
        let g = with_obsolete();
        let mut appended = old.clone();
        appended.extend(encode(&g.obsolete));
        assert_eq!(g.encode(), appended);
    }

    #[test]
    fn an_encoded_empty_obsolete_list_is_refused() {
        let mut b = two_field().encode();
        b.extend(0u64.to_le_bytes());
        let e = IndexFile::decode(&b).unwrap_err();
        assert!(e.to_string().contains("empty obsolete list"), "{e}");
    }

    #[test]
    fn an_obsolete_entry_is_validated_like_a_live_one() {
        let mut f = with_obsolete();
        f.obsolete[0].blobs[1].length = 3;
        let e = IndexFile::decode(&f.encode()).unwrap_err();
        assert!(e.to_string().contains("shorter than its seal"), "{e}");
    }

    #[test]
    fn a_truncated_obsolete_list_is_malformed() {
        let b = with_obsolete().encode();
        assert!(IndexFile::decode(&b[..b.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(f) = IndexFile::decode(&bytes) {
                // Canonical: what decodes encodes to the same bytes.
                prop_assert_eq!(f.encode(), bytes);
            }
        }
    }
}
