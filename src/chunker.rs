//! Content-defined chunking: FastCDC (v2020) with the repository's sizes and a secret gear
//! table (docs/FORMAT.md, "Chunking").
//!
//! Boundaries depend only on content, never on how a stream was split into reads: a cut is
//! accepted only when it is final (a cut found inside the buffer, or a full `max` window, or
//! the end of the stream), so a file chunks identically whether read whole or in segments.

use fastcdc::v2020::{self, Normalization};

use crate::format::config::ChunkerParams;

/// Buffers at least this long are cut by two threads ([`Chunker::cuts`]).
pub const PARALLEL_CUT_MIN: usize = 2 << 20;

/// A FastCDC chunker bound to one repository's parameters and gear table.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The gear table is secret: it would let storage predict boundaries.
        f.debug_struct("Chunker")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Chunker {
    /// `params` must have passed [`ChunkerParams::validate`].
    pub fn new(params: ChunkerParams, gear: [u64; 256]) -> Self {
        let (mask_s, mask_l) = v2020::select_masks(params.avg as usize, Normalization::Level1);
        let mut gear_ls = [0u64; 256];
        for (ls, g) in gear_ls.iter_mut().zip(gear.iter()) {
            *ls = g << 1;
        }
        Self {
            params,
            mask_s,
            mask_l,
            gear: Box::new(gear),
            gear_ls: Box::new(gear_ls),
        }
    }

    /// The sizes in use.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the chunk starting at `data[0]`, or `None` when the cut cannot be known
    /// without more data. `eof` says `data` runs to the end of the stream. Never returns 0
    /// for non-empty data.
    pub fn next_cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        if data.is_empty() {
            return None;
        }
        let p = &self.params;
        let (_, count) = v2020::cut_gear(
            data,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        if eof || count < data.len() || data.len() >= p.max as usize {
            Some(count.max(1))
        } else {
            None
        }
    }

    /// The final cuts of `data`, which starts at a chunk boundary (`eof`: it runs to the end
    /// of the stream), as byte ranges: exactly those of a sequential pass with
    /// [`Chunker::next_cut`], found by two threads when `data` is large.
    ///
    /// Why: the chunker is sequential, and on a night where most of a large dump is unchanged
    /// it is the bottleneck (the chunks it finds only need a BLAKE3 each). Boundaries depend
    /// only on the bytes since the chunk start, so a second pass started at the middle, on a
    /// guessed boundary, finds the same boundaries as the first pass once the two meet: the
    /// first half is cut from the start while the second is cut from the middle, then the
    /// first pass goes on past the middle until it lands on one of the second pass's
    /// boundaries (usually within a chunk or two) and takes the rest from it. If they never
    /// meet (long runs cut only at `max`, such as zeros), the first pass simply finishes.
    pub fn cuts(&self, data: &[u8], eof: bool) -> Vec<std::ops::Range<usize>> {
        let mid = data.len() / 2;
        if data.len() < PARALLEL_CUT_MIN || mid < self.params.max as usize {
            return self.cuts_from(data, 0, usize::MAX, eof);
        }
        let (mut first, second) = rayon::join(
            || self.cuts_from(data, 0, mid, eof),
            || self.cuts_from(data, mid, usize::MAX, eof),
        );
        let mut pos = first.last().map_or(0, |r| r.end);
        loop {
            if pos == mid {
                first.extend(second);
                return first;
            }
            if let Ok(i) = second.binary_search_by_key(&pos, |r| r.end) {
                first.extend_from_slice(&second[i + 1..]);
                return first;
            }
            match self.next_cut(&data[pos..], eof) {
                Some(n) => {
                    first.push(pos..pos + n);
                    pos += n;
                }
                None => return first,
            }
        }
    }

    /// Sequential cuts of `data[start..]`, stopping after the first that ends at or past
    /// `stop`.
    fn cuts_from(
        &self,
        data: &[u8],
        start: usize,
        stop: usize,
        eof: bool,
    ) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut pos = start;
        while pos < stop {
            let Some(n) = self.next_cut(&data[pos..], eof) else {
                break;
            };
            out.push(pos..pos + n);
            pos += n;
        }
        out
    }

    /// Cuts all of `data` (a whole stream) into chunk lengths.
    pub fn cut_all(&self, data: &[u8]) -> Vec<usize> {
        self.cuts_from(data, 0, usize::MAX, true)
            .into_iter()
            .map(|r| r.len())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::vectors::samples::pseudo_random;
    use proptest::prelude::*;

    const SMALL: ChunkerParams = ChunkerParams {
        min: 256,
        avg: 1024,
        max: 4096,
    };

    fn chunker() -> Chunker {
        let gear = crate::crypto::MasterKey::from_bytes(&[9; 96]).gear_table();
        Chunker::new(SMALL, gear)
    }

    #[test]
    fn sizes_respect_bounds() {
        let data = pseudo_random(200_000, 3);
        let cuts = chunker().cut_all(&data);
        assert_eq!(cuts.iter().sum::<usize>(), data.len());
        for &c in &cuts[..cuts.len() - 1] {
            assert!((256..=4096).contains(&c), "{c}");
        }
        let avg = data.len() / cuts.len();
        assert!((512..=2048).contains(&avg), "average {avg}");
    }

    #[test]
    fn boundary_sizes() {
        let c = chunker();
        assert!(c.cut_all(&[]).is_empty());
        assert_eq!(c.cut_all(&[1]), vec![1]);
        assert_eq!(c.cut_all(&vec![0; 256]), vec![256]);
        assert_eq!(c.cut_all(&vec![0; 4096]), vec![4096]);
        assert_eq!(c.cut_all(&vec![0; 4097]), vec![4096, 1]);
        assert_eq!(c.next_cut(&[1, 2, 3], false), None);
    }

    #[test]
    fn secret_gear_changes_boundaries() {
        let data = pseudo_random(100_000, 5);
        let other = Chunker::new(
            SMALL,
            crate::crypto::MasterKey::from_bytes(&[8; 96]).gear_table(),
        );
        assert_ne!(chunker().cut_all(&data), other.cut_all(&data));
    }

    /// Sequential reference for [`Chunker::cuts`].
    fn sequential(c: &Chunker, data: &[u8], eof: bool) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(n) = c.next_cut(&data[pos..], eof) {
            out.push(pos..pos + n);
            pos += n;
        }
        out
    }

    #[test]
    fn parallel_cuts_equal_sequential_ones_even_when_the_passes_never_meet() {
        let c = chunker();
        let mut data = pseudo_random(3 << 20, 11);
        // Zeros cut only at `max`: a pass started mid-run never meets the first one there.
        data[(1 << 20)..(2 << 20) + 777].fill(0);
        for eof in [true, false] {
            for len in [data.len(), PARALLEL_CUT_MIN, (5 << 19) + 3] {
                assert_eq!(c.cuts(&data[..len], eof), sequential(&c, &data[..len], eof));
            }
        }
        let zeros = vec![0u8; 3 << 20];
        assert_eq!(c.cuts(&zeros, true), sequential(&c, &zeros, true));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn parallel_cuts_equal_sequential_ones(
            seed in any::<u64>(),
            len in PARALLEL_CUT_MIN..(3 << 20),
            zeros in (0usize..(3 << 20), 0usize..200_000),
            eof in any::<bool>(),
        ) {
            let mut data = pseudo_random(len, seed);
            let z0 = zeros.0.min(len);
            let z1 = (z0 + zeros.1).min(len);
            data[z0..z1].fill(0);
            let c = chunker();
            prop_assert_eq!(c.cuts(&data, eof), sequential(&c, &data, eof));
        }
    }

    proptest! {
        #[test]
        fn segmented_equals_whole(seed in any::<u64>(), len in 0usize..30_000, seg in 1usize..9000) {
            let data = pseudo_random(len, seed);
            let c = chunker();
            let whole = c.cut_all(&data);
            // Feed the chunker growing windows, as the backup reader does.
            let mut got = Vec::new();
            let mut start = 0;
            let mut end = 0;
            loop {
                match c.next_cut(&data[start..end], end == data.len()) {
                    Some(n) => { got.push(n); start += n; }
                    None if end == data.len() => break,
                    None => end = (end + seg).min(data.len()),
                }
            }
            prop_assert_eq!(got.iter().sum::<usize>(), data.len());
            prop_assert_eq!(got, whole);
        }
    }
}
