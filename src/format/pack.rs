//! Pack files (docs/FORMAT.md, "Packs"): many sealed blobs, then a sealed header listing them,
//! then a 4-byte trailer giving the sealed header's length.
//!
//! ```text
//! header(8, kind 'P') | sealed blob | sealed blob | ... | padding | sealed pack header | u32 LE len
//! ```
//! This module owns the layout arithmetic and the header plaintext; sealing is the caller's.

use serde::{Deserialize, Serialize};

use super::{FormatError, HEADER_LEN, ObjectKind, check_len, decode_capped, encode, header};
use crate::id::BlobId;

/// Largest pack file read.
pub const MAX_PACK_LEN: u64 = 1 << 30;
/// Largest sealed pack header read.
pub const MAX_PACK_HEADER_LEN: u64 = 16 << 20;
/// Largest blob plaintext (after decompression) written or read.
pub const MAX_BLOB_LEN: u32 = 64 << 20;
/// Longest sealed blob an entry may name: below 128 MiB, twice the content cap, which no
/// sealed form of at most [`MAX_BLOB_LEN`] bytes of content reaches (a raw one is 41 bytes
/// longer; a zstd frame that is kept is shorter than its content).
pub const MAX_SEALED_BLOB_LEN: u32 = (128 << 20) - 1;
/// Writers close a pack at this many blobs, so its sealed header stays far below
/// [`MAX_PACK_HEADER_LEN`] (48 bytes per entry) whatever the pack size.
pub const MAX_PACK_BLOBS: usize = 100_000;
/// Bytes after the sealed header.
pub const TRAILER_LEN: usize = 4;
/// Nonce plus tag: what sealing adds to a plaintext.
pub const SEAL_OVERHEAD: u32 = 24 + 16;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum BlobType {
    /// File content.
    Data,
    /// An encoded [`crate::format::tree::Tree`].
    Tree,
}

impl BlobType {
    /// Byte used in associated data.
    pub fn code(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::Tree => 1,
        }
    }
}

/// Where one blob lies in a pack. Shared by pack headers and index files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Keyed hash of the blob's plaintext.
    pub id: BlobId,
    /// Byte offset of the sealed blob from the start of the pack.
    pub offset: u32,
    /// Length of the sealed blob (nonce, ciphertext, tag).
    pub length: u32,
    /// Length of the plaintext after decompression.
    pub raw_len: u32,
}

impl PackEntry {
    /// Checks the entry is plausible on its own: a sealed blob holds at least a payload flag,
    /// is shorter than [`MAX_SEALED_BLOB_LEN`] and ends within the largest pack, and no blob
    /// may expand past [`MAX_BLOB_LEN`]. These caps are also what lets the in-memory index
    /// pack a location into 14 bytes (src/repo/index.rs).
    pub fn validate(&self, what: &'static str) -> Result<(), FormatError> {
        if self.length < SEAL_OVERHEAD + 1 {
            return Err(FormatError::malformed(what, "blob shorter than its seal"));
        }
        if self.raw_len > MAX_BLOB_LEN
            || self.length > MAX_SEALED_BLOB_LEN
            || self.end() > MAX_PACK_LEN
            || (self.offset as usize) < HEADER_LEN
        {
            return Err(FormatError::malformed(
                what,
                "blob length or offset out of range",
            ));
        }
        Ok(())
    }

    /// One past the last byte of the sealed blob.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.length)
    }
}

/// Plaintext of a pack's sealed header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackHeader {
    /// Every blob in the pack, in file order.
    pub entries: Vec<PackEntry>,
}

impl PackHeader {
    /// Canonical plaintext.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and checks that every entry lies between the pack header and `blobs_end` (the
    /// offset where the sealed header starts) without overlapping another.
    pub fn decode(bytes: &[u8], blobs_end: u64) -> Result<Self, FormatError> {
        let what = "pack header";
        let h: Self = decode_capped::<_, { MAX_PACK_HEADER_LEN as usize }>(bytes, what)?;
        let mut last_end = HEADER_LEN as u64;
        for e in &h.entries {
            e.validate(what)?;
            if u64::from(e.offset) < last_end || e.end() > blobs_end {
                return Err(FormatError::malformed(
                    what,
                    "blob overlaps or lies outside the pack",
                ));
            }
            last_end = e.end();
        }
        Ok(h)
    }
}

