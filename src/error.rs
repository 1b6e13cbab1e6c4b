//! The library's error type.
//!
//! Rules: every variant carries the context a user needs (path, id, location) and its message
//! is one line that says what to do next; lower layers have their own enums
//! ([`FormatError`], [`CryptoError`], [`BackendError`]) wrapped here with context. Crypto
//! failures stay coarse. `anyhow` is used only by the CLI.

use std::path::PathBuf;

use crate::backend::{BackendError, ErrorKind};
use crate::crypto::CryptoError;
use crate::format::FormatError;

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a repository operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository at the location.
    #[error(
        "no cista repository at {location}: check -r/CISTA_REPOSITORY, or create one with `cista init`"
    )]
    RepoNotFound { location: String },
    /// `init` on an existing repository.
    #[error("a repository already exists at {location}; choose another location")]
    RepoExists { location: String },
    /// `init` found key files but no config (an interrupted init, or a removed config).
    #[error(
        "{location} has key files but no config (an earlier `cista init` was interrupted, or the config was removed): if it held no backups, delete the folder and run `cista init` again; otherwise restore its config from a copy"
    )]
    KeysWithoutConfig { location: String },
    /// No key file opens with the passphrase.
    #[error(
        "wrong password: no key in this repository opens with it; check CISTA_PASSWORD/CISTA_PASSWORD_FILE"
    )]
    WrongPassword,
    /// No key file opens with the passphrase, and some key files are damaged: the key this
    /// passphrase belongs to may be one of them, so "wrong password" alone would mislead.
    #[error(
        "no key opens with this password, and {damaged} key files are damaged; if the password is right, its key file may be one of them: run `cista check` with another password, or restore keys/ from a copy"
    )]
    WrongPasswordOrDamagedKeys { damaged: usize },
    /// Someone holds a conflicting lock; `how` is its mode.
    #[error(
        "repository is locked: {holder}; wait for it (or retry with --retry-lock DURATION); a dead holder's lock stops counting at once on its own host, and 30 minutes after its last refresh elsewhere"
    )]
    Locked { how: &'static str, holder: String },
    /// Prune found something it cannot be sure about and stopped before changing anything.
    #[error("prune stopped before changing anything: {reason}")]
    PruneRefused { reason: String },
    /// Our own lock can no longer be trusted, so nothing more may be committed on it.
    #[error(
        "the repository lock of this process was lost: {reason}; nothing more was committed, run the command again"
    )]
    LockLost { reason: String },
    /// A stored object failed to decode, authenticate or match its id.
    #[error(
        "{what} {id} is damaged ({reason}); run `cista check --read-data` to see what else is affected: the damaged object's data is lost unless another copy exists, and a new backup stores again what still exists on the source"
    )]
    Corrupt {
        what: &'static str,
        id: String,
        reason: String,
    },
    /// A chunk's bytes did not match its id while restoring a file.
    #[error("{path}: chunk {chunk} failed verification ({reason}); the file was not restored")]
    RestoreVerify {
        path: PathBuf,
        chunk: String,
        reason: String,
    },
    /// A snapshot's trees go beyond a reader's caps (docs/FORMAT.md §20): cista never writes
    /// such trees, so they are damaged or crafted.
    #[error(
        "{}: {reason}; cista never writes such a tree, so the snapshot is damaged or crafted: run `cista check`",
        path.display()
    )]
    TreeLimit { path: PathBuf, reason: String },
    /// A format error outside any single stored object (e.g. decoding a config).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Storage failed.
    #[error("storage error: {0}")]
    Backend(#[from] BackendError),
    /// Cryptography failed outside an object (random number generator, KDF).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Local file-system error.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No snapshot matches.
    #[error("no snapshot matches {spec:?}; list them with `cista snapshots`")]
    SnapshotNotFound { spec: String },
    /// Several snapshots match a prefix.
    #[error("snapshot id prefix {spec:?} is ambiguous; give more digits")]
    AmbiguousSnapshot { spec: String },
    /// A path is not in the snapshot.
    #[error("{path:?} is not in snapshot {snapshot}; browse it with `cista ls {snapshot}`")]
    PathNotFound { path: String, snapshot: String },
    /// PostgreSQL's tools are missing, too old, or refused (the message names which and
    /// what to do).
    #[error("{0}")]
    Postgres(String),
    /// The command given to `--stdin-from-command` failed.
    #[error("{command} {status}; no snapshot was written")]
    CommandFailed { command: String, status: String },
    /// Removing the only key would lock everyone out.
    #[error("refusing to remove the last key: add another with `cista key add` first")]
    LastKey,
    /// `forget` refused its policy (nothing was removed).
    #[error(transparent)]
    Forget(#[from] crate::ops::forget::Refusal),
    /// The user's arguments cannot be acted on.
    #[error("{0}")]
    InvalidInput(String),
    /// Interrupted by a signal.
    #[error(
        "interrupted; the repository is consistent and the next backup reuses what was uploaded"
    )]
    Interrupted,
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A damaged stored object.
    pub fn corrupt(what: &'static str, id: impl ToString, reason: impl ToString) -> Self {
        Self::Corrupt {
            what,
            id: id.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Whether this is a storage "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Backend(b) if b.kind == ErrorKind::NotFound)
    }
}
