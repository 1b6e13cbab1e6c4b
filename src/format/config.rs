//! The repository config (docs/FORMAT.md, "Config"): chunker and pack parameters fixed at
//! `init`. Stored sealed under the encryption key; this module only encodes the plaintext.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode_capped, encode};

/// Largest config plaintext accepted.
pub const MAX_CONFIG_LEN: u64 = 64 << 10;

/// Content-defined chunking sizes, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is shorter, except a file's last.
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// No chunk is longer.
    pub max: u32,
}

impl ChunkerParams {
    /// Chunk sizes cista uses unless told otherwise: 128 KiB / 512 KiB / 2 MiB, chosen by
    /// measuring nightly-dump dedup against index size (docs/DESIGN.md, "Chunk size").
    pub const DEFAULT: Self = Self {
        min: 128 << 10,
        avg: 512 << 10,
        max: 2 << 20,
    };

    /// FastCDC's bounds, plus evenness (its two-byte scan needs even sizes) and order.
    pub fn validate(&self) -> Result<(), FormatError> {
        use fastcdc::v2020 as f;
        let ok = (f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&(self.min as usize))
            && (f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&(self.avg as usize))
            && (f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&(self.max as usize))
            && self.min < self.avg
            && self.avg < self.max
            && self.min.is_multiple_of(2)
            && self.avg.is_multiple_of(2)
            && self.max.is_multiple_of(2);
        if ok {
            Ok(())
        } else {
            Err(FormatError::malformed(
                "config",
                format!("chunker sizes {self:?} out of range"),
            ))
        }
    }
}

/// The repository's fixed parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Random id of the repository, shown by `cista snapshots` and used to name caches.
    pub repo_id: [u8; 32],
    /// Chunk sizes.
    pub chunker: ChunkerParams,
    /// Packs are closed once their blobs reach this many bytes.
    pub pack_size: u32,
    /// zstd level for blobs and metadata (1..=19).
    pub compression_level: i32,
}

/// Smallest and largest pack target accepted in a config.
pub const PACK_SIZE_RANGE: std::ops::RangeInclusive<u32> = (1 << 20)..=(512 << 20);

impl Config {
    /// Default pack target: 8 MiB. Backup speed is flat from 4 to 32 MiB while peak memory
    /// grows with it (docs/DESIGN.md, "Pack size"); 8 MiB keeps S3 at about 131k objects per
    /// TiB stored.
    pub const DEFAULT_PACK_SIZE: u32 = 8 << 20;
    /// Default zstd level: 2. On the nightly-application corpus it stores the same bytes as
    /// level 3 and backs up 12–22% faster; level 1 is faster still but stores 0.6% more
    /// (docs/DESIGN.md, "Compression level").
    pub const DEFAULT_COMPRESSION_LEVEL: i32 = 2;

    /// Canonical plaintext.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and validates every field.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        super::check_len("config", bytes.len() as u64, MAX_CONFIG_LEN)?;
        let c: Self = decode_capped::<_, { MAX_CONFIG_LEN as usize }>(bytes, "config")?;
        c.chunker.validate()?;
        if !PACK_SIZE_RANGE.contains(&c.pack_size) {
            return Err(FormatError::malformed("config", "pack size out of range"));
        }
        if !(1..=19).contains(&c.compression_level) {
            return Err(FormatError::malformed(
                "config",
                "compression level out of range",
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Config {
        Config {
            repo_id: [7; 32],
            chunker: ChunkerParams::DEFAULT,
            pack_size: Config::DEFAULT_PACK_SIZE,
            compression_level: 3,
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let b = sample().encode();
        assert_eq!(b.len(), 32 + 12 + 4 + 4);
        assert_eq!(Config::decode(&b).unwrap(), sample());
    }

    #[test]
    fn fail_bad_chunker() {
        let mut c = sample();
        c.chunker.min = c.chunker.avg;
        assert!(Config::decode(&c.encode()).is_err());
        let mut c = sample();
        c.chunker.avg += 1;
        assert!(Config::decode(&c.encode()).is_err());
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Config::decode(&bytes);
        }
    }
}
