//! Pure encoding and decoding of every object cista stores; no I/O and no cryptography.
//!
//! Each submodule owns one section of docs/FORMAT.md. This module owns the pieces they share:
//! the 8-byte object header (magic, kind, format version), the canonical bincode configuration,
//! the payload compression flag, and the size caps that bound every allocation made while
//! decoding bytes read from a repository.

pub mod config;
pub mod index;
pub mod key;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tree;
#[cfg(test)]
pub(crate) mod vectors;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The four bytes every stored object starts with.
pub const MAGIC: [u8; 4] = *b"CSTA";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of [`header`].
pub const HEADER_LEN: usize = 8;

/// Upper bound for any decoded structure (bincode's allocation limit); every object type has a
/// tighter cap of its own, checked against the stored length before decoding.
pub const DECODE_LIMIT: usize = 64 << 20;

/// The type of a stored object, byte 4 of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// `config`: repository parameters.
    Config = b'C',
    /// `keys/<id>`: a passphrase-wrapped master key.
    Key = b'K',
    /// `data/<xx>/<id>`: a pack file.
    Pack = b'P',
    /// The encrypted header at the end of a pack (only used as associated data).
    PackHeader = b'H',
    /// A blob inside a pack (only used as associated data).
    Blob = b'B',
    /// `index/<id>`.
    Index = b'I',
    /// `snapshots/<id>`.
    Snapshot = b'S',
    /// `locks/<id>`.
    Lock = b'L',
}

impl ObjectKind {
    /// Human name used in errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Key => "key file",
            Self::Pack => "pack",
            Self::PackHeader => "pack header",
            Self::Blob => "blob",
            Self::Index => "index file",
            Self::Snapshot => "snapshot",
            Self::Lock => "lock file",
        }
    }
}

/// Why bytes could not be decoded. Never says more than which rule was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The magic is missing: not a cista object at all.
    #[error("{what} is not a cista object (bad magic)")]
    BadMagic { what: &'static str },
    /// The header names another object kind.
    #[error("{what} has object kind {found:#04x}, expected {expected:#04x}")]
    WrongKind {
        what: &'static str,
        expected: u8,
        found: u8,
    },
    /// A newer cista wrote this object.
    #[error(
        "{what} was written by a newer version of cista (format {found}, this build reads up to {FORMAT_VERSION}); upgrade cista"
    )]
    NewerVersion { what: &'static str, found: u8 },
    /// The repository's config names a format version or feature this build does not know.
    #[error(
        "the repository was written by a newer version of cista (repository format {version}{}); upgrade cista",
        if unknown_features.is_empty() { String::new() } else { format!(", features {}", unknown_features.join(", ")) }
    )]
    NewerRepository {
        version: u32,
        unknown_features: Vec<String>,
    },
    /// Shorter than its fixed parts.
    #[error("{what} is truncated")]
    Truncated { what: &'static str },
    /// Longer than the cap for its type.
    #[error("{what} is {len} bytes, more than the {max}-byte cap")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// Structurally invalid contents.
    #[error("{what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: String },
}

impl FormatError {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            reason: reason.into(),
        }
    }
}

/// The 8-byte header: magic, kind, version, two reserved zero bytes.
pub fn header(kind: ObjectKind) -> [u8; HEADER_LEN] {
    let m = MAGIC;
    [m[0], m[1], m[2], m[3], kind as u8, FORMAT_VERSION, 0, 0]
}

/// Checks the header of `bytes` and returns what follows it.
pub fn check_header(bytes: &[u8], kind: ObjectKind) -> Result<&[u8], FormatError> {
    let what = kind.name();
    let Some((head, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(FormatError::Truncated { what });
    };
    if head[..4] != MAGIC {
        return Err(FormatError::BadMagic { what });
    }
    // The version first: a newer cista may define new kinds, and "upgrade" is the useful answer.
    if head[5] > FORMAT_VERSION {
        return Err(FormatError::NewerVersion {
            what,
            found: head[5],
        });
    }
    if head[4] != kind as u8 {
        return Err(FormatError::WrongKind {
            what,
            expected: kind as u8,
            found: head[4],
        });
    }
    if head[5] == 0 || head[6] != 0 || head[7] != 0 {
        return Err(FormatError::malformed(
            what,
            "invalid version or reserved bytes",
        ));
    }
    Ok(rest)
}

/// Checks a stored length against a cap before anything is allocated for it.
pub fn check_len(what: &'static str, len: u64, max: u64) -> Result<(), FormatError> {
    if len > max {
        Err(FormatError::TooLarge { what, len, max })
    } else {
        Ok(())
    }
}

fn bincode_config<const LIMIT: usize>() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<LIMIT>()
}