/// The pack's leading 8 bytes.
pub fn pack_magic() -> [u8; HEADER_LEN] {
    header(ObjectKind::Pack)
}

/// Associated data of a sealed blob: header (kind 'B'), blob type, blob id.
pub fn blob_ad(blob_type: BlobType, id: &BlobId) -> [u8; HEADER_LEN + 1 + 32] {
    let mut ad = [0u8; HEADER_LEN + 1 + 32];
    ad[..HEADER_LEN].copy_from_slice(&header(ObjectKind::Blob));
    ad[HEADER_LEN] = blob_type.code();
    ad[HEADER_LEN + 1..].copy_from_slice(id.as_bytes());
    ad
}

/// Associated data of the sealed pack header.
pub fn pack_header_ad() -> [u8; HEADER_LEN] {
    header(ObjectKind::PackHeader)
}

/// Given a pack's total length and its last four bytes, returns the sealed header's range.
pub fn header_range(pack_len: u64, trailer: [u8; TRAILER_LEN]) -> Result<(u64, u64), FormatError> {
    let what = "pack";
    check_len(what, pack_len, MAX_PACK_LEN)?;
    let fixed = (HEADER_LEN + TRAILER_LEN) as u64;
    if pack_len < fixed {
        return Err(FormatError::Truncated { what });
    }
    let len = u64::from(u32::from_le_bytes(trailer));
    check_len("pack header", len, MAX_PACK_HEADER_LEN)?;
    if len > pack_len - fixed {
        return Err(FormatError::malformed(what, "header length exceeds pack"));
    }
    let start = pack_len - TRAILER_LEN as u64 - len;
    Ok((start, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use proptest::prelude::*;

    fn entry(offset: u32, length: u32) -> PackEntry {
        PackEntry {
            blob_type: BlobType::Data,
            id: BlobId(Id([3; 32])),
            offset,
            length,
            raw_len: 10,
        }
    }

    #[test]
    fn header_round_trip_and_entry_size() {
        let h = PackHeader {
            entries: vec![entry(8, 100), entry(108, 41)],
        };
        let b = h.encode();
        assert_eq!(b.len(), 8 + 2 * (4 + 32 + 12));
        assert_eq!(PackHeader::decode(&b, 149).unwrap(), h);
    }

    #[test]
    fn fail_overlap_outside_short() {
        let h = PackHeader {
            entries: vec![entry(8, 100), entry(100, 41)],
        };
        assert!(PackHeader::decode(&h.encode(), 1000).is_err());
        let h = PackHeader {
            entries: vec![entry(8, 100)],
        };
        assert!(PackHeader::decode(&h.encode(), 107).is_err());
        let h = PackHeader {
            entries: vec![entry(8, 40)],
        };
        assert!(PackHeader::decode(&h.encode(), 1000).is_err());
        let h = PackHeader {
            entries: vec![entry(0, 100)],
        };
        assert!(PackHeader::decode(&h.encode(), 1000).is_err());
    }

    #[test]
    fn header_range_checks() {
        assert_eq!(header_range(100, 20u32.to_le_bytes()).unwrap(), (76, 96));
        assert!(header_range(100, 89u32.to_le_bytes()).is_err());
        assert!(header_range(11, 0u32.to_le_bytes()).is_err());
        assert!(header_range(MAX_PACK_LEN + 1, 0u32.to_le_bytes()).is_err());
        assert!(header_range(u64::MAX, u32::MAX.to_le_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), end in any::<u64>()) {
            let _ = PackHeader::decode(&bytes, end);
        }
        #[test]
        fn header_range_never_panics(len in any::<u64>(), t in any::<[u8; 4]>()) {
            if let Ok((s, e)) = header_range(len, t) { prop_assert!(s <= e && e <= len); }
        }
    }
}
