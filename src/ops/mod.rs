//! The algorithms: backup, restore, listing, check. They never print; progress is reported
//! through [`Progress`] and results are returned as values for the CLI to render.

pub mod backup;
pub mod check;
pub mod dump;
mod dump_zip;
pub mod find;
pub mod globs;
pub mod restore;

use std::sync::atomic::AtomicBool;

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// This machine's host name ("unknown" if it cannot be read).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The current user's name (falls back to the uid).
pub fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Receives progress from long operations. Implementations must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// A file was completed (`bytes` of content covered).
    fn file_done(&self, _bytes: u64) {}
    /// Bytes were read from a source or written to a target.
    fn bytes(&self, _n: u64) {}
    /// A non-fatal problem (unreadable file, skipped socket).
    fn warn(&self, _message: &str) {}
}

/// Progress that discards everything.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Set by a signal handler to ask running operations to stop at the next safe point.
pub type CancelFlag = std::sync::Arc<AtomicBool>;
