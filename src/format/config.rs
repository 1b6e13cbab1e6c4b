//! The repository config (docs/FORMAT.md, "Config"): chunker and pack parameters fixed at
//! `init`, and the repository format version and features that say which readers may open
//! it. Stored sealed under the encryption key; this module only encodes the plaintext.
//!
//! Two encodings: the 52-byte config of repository format 1 (no version field, read as
//! version 1 with no features), and from version 2 on the same fields followed by
//! `format_version` and `features` (version 3 changed only the number: it announces
//! pending-deletion packs in index files and maintenance locks). A reader refuses a version above
//! [`REPO_FORMAT_VERSION`] or a feature outside [`KNOWN_FEATURES`] as
//! [`FormatError::NewerRepository`], never as damage.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode_capped, encode};

/// The newest repository format version this build reads and the one it writes.
pub const REPO_FORMAT_VERSION: u32 = 3;

/// Features this build understands. A repository may declare any subset; one it does not
/// know means a newer cista wrote data this build would misread, so it is refused.
/// `tree-parts`: a directory's tree may be split over several tree blobs.
pub const KNOWN_FEATURES: &[&str] = &["tree-parts"];

/// Features every new repository declares.
pub const NEW_REPOSITORY_FEATURES: &[&str] = &["tree-parts"];

/// Longest feature name accepted, and most features (bounded work on hostile input).
const MAX_FEATURE_LEN: usize = 64;
const MAX_FEATURES: usize = 64;

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
    /// Repository format version: 1 for the 52-byte config, else 2 ..= [`REPO_FORMAT_VERSION`].
    pub format_version: u32,
    /// Features the repository uses, sorted, each in [`KNOWN_FEATURES`].
    pub features: Vec<String>,
}

/// The format-1 config: the first 52 bytes of every config.
#[derive(Serialize, Deserialize)]
struct ConfigV1 {
    repo_id: [u8; 32],
    chunker: ChunkerParams,
    pack_size: u32,
    compression_level: i32,
}

/// Encoded length of a format-1 config.
pub const V1_LEN: usize = 52;

/// Smallest and largest pack target accepted in a config.
pub const PACK_SIZE_RANGE: std::ops::RangeInclusive<u32> = (1 << 20)..=(512 << 20);

impl Config {
    /// Default pack target: 8 MiB. Backup speed is flat from 4 to 32 MiB while peak memory
    /// grows with it (docs/DESIGN.md, "Pack size"); 8 MiB keeps S3 at about 131k objects per
    /// TiB stored.
    pub const DEFAULT_PACK_SIZE: u32 = 8 << 20;
    /// Default zstd level: 2, tuned (`compress::tuned`): on a Rust toolchain it stores 0.6–0.9%
    /// less than restic and 2.4% less than zstd's own level 2; on the nightly-application
    /// corpus it stores what levels 2 and 3 store; level 3 costs far more CPU for either
    /// (docs/DESIGN.md, "Compression level").
    pub const DEFAULT_COMPRESSION_LEVEL: i32 = 2;

    /// A new repository's config: the current format version and features.
    pub fn new(
        repo_id: [u8; 32],
        chunker: ChunkerParams,
        pack_size: u32,
        compression_level: i32,
    ) -> Self {
        Self {
            repo_id,
            chunker,
            pack_size,
            compression_level,
            format_version: REPO_FORMAT_VERSION,
            features: NEW_REPOSITORY_FEATURES
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
        }
    }

    /// Whether the repository declares `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    /// Canonical plaintext: 52 bytes for format 1, else those fields then version and
    /// features.
    pub fn encode(&self) -> Vec<u8> {
        if self.format_version == 1 {
            encode(&ConfigV1 {
                repo_id: self.repo_id,
                chunker: self.chunker,
                pack_size: self.pack_size,
                compression_level: self.compression_level,
            })
        } else {
            encode(self)
        }
    }

