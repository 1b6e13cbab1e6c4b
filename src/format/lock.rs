//! Lock files (docs/FORMAT.md §17): who is using the repository, how, and since when.
//!
//! Two layouts. Version 3 (repository format 3): time, mode byte (shared, exclusive,
//! maintenance), host, user, pid, then the holder's session id and start time. Version 2
//! (formats 1 and 2): the same first five fields with an `exclusive` bool where the mode byte
//! is, and no session. A version-2 lock is the version-3 lock cut after its pid with mode 0 or
//! 1, so readers decode the version-3 layout, else the version-2 one: one length-prefixed
//! parse decides, since the decoder rejects both short input and trailing bytes.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode_capped, encode};

/// Largest lock plaintext accepted.
pub const MAX_LOCK_LEN: u64 = 64 << 10;

/// What a lock's holder may do, and so which other holders it excludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// Reads and adds objects (backup, check, restore, ls...). Excludes exclusive locks only.
    Shared = 0,
    /// Deletes objects that others may be using (key removal). Excludes every other lock.
    Exclusive = 1,
    /// Retires and deletes objects by the two-phase protocol (prune, forget, repair): excludes
    /// exclusive and other maintenance locks, never shared ones (FORMAT §17).
    Maintenance = 2,
}

impl LockMode {
    /// The stored mode byte.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The mode of a stored byte.
    pub fn from_code(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Shared),
            1 => Some(Self::Exclusive),
            2 => Some(Self::Maintenance),
            _ => None,
        }
    }

    /// Whether a holder of `self` and a holder of `other` may not hold their locks at once.
    pub fn conflicts_with(self, other: Self) -> bool {
        use LockMode::*;
        match (self, other) {
            (Exclusive, _) | (_, Exclusive) => true,
            (Maintenance, Maintenance) => true,
            (Shared, _) | (Maintenance, Shared) => false,
        }
    }

    /// Lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Exclusive => "exclusive",
            Self::Maintenance => "maintenance",
        }
    }
}

/// A lock holder's session: one process run, stable across the refreshes of its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockSession {
    /// Random, chosen when the lock is first taken.
    pub id: [u8; 16],
    /// When the session took its lock, ns since the Unix epoch (its own clock).
    pub started_unix_ns: i64,
}

/// One lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// Creation or last refresh, ns since the Unix epoch.
    pub time_unix_ns: i64,
    /// What the holder may do.
    pub mode: LockMode,
    /// Holder's host.
    pub hostname: String,
    /// Holder's user.
    pub username: String,
    /// Holder's process id.
    pub pid: u32,
    /// The holder's session: `None` for a version-2 lock, which has none (prune treats such
    /// a live lock as blocking every deletion).
    pub session: Option<LockSession>,
}

/// The version-3 layout.
#[derive(Serialize, Deserialize)]
struct LockV3 {
    time_unix_ns: i64,
    mode: u8,
    hostname: String,
    username: String,
    pid: u32,
    session: [u8; 16],
    started_unix_ns: i64,
}

/// The version-2 layout.
#[derive(Serialize, Deserialize)]
struct LockV2 {
    time_unix_ns: i64,
    exclusive: bool,
    hostname: String,
    username: String,
    pid: u32,
}

