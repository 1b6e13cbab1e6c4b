//! `check --read-data`: reading packs back and verifying them, in bounded memory.
//!
//! A pack of at most [`WHOLE`] bytes (every pack of the default 8 MiB target) is read in one
//! request and its header taken from its tail: one request per pack, as restic makes, where
//! an object store charges a round trip (and some servers a whole-object read) per request.
//! A larger pack is read once, front to back, in pieces of about [`PIECE`] bytes, each ending
//! at the end of a blob (a piece grows by at most one blob past `PIECE`), after one ranged
//! read of its tail for the header. Either way every byte goes through the BLAKE3 that names
//! the pack, and every blob is opened and checked against its id from the bytes holding it,
//! and a reader holds at most `max(WHOLE, PIECE + largest blob)`: `readers × 12 MiB` for
//! packs of the usual sizes, whatever the pack size (up to 512 MiB by configuration, 1 GiB by
//! the cap). Packs are read by a pool of `reads_in_flight` threads, so that many requests are
//! in flight.

use std::collections::HashMap;

use super::{Failure, classify, reason_of};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::pack::{MAX_PACK_LEN, PackEntry};
use crate::id::{BlobId, Id, PackId};
use crate::ops::check::Finding;
use crate::repo::Repository;

/// Bytes of a pack read at once (plus the rest of a blob that straddles the end).
pub const PIECE: u64 = 4 << 20;
/// Packs up to this size are read in one request: the default target (8 MiB) plus its last
/// blob and header.
pub const WHOLE: u64 = 3 * PIECE;

/// The threads that read packs: `n`, or twice the cores and at least 4 when `n` is 0.
pub fn reader_pool(n: usize) -> Result<rayon::ThreadPool> {
    let n = match n {
        0 => {
            let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
            (2 * cores).max(4)
        }
        n => n,
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("cista-check-{i}"))
        .build()
        .map_err(|e| Error::io("check threads", std::io::Error::other(e)))
}

/// Where the pieces of a pack of `len` bytes end, given its header's entries (ascending,
/// non-overlapping, inside the pack: the header reader checked that).
pub fn pieces(len: u64, entries: &[PackEntry], piece: u64) -> Vec<u64> {
    let mut ends = Vec::new();
    let mut pos = 0u64;
    let mut next = 0usize;
    while pos < len {
        let mut end = (pos + piece).min(len);
        while next < entries.len() && entries[next].end() <= end {
            next += 1;
        }
        if let Some(e) = entries.get(next)
            && u64::from(e.offset) < end
        {
            end = e.end().min(len);
            next += 1;
        }
        ends.push(end);
        pos = end;
    }
    ends
}

/// Reads one pack and verifies it; returns the problems found. Errors that are not about the
/// pack (a transient storage failure) fail the check.
pub fn read_pack(
    repo: &Repository,
    id: &PackId,
    len: u64,
    indexed: &[PackEntry],
) -> Result<Vec<Finding>> {
    read_pack_within(repo, id, len, indexed, WHOLE)
}