    /// Decodes and validates every field. A version or feature this build does not know is
    /// [`FormatError::NewerRepository`], checked before the other rules (a newer format may
    /// change them).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        Self::decode_as_reader_of(bytes, REPO_FORMAT_VERSION)
    }

    /// [`Config::decode`] as a reader that implements formats up to `newest` does it: the
    /// rule older cista versions follow, so tests can pin how they meet a newer repository.
    fn decode_as_reader_of(bytes: &[u8], newest: u32) -> Result<Self, FormatError> {
        super::check_len("config", bytes.len() as u64, MAX_CONFIG_LEN)?;
        let c = if bytes.len() == V1_LEN {
            let v: ConfigV1 = decode_capped::<_, { MAX_CONFIG_LEN as usize }>(bytes, "config")?;
            Self {
                repo_id: v.repo_id,
                chunker: v.chunker,
                pack_size: v.pack_size,
                compression_level: v.compression_level,
                format_version: 1,
                features: Vec::new(),
            }
        } else {
            let c: Self = decode_capped::<_, { MAX_CONFIG_LEN as usize }>(bytes, "config")?;
            c.check_version(newest)?;
            c
        };
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

    /// The rules on `format_version` and `features` of a version-2-or-later encoding.
    fn check_version(&self, newest: u32) -> Result<(), FormatError> {
        let unknown: Vec<String> = self
            .features
            .iter()
            .filter(|f| !KNOWN_FEATURES.contains(&f.as_str()))
            .cloned()
            .collect();
        if self.format_version > newest || !unknown.is_empty() {
            return Err(FormatError::NewerRepository {
                version: self.format_version,
                unknown_features: unknown,
            });
        }
        if self.format_version < 2 {
            return Err(FormatError::malformed(
                "config",
                "format_version below 2 in an extended config (format 1 is the 52-byte form)",
            ));
        }
        if self.features.len() > MAX_FEATURES
            || self.features.iter().any(|f| f.len() > MAX_FEATURE_LEN)
            || !self.features.windows(2).all(|w| w[0] < w[1])
        {
            return Err(FormatError::malformed(
                "config",
                "features must be sorted, unique and short",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Config {
        Config::new(
            [7; 32],
            ChunkerParams::DEFAULT,
            Config::DEFAULT_PACK_SIZE,
            3,
        )
    }

    fn v1() -> Config {
        Config {
            format_version: 1,
            features: Vec::new(),
            ..sample()
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let b = sample().encode();
        // 52 bytes, then version (4) and one feature (8-byte length + "tree-parts").
        assert_eq!(b.len(), 52 + 4 + 8 + 8 + 10);
        assert_eq!(Config::decode(&b).unwrap(), sample());
    }

    #[test]
    fn format_1_config_is_52_bytes_and_still_read() {
        let b = v1().encode();
        assert_eq!(b.len(), V1_LEN);
        assert_eq!(b[..], sample().encode()[..V1_LEN]);
        assert_eq!(Config::decode(&b).unwrap(), v1());
    }

    #[test]
    fn fail_newer_version_or_unknown_feature_is_not_damage() {
        let newer = Config {
            format_version: REPO_FORMAT_VERSION + 1,
            ..sample()
        };
        let e = Config::decode(&newer.encode()).unwrap_err();
        assert!(matches!(e, FormatError::NewerRepository { .. }), "{e}");
        assert!(e.to_string().contains("upgrade cista"), "{e}");
        let feature = Config {
            features: vec!["tree-parts".into(), "zz-future".into()],
            ..sample()
        };
        let e = Config::decode(&feature.encode()).unwrap_err();
        assert!(e.to_string().contains("zz-future"), "{e}");
        assert!(matches!(e, FormatError::NewerRepository { .. }), "{e}");
    }

    #[test]
    fn a_version_2_reader_refuses_version_3_and_reads_version_2() {
        let v3 = sample();
        assert_eq!(v3.format_version, 3);
        let e = Config::decode_as_reader_of(&v3.encode(), 2).unwrap_err();
        assert!(
            matches!(e, FormatError::NewerRepository { version: 3, .. }),
            "{e}"
        );
        let v2 = Config {
            format_version: 2,
            ..sample()
        };
        assert_eq!(Config::decode_as_reader_of(&v2.encode(), 2).unwrap(), v2);
        assert_eq!(Config::decode(&v2.encode()).unwrap(), v2);
    }

    #[test]
    fn fail_unsorted_features_or_old_version_in_new_form() {
        let dup = Config {
            features: vec!["tree-parts".into(), "tree-parts".into()],
            ..sample()
        };
        assert!(matches!(
            Config::decode(&dup.encode()),
            Err(FormatError::Malformed { .. })
        ));
        let mut b = sample().encode();
        b[V1_LEN..V1_LEN + 4].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            Config::decode(&b),
            Err(FormatError::Malformed { .. })
        ));
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