impl Lock {
    /// Canonical plaintext: the version-3 layout when the lock has a session, else the
    /// version-2 one, which cannot express a maintenance lock.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        match self.session {
            Some(s) => Ok(encode(&LockV3 {
                time_unix_ns: self.time_unix_ns,
                mode: self.mode.code(),
                hostname: self.hostname.clone(),
                username: self.username.clone(),
                pid: self.pid,
                session: s.id,
                started_unix_ns: s.started_unix_ns,
            })),
            None if self.mode == LockMode::Maintenance => Err(FormatError::malformed(
                "lock file",
                "a maintenance lock needs the version-3 layout (a session)",
            )),
            None => Ok(encode(&LockV2 {
                time_unix_ns: self.time_unix_ns,
                exclusive: self.mode == LockMode::Exclusive,
                hostname: self.hostname.clone(),
                username: self.username.clone(),
                pid: self.pid,
            })),
        }
    }

    /// Decodes a lock plaintext of either layout.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        super::check_len("lock file", bytes.len() as u64, MAX_LOCK_LEN)?;
        const CAP: usize = MAX_LOCK_LEN as usize;
        if let Ok(v) = decode_capped::<LockV3, CAP>(bytes, "lock file") {
            let mode = LockMode::from_code(v.mode).ok_or_else(|| {
                FormatError::malformed("lock file", format!("unknown lock mode {}", v.mode))
            })?;
            return Ok(Self {
                time_unix_ns: v.time_unix_ns,
                mode,
                hostname: v.hostname,
                username: v.username,
                pid: v.pid,
                session: Some(LockSession {
                    id: v.session,
                    started_unix_ns: v.started_unix_ns,
                }),
            });
        }
        // Not the version-3 layout: the version-2 one, or its error.
        let v: LockV2 = decode_capped::<_, CAP>(bytes, "lock file")?;
        Ok(Self {
            time_unix_ns: v.time_unix_ns,
            mode: if v.exclusive {
                LockMode::Exclusive
            } else {
                LockMode::Shared
            },
            hostname: v.hostname,
            username: v.username,
            pid: v.pid,
            session: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(mode: LockMode, session: Option<LockSession>) -> Lock {
        Lock {
            time_unix_ns: 1,
            mode,
            hostname: "h".into(),
            username: "u".into(),
            pid: 7,
            session,
        }
    }

    const S: LockSession = LockSession {
        id: [9; 16],
        started_unix_ns: -5,
    };

    #[test]
    fn round_trip_both_layouts() {
        for mode in [LockMode::Shared, LockMode::Exclusive, LockMode::Maintenance] {
            let l = sample(mode, Some(S));
            assert_eq!(Lock::decode(&l.encode().unwrap()).unwrap(), l);
        }
        for mode in [LockMode::Shared, LockMode::Exclusive] {
            let l = sample(mode, None);
            let b = l.encode().unwrap();
            assert_eq!(Lock::decode(&b).unwrap(), l);
            // The version-3 lock is the version-2 one with the session appended.
            let v3 = sample(mode, Some(S)).encode().unwrap();
            assert_eq!(v3[..b.len()], b[..]);
            assert_eq!(v3.len(), b.len() + 24);
        }
    }

    #[test]
    fn fail_maintenance_without_session_or_unknown_mode() {
        assert!(sample(LockMode::Maintenance, None).encode().is_err());
        let mut b = sample(LockMode::Shared, Some(S)).encode().unwrap();
        b[8] = 3;
        let e = Lock::decode(&b).unwrap_err();
        assert!(e.to_string().contains("unknown lock mode 3"), "{e}");
        // Cut short or with a byte more: neither layout.
        let b = sample(LockMode::Shared, Some(S)).encode().unwrap();
        assert!(Lock::decode(&b[..b.len() - 1]).is_err());
        assert!(Lock::decode(&[b.as_slice(), &[0]].concat()).is_err());
    }

    #[test]
    fn conflicts_are_symmetric_and_as_specified() {
        use LockMode::*;
        let all = [Shared, Exclusive, Maintenance];
        for a in all {
            for b in all {
                assert_eq!(a.conflicts_with(b), b.conflicts_with(a));
            }
            assert!(a.conflicts_with(Exclusive));
        }
        assert!(!Shared.conflicts_with(Shared));
        assert!(!Shared.conflicts_with(Maintenance));
        assert!(Maintenance.conflicts_with(Maintenance));
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Lock::decode(&bytes);
        }

        #[test]
        fn decode_then_encode_gives_the_same_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(l) = Lock::decode(&bytes) {
                prop_assert_eq!(l.encode().unwrap(), bytes);
            }
        }
    }
}
