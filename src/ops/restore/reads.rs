//! The read plan of a restore: which byte ranges of which packs to request so that every
//! wanted blob is fetched once, with neighbouring blobs of one pack in one request.
//!
//! Pure: entries in, requests out, no I/O, so the grouping rules are unit-tested here and the
//! executor (`content.rs`) only fetches and verifies.
//!
//! Why coalesce: a pack holds its blobs in random order (docs/FORMAT.md §13), so the chunks
//! of one file are scattered over its packs while the chunks of files backed up together lie
//! side by side. One request per chunk costs a round trip each against an object store and a
//! syscall each locally; grouping every wanted blob of a batch of files by pack and reading
//! runs of them at once costs one request per run.
//!
//! Rules (docs/DESIGN.md "Restore read path"):
//! - A request covers blobs of one pack in file order; the next blob joins it when the bytes
//!   between them (blobs nobody wants, padding) are fewer than [`Limits::gap`] and the request
//!   stays within [`Limits::cap`]. Reading through a small gap is cheaper than a second round
//!   trip; beyond it, the wasted bytes cost more.
//! - A blob longer than the cap gets a request of its own (its length is still checked
//!   against the blob cap by the executor before anything is read).
//! - A blob wanted by several files, or several times in one, is fetched once and written to
//!   every place (its `targets`).
//! - Requests come in the order of the first file they serve, so files are completed (and
//!   closed) roughly in plan order.

use crate::format::pack::PackEntry;
use crate::id::PackId;

/// One place a blob's content goes: the file (its number in the batch) and the offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Number of the file in the batch.
    pub file: u32,
    /// Byte offset in that file.
    pub offset: u64,
}

/// A blob the restore needs, where it is stored, and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Pack holding the preferred copy ([`crate::repo::Index::get`]).
    pub pack: PackId,
    /// The blob's entry in that pack.
    pub entry: PackEntry,
    /// Where its content is written.
    pub target: Target,
}

/// A blob inside a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The blob's entry in the pack (its offset is from the start of the pack).
    pub entry: PackEntry,
    /// Every place its content goes, in ascending order.
    pub targets: Vec<Target>,
}

/// One ranged read of a pack and the blobs it yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The pack read.
    pub pack: PackId,
    /// First byte read.
    pub offset: u64,
    /// Bytes read.
    pub len: u64,
    /// The blobs it holds, in file order.
    pub parts: Vec<Part>,
}

impl Request {
    /// The lowest target: what orders the requests.
    fn first_target(&self) -> Option<Target> {
        self.parts
            .iter()
            .filter_map(|p| p.targets.first())
            .min()
            .copied()
    }
}

/// How requests are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Unwanted bytes read through between two wanted blobs of one request, at most.
    pub gap: u64,
    /// Bytes of one request, at most (unless a single blob is longer).
    pub cap: u64,
}

/// Read through gaps under 256 KiB: at the ~100 MB/s and ~10 ms of a remote request, 256 KiB
/// take about 2.5 ms to transfer, a quarter of a round trip.
pub const GAP: u64 = 256 << 10;
/// Read through gaps under 4 MiB on a remote store: a round trip to an object store over a
/// WAN costs 20–50 ms, in which 100 MB/s bring 2–5 MB; and a restore of the latest snapshot
/// leaves whole dead chunks (up to a few MiB) between the blobs it wants in older packs.
pub const REMOTE_GAP: u64 = 4 << 20;
/// Requests of at most 4 MiB: half a default pack (8 MiB), so a pack is read in a few
/// parallel pieces, and each request in flight holds at most this much memory.
pub const CAP: u64 = 4 << 20;
/// Requests of at most 12 MiB on a remote store: a whole default pack (8 MiB of blobs, its
/// last blob and header) in one request, as restic reads them, where every request costs a
/// round trip (and some S3 servers a read of the whole object).
pub const REMOTE_CAP: u64 = 12 << 20;
/// The smallest cap [`cap_for`] picks.
pub const MIN_CAP: u64 = 256 << 10;

