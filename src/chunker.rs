//! Content-defined chunking: FastCDC (v2020) with the repository's sizes and a secret gear
//! table (docs/FORMAT.md, "Chunking").
//!
//! Boundaries depend only on content, never on how a stream was split into reads: a cut is
//! accepted only when it is final (a cut found inside the buffer, or a full `max` window, or
//! the end of the stream), so a file chunks identically whether read whole or in segments.

use fastcdc::v2020::{self, Normalization};

use crate::format::config::ChunkerParams;

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

    /// Cuts all of `data` (a whole stream) into chunk lengths.
    pub fn cut_all(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(n) = self.next_cut(&data[pos..], true) {
            out.push(n);
            pos += n;
        }
        out
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