/// Canonical encoding (docs/FORMAT.md, "Encoding"). Infallible for cista's own types.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding only fails for types serde cannot express (maps with non-string keys under some
    // formats, sequences of unknown length); none of cista's types are such, and the golden
    // vectors pin that. An empty vector would then fail to decode, never be silently accepted.
    bincode::serde::encode_to_vec(value, bincode_config::<DECODE_LIMIT>()).unwrap_or_default()
}

/// Decodes exactly `bytes` (trailing bytes are an error, so the encoding is canonical), with
/// the general [`DECODE_LIMIT`] on what the decoder may allocate.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, FormatError> {
    decode_capped::<T, DECODE_LIMIT>(bytes, what)
}

/// Like [`decode`], but the decoder may claim at most `LIMIT` bytes in total. bincode
/// allocates a container's claimed length before reading it, so small objects (key files,
/// locks, config) use a limit equal to their own cap: a hostile length prefix then costs at
/// most that much memory, not [`DECODE_LIMIT`].
pub fn decode_capped<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, FormatError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config::<LIMIT>())
        .map_err(|e| FormatError::malformed(what, e.to_string()))?;
    if used != bytes.len() {
        return Err(FormatError::malformed(
            what,
            format!("{} trailing bytes", bytes.len() - used),
        ));
    }
    Ok(value)
}

/// Decodes a `T` from the start of `bytes` and returns it with the number of bytes it used
/// (for layouts with an optional trailing field, FORMAT §14); the general [`DECODE_LIMIT`]
/// bounds what the decoder may allocate.
pub fn decode_prefix<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<(T, usize), FormatError> {
    decode_prefix_capped::<T, DECODE_LIMIT>(bytes, what)
}

/// Like [`decode_capped`], for a value followed by more fields: returns the value and how
/// many bytes it took, leaving the rest to the caller (snapshots' version 3 tail, §16).
pub fn decode_prefix_capped<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
    what: &'static str,
) -> Result<(T, usize), FormatError> {
    bincode::serde::decode_from_slice(bytes, bincode_config::<LIMIT>())
        .map_err(|e| FormatError::malformed(what, e.to_string()))
}

/// First byte of every sealed plaintext: how the rest is stored.
pub const PAYLOAD_RAW: u8 = 0;
/// The rest is one zstd frame.
pub const PAYLOAD_ZSTD: u8 = 1;

/// Splits a payload into its flag and body, rejecting unknown flags.
pub fn split_payload<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(bool, &'a [u8]), FormatError> {
    match bytes.split_first() {
        Some((&PAYLOAD_RAW, rest)) => Ok((false, rest)),
        Some((&PAYLOAD_ZSTD, rest)) => Ok((true, rest)),
        Some((flag, _)) => Err(FormatError::malformed(
            what,
            format!("unknown payload flag {flag}"),
        )),
        None => Err(FormatError::Truncated { what }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        let h = header(ObjectKind::Snapshot);
        assert_eq!(&h, b"CSTAS\x01\x00\x00");
        assert_eq!(check_header(&h, ObjectKind::Snapshot).unwrap(), b"");
    }

    #[test]
    fn fail_newer_version_names_upgrade() {
        let mut h = header(ObjectKind::Index);
        h[5] = 2;
        let err = check_header(&h, ObjectKind::Index).unwrap_err();
        assert!(
            err.to_string()
                .contains("written by a newer version of cista")
        );
    }

    #[test]
    fn fail_wrong_kind_magic_reserved_truncated() {
        let h = header(ObjectKind::Index);
        assert!(matches!(
            check_header(&h, ObjectKind::Snapshot),
            Err(FormatError::WrongKind { .. })
        ));
        assert!(matches!(
            check_header(b"XSTAI\x01\0\0", ObjectKind::Index),
            Err(FormatError::BadMagic { .. })
        ));
        assert!(matches!(
            check_header(b"CSTAI\x01\0\x01", ObjectKind::Index),
            Err(FormatError::Malformed { .. })
        ));
        assert!(matches!(
            check_header(b"CSTAI\x00\0\0", ObjectKind::Index),
            Err(FormatError::Malformed { .. })
        ));
        assert!(matches!(
            check_header(b"CSTA", ObjectKind::Index),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn fail_trailing_bytes() {
        let mut b = encode(&7u32);
        assert_eq!(b, [7, 0, 0, 0]);
        b.push(0);
        assert!(decode::<u32>(&b, "x").is_err());
    }

    #[test]
    fn fail_huge_claimed_length_does_not_allocate() {
        // A vector claiming 2^60 elements must be refused by the limit, not attempted.
        let b = (1u64 << 60).to_le_bytes();
        assert!(decode::<Vec<u64>>(&b, "x").is_err());
    }

    proptest! {
        #[test]
        fn check_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = check_header(&bytes, ObjectKind::Pack);
            let _ = split_payload(&bytes, "x");
        }
    }
}