/// The request cap for a batch of `bytes` of wanted content read by `workers` in parallel:
/// `cap` ([`CAP`] or [`REMOTE_CAP`]), lowered (not below [`MIN_CAP`]) so that a small batch
/// still yields about two requests per worker instead of one request that a single worker
/// handles alone.
pub fn cap_for(bytes: u64, workers: usize, cap: u64) -> u64 {
    let share = bytes / (2 * workers.max(1) as u64).max(1);
    share.clamp(MIN_CAP, cap.max(MIN_CAP))
}

/// Groups `wants` into requests (see the module's rules).
pub fn plan(mut wants: Vec<Want>, limits: Limits) -> Vec<Request> {
    wants.sort_unstable_by_key(|w| (w.pack, w.entry.offset, w.entry.length, w.target));
    let mut requests: Vec<Request> = Vec::new();
    let mut current: Option<Request> = None;
    for w in wants {
        let start = u64::from(w.entry.offset);
        let end = w.entry.end();
        if let Some(r) = current.as_mut()
            && r.pack == w.pack
        {
            // The same blob again (another file, or another place in one file).
            if let Some(last) = r.parts.last_mut()
                && last.entry == w.entry
            {
                last.targets.push(w.target);
                continue;
            }
            let r_end = r.offset + r.len;
            let gap = start.saturating_sub(r_end);
            let new_end = end.max(r_end);
            if gap < limits.gap && new_end - r.offset <= limits.cap {
                r.len = new_end - r.offset;
                r.parts.push(Part {
                    entry: w.entry,
                    targets: vec![w.target],
                });
                continue;
            }
        }
        if let Some(r) = current.take() {
            requests.push(r);
        }
        current = Some(Request {
            pack: w.pack,
            offset: start,
            len: end - start,
            parts: vec![Part {
                entry: w.entry,
                targets: vec![w.target],
            }],
        });
    }
    requests.extend(current);
    let mut keyed: Vec<(Option<Target>, Request)> = requests
        .into_iter()
        .map(|r| (r.first_target(), r))
        .collect();
    keyed.sort_by_key(|(t, r)| (*t, r.pack, r.offset));
    keyed.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;
    use crate::id::{BlobId, Id};

    fn pack(n: u8) -> PackId {
        PackId(Id([n; 32]))
    }

    fn want(p: u8, blob: u8, offset: u32, length: u32, file: u32, at: u64) -> Want {
        Want {
            pack: pack(p),
            entry: PackEntry {
                blob_type: BlobType::Data,
                id: BlobId(Id([blob; 32])),
                offset,
                length,
                raw_len: length,
            },
            target: Target { file, offset: at },
        }
    }

    const L: Limits = Limits {
        gap: 100,
        cap: 1000,
    };

    fn shape(rs: &[Request]) -> Vec<(u8, u64, u64, usize)> {
        rs.iter()
            .map(|r| (r.pack.0.0[0], r.offset, r.len, r.parts.len()))
            .collect()
    }

    #[test]
    fn nothing_wanted_reads_nothing() {
        assert!(plan(Vec::new(), L).is_empty());
    }

    #[test]
    fn adjacent_blobs_of_one_pack_are_one_request_whatever_their_files() {
        let rs = plan(
            vec![
                want(1, 3, 308, 100, 2, 0),
                want(1, 1, 8, 100, 0, 0),
                want(1, 2, 108, 200, 1, 50),
            ],
            L,
        );
        assert_eq!(shape(&rs), [(1, 8, 400, 3)]);
        let offsets: Vec<u32> = rs[0].parts.iter().map(|p| p.entry.offset).collect();
        assert_eq!(offsets, [8, 108, 308], "parts are in file order");
    }

    #[test]
    fn a_gap_below_the_threshold_is_read_through_and_one_at_it_splits() {
        // 99 unwanted bytes between the first two, exactly 100 between the next two.
        let rs = plan(
            vec![
                want(1, 1, 8, 100, 0, 0),
                want(1, 2, 207, 100, 0, 100),
                want(1, 3, 407, 100, 0, 200),
            ],
            L,
        );
        assert_eq!(shape(&rs), [(1, 8, 299, 2), (1, 407, 100, 1)]);
    }

    #[test]
    fn the_cap_splits_a_run_and_a_long_blob_is_its_own_request() {
        let rs = plan(
            vec![
                want(1, 1, 8, 600, 0, 0),
                want(1, 2, 608, 400, 0, 600),
                want(1, 3, 1008, 1, 0, 1000),
                want(1, 4, 1009, 5000, 0, 1001),
            ],
            L,
        );
        assert_eq!(
            shape(&rs),
            [(1, 8, 1000, 2), (1, 1008, 1, 1), (1, 1009, 5000, 1)]
        );
    }

    #[test]
    fn packs_are_never_mixed() {
        let rs = plan(
            vec![want(1, 1, 8, 100, 0, 0), want(2, 2, 108, 100, 0, 100)],
            L,
        );
        assert_eq!(shape(&rs), [(1, 8, 100, 1), (2, 108, 100, 1)]);
    }

    #[test]
    fn a_blob_wanted_twice_is_fetched_once_and_written_twice() {
        let rs = plan(
            vec![
                want(1, 1, 8, 100, 3, 0),
                want(1, 1, 8, 100, 0, 500),
                want(1, 1, 8, 100, 0, 0),
            ],
            L,
        );
        assert_eq!(shape(&rs), [(1, 8, 100, 1)]);
        assert_eq!(
            rs[0].parts[0].targets,
            [
                Target { file: 0, offset: 0 },
                Target {
                    file: 0,
                    offset: 500
                },
                Target { file: 3, offset: 0 }
            ]
        );
    }

    #[test]
    fn requests_come_in_the_order_of_the_files_they_serve() {
        let rs = plan(
            vec![
                want(9, 1, 8, 100, 0, 0),
                want(1, 2, 8, 100, 2, 0),
                want(5, 3, 8, 100, 1, 0),
                want(5, 4, 5000, 100, 0, 100),
            ],
            L,
        );
        assert_eq!(
            shape(&rs),
            [
                (9, 8, 100, 1),
                (5, 5000, 100, 1),
                (5, 8, 100, 1),
                (1, 8, 100, 1)
            ]
        );
    }

    #[test]
    fn overlapping_entries_from_a_hostile_index_stay_within_one_request() {
        // Two different blobs claiming overlapping bytes: both are read, the request covers
        // both, and each is verified on its own by the executor.
        let rs = plan(
            vec![want(1, 1, 8, 100, 0, 0), want(1, 2, 50, 100, 0, 100)],
            L,
        );
        assert_eq!(shape(&rs), [(1, 8, 142, 2)]);
    }

    #[test]
    fn the_cap_shrinks_for_small_batches_within_its_bounds() {
        assert_eq!(cap_for(0, 4, CAP), MIN_CAP);
        assert_eq!(cap_for(8 << 20, 4, CAP), 1 << 20);
        assert_eq!(cap_for(1 << 40, 4, CAP), CAP);
        assert_eq!(cap_for(1 << 40, 8, REMOTE_CAP), REMOTE_CAP);
        assert_eq!(cap_for(1 << 40, 8, 0), MIN_CAP);
        assert_eq!(cap_for(1 << 40, 0, CAP), CAP);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn every_want_is_served_exactly_once_within_limits(
            blobs in proptest::collection::vec((0u8..3, 0u32..50, 1u32..300, 0u32..5), 0..60),
        ) {
            // Blobs laid out without overlap in each pack: blob k at 8 + 400 k.
            let wants: Vec<Want> = blobs
                .iter()
                .enumerate()
                .map(|(i, &(p, slot, len, file))| {
                    want(p, slot as u8, 8 + 400 * slot, len.min(400), file, i as u64)
                })
                .collect();
            let rs = plan(wants.clone(), L);
            let mut served: Vec<(PackId, u32, Target)> = Vec::new();
            for r in &rs {
                proptest::prop_assert!(r.len <= L.cap || r.parts.len() == 1);
                for p in &r.parts {
                    proptest::prop_assert!(u64::from(p.entry.offset) >= r.offset);
                    proptest::prop_assert!(p.entry.end() <= r.offset + r.len);
                    served.extend(p.targets.iter().map(|t| (r.pack, p.entry.offset, *t)));
                }
            }
            let mut expected: Vec<(PackId, u32, Target)> =
                wants.iter().map(|w| (w.pack, w.entry.offset, w.target)).collect();
            served.sort_unstable();
            expected.sort_unstable();
            proptest::prop_assert_eq!(served, expected);
        }
    }
}
