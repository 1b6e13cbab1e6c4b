//! Which packs `check --read-data-subset` reads, with restic's semantics (restic 0.17+
//! `cmd_check.go`), so a nightly cron moves across a repository as it does with restic:
//!
//! - `N/M` (1 <= N <= M <= 256): the packs whose id's first byte modulo M is N-1. The same
//!   packs every time, so running 1/30 .. 30/30 on the days of a month reads everything.
//! - `P%` (0 < P <= 100, a decimal number): `floor(count * P / 100)` packs chosen at random,
//!   at least one when there is any.
//! - `SIZE` (a whole number with a suffix `b`, `k`, `m`, `g` or `t`, powers of 1024): the
//!   percentage SIZE is of the total size of the packs (capped at 100%), then as `P%`.
//!   A bare number is refused, as restic refuses it (it reads as a one-element `N/M`).
//!
//! Only packs named by the index and present in storage are candidates, as in restic.

use crate::error::{Error, Result};
use crate::id::PackId;

/// The largest `M` of `N/M`: the selection looks at one byte of the pack id.
pub const MAX_BUCKETS: u32 = 256;

/// What `--read-data` / `--read-data-subset` selects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadSelection {
    /// Every pack (`--read-data`).
    All,
    /// Group `n` of `m` by the first byte of the pack id.
    Bucket { n: u32, m: u32 },
    /// A random part of the packs, in percent of their number.
    Percent(f64),
    /// A random part of the packs, as many bytes' worth (in proportion of their total size).
    Size(u64),
}

impl ReadSelection {
    /// Parses a `--read-data-subset` value, with restic's checks and messages.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = || {
            Error::InvalidInput(format!(
                "--read-data-subset {s:?} is invalid: give N/M (e.g. 1/5), a percentage (e.g. 2.5%) or a size (e.g. 500m)"
            ))
        };
        if let Some(parts) = int_parts(s) {
            let [n, m] = parts[..] else {
                return Err(invalid());
            };
            if n == 0 || m == 0 || n > m {
                return Err(Error::InvalidInput(
                    "--read-data-subset N/M: N and M must be positive integers and N <= M, e.g. 1/2"
                        .into(),
                ));
            }
            if m > u64::from(MAX_BUCKETS) {
                return Err(Error::InvalidInput(format!(
                    "--read-data-subset N/M: M must be at most {MAX_BUCKETS}"
                )));
            }
            // Both fit: n <= m <= 256.
            return Ok(Self::Bucket {
                n: n as u32,
                m: m as u32,
            });
        }
        if let Some(num) = s.strip_suffix('%') {
            let p: f64 = num.parse().map_err(|_| invalid())?;
            if !p.is_finite() || p <= 0.0 || p > 100.0 {
                return Err(Error::InvalidInput(
                    "--read-data-subset P%: P must be above 0% and at most 100%".into(),
                ));
            }
            return Ok(Self::Percent(p));
        }
        let n = crate::ops::backup::parse_size(s).map_err(|_| invalid())?;
        if n == 0 {
            return Err(Error::InvalidInput(
                "--read-data-subset SIZE: SIZE must be above 0".into(),
            ));
        }
        Ok(Self::Size(n))
    }

    /// The packs to read out of `packs` (id, size), in the order given. `seed` drives the
    /// random selections (a fresh random value in `check`, fixed in tests).
    pub fn select(&self, packs: &[(PackId, u64)], seed: u64) -> Vec<(PackId, u64)> {
        match *self {
            Self::All => packs.to_vec(),
            Self::Bucket { n, m } => packs
                .iter()
                .filter(|(p, _)| u32::from(p.as_bytes()[0]) % m == n - 1)
                .copied()
                .collect(),
            Self::Percent(pct) => random_part(packs, pct, seed),
            Self::Size(want) => {
                let total: u64 = packs.iter().map(|(_, n)| n).sum();
                if total == 0 {
                    return packs.to_vec();
                }
                let pct = want.min(total) as f64 / total as f64 * 100.0;
                random_part(packs, pct, seed)
            }
        }
    }
}

/// `s` as '/'-separated unsigned decimal integers (Go's `ParseUint`: digits only), if it is.
fn int_parts(s: &str) -> Option<Vec<u64>> {
    s.split('/')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect()
}

