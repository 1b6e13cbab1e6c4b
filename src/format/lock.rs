//! Lock files (docs/FORMAT.md, "Locks"): who is using the repository and how.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode_capped, encode};

/// Largest lock plaintext accepted.
pub const MAX_LOCK_LEN: u64 = 64 << 10;

/// One lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Creation or last refresh, ns since the Unix epoch.
    pub time_unix_ns: i64,
    /// Exclusive locks (prune, key removal) exclude every other lock.
    pub exclusive: bool,
    /// Holder's host.
    pub hostname: String,
    /// Holder's user.
    pub username: String,
    /// Holder's process id.
    pub pid: u32,
}

impl Lock {
    /// Canonical plaintext.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a lock plaintext.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        super::check_len("lock file", bytes.len() as u64, MAX_LOCK_LEN)?;
        decode_capped::<_, { MAX_LOCK_LEN as usize }>(bytes, "lock file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let l = Lock {
            time_unix_ns: 1,
            exclusive: true,
            hostname: "h".into(),
            username: "u".into(),
            pid: 7,
        };
        assert_eq!(Lock::decode(&l.encode()).unwrap(), l);
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Lock::decode(&bytes);
        }
    }
}
