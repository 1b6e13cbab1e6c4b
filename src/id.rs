//! Typed 32-byte identifiers.
//!
//! Every id in cista is 32 bytes: keyed BLAKE3 of a blob's plaintext (chunks and trees), or
//! plain BLAKE3 of a stored object's bytes (packs, index files, snapshots, keys, locks). The
//! distinct types keep a pack id from being passed where a blob id is expected. Display shows a
//! short hex prefix for humans; Debug and [`Id::to_hex`] show all of it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Length in bytes of every id.
pub const ID_LEN: usize = 32;
/// Number of hex digits shown by `Display` (restic's short id length).
pub const SHORT_HEX_LEN: usize = 8;

/// An untyped 32-byte id. Prefer the typed wrappers in signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Id(pub [u8; ID_LEN]);

impl Id {
    /// BLAKE3 of `bytes`, unkeyed: the storage name of an object holding exactly these bytes.
    pub fn of_stored(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex of all 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, ParseIdError> {
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_owned()))?;
        Ok(Self(out))
    }

    /// Whether the full hex form starts with `prefix` (used to resolve short ids).
    pub fn hex_starts_with(&self, prefix: &str) -> bool {
        self.to_hex().starts_with(&prefix.to_ascii_lowercase())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex()[..SHORT_HEX_LEN])
    }
}

/// An id string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a 64-digit hex id")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            /// Lower-case hex of all 32 bytes.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            /// Parses exactly 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self, ParseIdError> {
                Id::from_hex(s).map(Self)
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &(self.0).0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<Id> for $name {
            fn from(id: Id) -> Self {
                Self(id)
            }
        }
    };
}

typed_id!(
    /// Id of a blob (data chunk or tree): keyed BLAKE3 of its plaintext.
    BlobId
);
typed_id!(
    /// Id of a pack file: BLAKE3 of its stored bytes.
    PackId
);
typed_id!(
    /// Id of an index file: BLAKE3 of its stored bytes.
    IndexId
);
typed_id!(
    /// Id of a snapshot file: BLAKE3 of its stored bytes.
    SnapshotId
);
typed_id!(
    /// Id of a key file: BLAKE3 of its stored bytes.
    KeyId
);
typed_id!(
    /// Id of a lock file: BLAKE3 of its stored bytes.
    LockId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_short_display() {
        let id = Id::of_stored(b"abc");
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.to_string().len(), SHORT_HEX_LEN);
        assert!(id.hex_starts_with(&id.to_string().to_uppercase()));
        let pack = PackId(id);
        assert!(format!("{pack:?}").starts_with("PackId("));
    }

    #[test]
    fn fail_bad_hex() {
        assert!(Id::from_hex("zz").is_err());
        assert!(Id::from_hex(&"a".repeat(63)).is_err());
        assert!(Id::from_hex(&"g".repeat(64)).is_err());
    }
}