/// `floor(len * pct / 100)` packs (at least one if any) chosen uniformly at random.
fn random_part(packs: &[(PackId, u64)], pct: f64, seed: u64) -> Vec<(PackId, u64)> {
    let count = packs.len();
    let mut k = (count as f64 * (pct / 100.0)) as usize;
    if count > 0 && k < 1 {
        k = 1;
    }
    let k = k.min(count);
    // A partial Fisher-Yates shuffle: the first k of a random permutation.
    let mut order: Vec<usize> = (0..count).collect();
    let mut rng = SplitMix(seed);
    for i in 0..k {
        let span = (count - i) as u64;
        let j = i + (rng.next() % span) as usize;
        order.swap(i, j);
    }
    let mut chosen: Vec<usize> = order[..k].to_vec();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| packs[i]).collect()
}

/// SplitMix64: small, seedable, and good enough to pick packs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A random seed for [`ReadSelection::select`] (time-based if the system has no randomness).
pub fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => crate::ops::now_unix_ns() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn packs(n: usize) -> Vec<(PackId, u64)> {
        (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[0] = i as u8;
                id[1] = (i >> 8) as u8;
                (PackId(Id(id)), 100 + i as u64)
            })
            .collect()
    }

    #[test]
    fn parses_restics_three_forms_and_refuses_the_rest() {
        assert_eq!(
            ReadSelection::parse("1/5").unwrap(),
            ReadSelection::Bucket { n: 1, m: 5 }
        );
        assert_eq!(
            ReadSelection::parse("256/256").unwrap(),
            ReadSelection::Bucket { n: 256, m: 256 }
        );
        assert_eq!(
            ReadSelection::parse("2.5%").unwrap(),
            ReadSelection::Percent(2.5)
        );
        assert_eq!(
            ReadSelection::parse("100%").unwrap(),
            ReadSelection::Percent(100.0)
        );
        assert_eq!(
            ReadSelection::parse("10k").unwrap(),
            ReadSelection::Size(10 << 10)
        );
        assert_eq!(
            ReadSelection::parse("3G").unwrap(),
            ReadSelection::Size(3 << 30)
        );
        assert_eq!(ReadSelection::parse("7b").unwrap(), ReadSelection::Size(7));
        for bad in [
            "", "5", "0/5", "6/5", "1/0", "1/257", "1/2/3", "+1/2", "1/", "0%", "100.1%", "-1%",
            "NaN%", "inf%", "x%", "0k", "5x", "1.5g", "-5k",
        ] {
            let e = ReadSelection::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--read-data-subset"), "{bad:?}: {e}");
        }
        assert!(
            ReadSelection::parse("1/300")
                .unwrap_err()
                .to_string()
                .contains("at most 256")
        );
    }

    #[test]
    fn buckets_partition_the_packs_by_first_byte() {
        let all = packs(1000);
        let mut seen = 0;
        for n in 1..=7 {
            let part = ReadSelection::Bucket { n, m: 7 }.select(&all, 0);
            assert!(
                part.iter()
                    .all(|(p, _)| u32::from(p.as_bytes()[0]) % 7 == n - 1)
            );
            seen += part.len();
        }
        assert_eq!(seen, all.len(), "every pack is in exactly one group");
        assert_eq!(
            ReadSelection::Bucket { n: 1, m: 1 }.select(&all, 0).len(),
            1000
        );
    }

    #[test]
    fn percentage_takes_the_floor_but_at_least_one() {
        let all = packs(10);
        assert_eq!(ReadSelection::Percent(25.0).select(&all, 1).len(), 2);
        assert_eq!(ReadSelection::Percent(0.001).select(&all, 1).len(), 1);
        assert_eq!(ReadSelection::Percent(100.0).select(&all, 1).len(), 10);
        assert!(ReadSelection::Percent(50.0).select(&[], 1).is_empty());
        // Distinct packs, and the seed changes which.
        let a = ReadSelection::Percent(50.0).select(&all, 1);
        let mut ids: Vec<_> = a.iter().map(|p| p.0).collect();
        ids.dedup();
        assert_eq!(ids.len(), 5);
        let differs = (2..20).any(|s| ReadSelection::Percent(50.0).select(&all, s) != a);
        assert!(differs, "the selection does not depend on the seed");
    }

    #[test]
    fn size_is_a_share_of_the_total_size() {
        let all: Vec<_> = packs(10).into_iter().map(|(p, _)| (p, 100)).collect();
        assert_eq!(ReadSelection::Size(300).select(&all, 3).len(), 3);
        assert_eq!(ReadSelection::Size(1).select(&all, 3).len(), 1);
        assert_eq!(ReadSelection::Size(1 << 40).select(&all, 3).len(), 10);
    }
}
