//! Grouping the blobs a copy reads by source pack, and coalescing neighbours of one pack into
//! one ranged read. Pure: unit-tested without storage.
//!
//! Two blobs of one pack share a read when the gap between them is at most [`MAX_GAP`] and the
//! read stays within [`MAX_READ`]: on an object store a request costs a round trip (tens of
//! milliseconds), in which 256 KiB more arrive at ordinary bandwidths, so reading a small gap
//! is cheaper than a second request; the cap bounds the memory one read holds.

use crate::format::pack::PackEntry;
use crate::id::PackId;
use crate::repo::BlobLocation;

/// Largest gap between two blobs of one pack that one read spans.
pub const MAX_GAP: u64 = 256 << 10;
/// Largest coalesced read. A single blob larger than this is read alone.
pub const MAX_READ: u64 = 8 << 20;

/// One ranged read of a source pack and the blobs it covers, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadGroup {
    /// The pack.
    pub pack: PackId,
    /// First byte read.
    pub offset: u64,
    /// Bytes read.
    pub len: u64,
    /// The blobs inside `offset..offset + len`.
    pub entries: Vec<PackEntry>,
}

/// Groups `locations` into reads: by pack, in offset order, neighbours coalesced. The same
/// location given twice is read once.
pub fn group(mut locations: Vec<BlobLocation>) -> Vec<ReadGroup> {
    locations.sort_by_key(|l| (l.pack, l.entry.offset, l.entry.id));
    locations.dedup_by(|a, b| a.pack == b.pack && a.entry.offset == b.entry.offset);
    let mut out: Vec<ReadGroup> = Vec::new();
    for l in locations {
        let (start, end) = (u64::from(l.entry.offset), l.entry.end());
        if let Some(g) = out.last_mut() {
            let g_end = g.offset + g.len;
            if g.pack == l.pack
                && start >= g_end
                && start - g_end <= MAX_GAP
                && end - g.offset <= MAX_READ
            {
                g.len = end - g.offset;
                g.entries.push(l.entry);
                continue;
            }
        }
        out.push(ReadGroup {
            pack: l.pack,
            offset: start,
            len: end - start,
            entries: vec![l.entry],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;
    use crate::id::{BlobId, Id};

    fn loc(pack: u8, offset: u32, length: u32) -> BlobLocation {
        BlobLocation {
            pack: PackId(Id([pack; 32])),
            entry: PackEntry {
                blob_type: BlobType::Data,
                id: BlobId(Id([offset as u8; 32])),
                offset,
                length,
                raw_len: length,
            },
        }
    }

    #[test]
    fn neighbours_share_a_read_and_a_far_blob_gets_its_own() {
        let gap = MAX_GAP as u32;
        let third = 108 + gap; // exactly MAX_GAP after the second blob: coalesced
        let fourth = third + 100 + gap + 1; // one byte more: a read of its own
        let g = group(vec![
            loc(1, fourth, 100),
            loc(1, 8, 50),
            loc(1, 58, 50),
            loc(1, third, 100),
        ]);
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!((g[0].offset, g[0].len), (8, u64::from(third) + 100 - 8));
        assert_eq!(g[0].entries.len(), 3);
        assert_eq!((g[1].offset, g[1].len), (u64::from(fourth), 100));
    }

    #[test]
    fn packs_are_never_mixed_and_reads_stay_under_the_cap() {
        let half = (MAX_READ / 2) as u32;
        let g = group(vec![
            loc(2, 8, 10),
            loc(1, 8, half),
            loc(1, 8 + half, half),
            loc(1, 8 + 2 * half, 10), // would pass MAX_READ
            loc(1, 8, half),          // duplicate location: read once
        ]);
        let shapes: Vec<(u8, usize)> = g.iter().map(|r| (r.pack.0.0[0], r.entries.len())).collect();
        assert_eq!(shapes, vec![(1, 2), (1, 1), (2, 1)]);
        assert!(g.iter().all(|r| r.len <= MAX_READ));
        // A single blob over the cap is still read, alone.
        let big = group(vec![loc(3, 8, (MAX_READ + 1) as u32)]);
        assert_eq!(big[0].len, MAX_READ + 1);
    }

    #[test]
    fn every_blob_lies_inside_its_read() {
        let g = group(
            (0..50)
                .map(|i| loc(i % 3, 8 + i as u32 * 70_000, 60_000))
                .collect(),
        );
        let n: usize = g.iter().map(|r| r.entries.len()).sum();
        assert_eq!(n, 50);
        for r in &g {
            for e in &r.entries {
                assert!(u64::from(e.offset) >= r.offset && e.end() <= r.offset + r.len);
            }
        }
    }
}