/// [`read_pack`], reading a pack whole when it is at most `whole` bytes.
fn read_pack_within(
    repo: &Repository,
    id: &PackId,
    len: u64,
    indexed: &[PackEntry],
    whole_limit: u64,
) -> Result<Vec<Finding>> {
    let pack = *id;
    // The listed size against the cap before reading (FORMAT §20).
    if len > MAX_PACK_LEN {
        return Ok(vec![Finding::PackDamaged {
            pack,
            reason: format!("{len} bytes, more than the {MAX_PACK_LEN}-byte cap"),
        }]);
    }
    let gone = || vec![Finding::PackMissing { pack }];
    let damaged = |e: crate::backend::BackendError| -> Result<Vec<Finding>> {
        Ok(match classify(e.into())? {
            Failure::Gone => gone(),
            Failure::Damaged(reason) | Failure::Newer(reason) => {
                vec![Finding::PackDamaged { pack, reason }]
            }
        })
    };
    // A small pack whole (its header from its own tail), a large one's header first (one
    // ranged read of the tail, usually): the header says where the blobs are. A damaged
    // header is reported only once the whole pack was hashed, since a pack whose bytes do
    // not match its name is reported as that.
    let mut whole = None;
    let header = if len <= whole_limit {
        let bytes = match repo.backend().read_range(FileType::Pack, &id.0, 0, len) {
            Ok(b) => b,
            Err(e) => return damaged(e),
        };
        let h = repo.pack_header_from_bytes(id, &bytes);
        whole = Some(bytes);
        h
    } else {
        repo.read_pack_header(id, len)
    };
    let (entries, header_damage) = match header {
        Ok(h) => (h.entries, None),
        Err(e) => match classify(e)? {
            Failure::Gone => return Ok(gone()),
            Failure::Damaged(r) | Failure::Newer(r) => (Vec::new(), Some(r)),
        },
    };
    let mut hasher = blake3::Hasher::new();
    let mut plain = Vec::new();
    let mut blob_damage = Vec::new();
    let mut pos = 0u64;
    let mut next = 0usize;
    let ends = if whole.is_some() {
        vec![len]
    } else {
        pieces(len, &entries, PIECE)
    };
    for end in ends {
        let read = match whole.take() {
            Some(bytes) => Ok(bytes),
            None => repo
                .backend()
                .read_range(FileType::Pack, &id.0, pos, end - pos),
        };
        let mut bytes = match read {
            Ok(b) => b,
            Err(e) => return damaged(e),
        };
        hasher.update(&bytes);
        while let Some(e) = entries.get(next)
            && e.end() <= end
        {
            // The header reader checked the entries; stay panic-free all the same.
            let sealed = u64::from(e.offset)
                .checked_sub(pos)
                .and_then(|at| bytes.get_mut(at as usize..at as usize + e.length as usize));
            // Opened in place: the piece was hashed already.
            let reason = match sealed {
                None => Some("it lies outside the pack".to_owned()),
                Some(sealed) => repo
                    .open_blob_into(e, sealed, &mut plain)
                    .err()
                    .map(|err| reason_of(&err)),
            };
            if let Some(reason) = reason {
                blob_damage.push(Finding::BlobDamaged {
                    pack,
                    blob: e.id,
                    reason,
                });
            }
            next += 1;
        }
        pos = end;
    }
    if Id(*hasher.finalize().as_bytes()) != id.0 {
        return Ok(vec![Finding::PackHashMismatch { pack }]);
    }
    if let Some(reason) = header_damage {
        return Ok(vec![Finding::PackDamaged { pack, reason }]);
    }
    let mut found = Vec::new();
    let in_header: HashMap<BlobId, Vec<&PackEntry>> =
        entries.iter().fold(HashMap::new(), |mut m, e| {
            m.entry(e.id).or_default().push(e);
            m
        });
    for e in indexed {
        if !in_header.get(&e.id).is_some_and(|v| v.contains(&e)) {
            found.push(Finding::HeaderIndexMismatch { pack, blob: e.id });
        }
    }
    found.extend(blob_damage);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;

    fn entry(offset: u32, length: u32) -> PackEntry {
        PackEntry {
            blob_type: BlobType::Data,
            id: BlobId(Id([offset as u8; 32])),
            offset,
            length,
            raw_len: length,
        }
    }

    /// Both ways of reading a pack find the same (nothing on an intact pack, the damaged
    /// blob on a damaged one); whole, it takes one request.
    #[test]
    fn a_pack_read_whole_or_in_pieces_gives_the_same_findings() {
        use std::sync::Arc;

        use crate::backend::Backend;
        use crate::backend::fault::{FaultBackend, Op};
        use crate::backend::opendal::OpendalBackend;
        use crate::repo::packer::{Packer, SealedBlob};

        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let writer = crate::repo::tests::repo_on(mem.clone());
        let packer = Packer::new(&writer).unwrap();
        for i in 0..40u8 {
            let data = vec![i; 10_000 + usize::from(i)];
            let id = writer.blob_id(&data);
            let sealed = writer.seal_blob(BlobType::Data, &id, &data).unwrap();
            let raw_len = data.len() as u32;
            packer
                .add(SealedBlob {
                    blob_type: BlobType::Data,
                    id,
                    raw_len,
                    sealed,
                })
                .unwrap();
        }
        let pack = packer.finish().unwrap().remove(0);
        let len = mem.size(FileType::Pack, &pack.id.0).unwrap();
        let damaged_at = u64::from(pack.blobs[3].offset) + 30;
        for (limit, requests) in [(u64::MAX, 1), (0, 2)] {
            let fb = Arc::new(FaultBackend::new(mem.clone()));
            let reader = Repository::open(fb.clone(), b"pw").unwrap();
            let before = fb.calls(Op::ReadRange);
            let found = read_pack_within(&reader, &pack.id, len, &pack.blobs, limit).unwrap();
            assert!(found.is_empty(), "{found:?}");
            assert_eq!(fb.calls(Op::ReadRange) - before, requests);

            let bad = Arc::new(FaultBackend::new(mem.clone()).corrupt_reads(
                FileType::Pack,
                damaged_at,
                2,
            ));
            let reader = Repository::open(bad, b"pw").unwrap();
            let found = read_pack_within(&reader, &pack.id, len, &pack.blobs, limit).unwrap();
            assert!(
                matches!(found.as_slice(), [Finding::PackHashMismatch { .. }]),
                "{found:?}"
            );
        }
    }

    #[test]
    fn pieces_end_at_blob_ends_and_cover_the_pack() {
        // Blobs at [8, 108), [108, 358), [400, 500); the header and trailer after 500.
        let es = [entry(8, 100), entry(108, 250), entry(400, 100)];
        assert_eq!(pieces(600, &es, 100), [108, 358, 500, 600]);
        assert_eq!(pieces(600, &es, 1000), [600]);
        assert_eq!(pieces(0, &es, 100), Vec::<u64>::new());
    }

    #[test]
    fn a_blob_longer_than_a_piece_is_read_whole() {
        let es = [entry(8, 1000)];
        assert_eq!(pieces(1100, &es, 100), [1008, 1100]);
    }

    #[test]
    fn without_a_header_the_pack_is_still_read_whole() {
        assert_eq!(pieces(250, &[], 100), [100, 200, 250]);
    }

    proptest::proptest! {
        #[test]
        fn every_blob_lies_in_one_piece(
            lens in proptest::collection::vec(41u32..500, 0..30),
            piece in 1u64..2000,
        ) {
            let mut es = Vec::new();
            let mut off = 8u32;
            for l in lens {
                es.push(entry(off, l));
                off += l + 3;
            }
            let len = u64::from(off) + 50;
            let ends = pieces(len, &es, piece);
            proptest::prop_assert_eq!(ends.last().copied(), Some(len));
            proptest::prop_assert!(ends.windows(2).all(|w| w[0] < w[1]));
            for e in &es {
                let i = ends.partition_point(|&x| x <= u64::from(e.offset));
                proptest::prop_assert!(e.end() <= ends[i], "blob {:?} straddles", e);
            }
        }
    }
}
