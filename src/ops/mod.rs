//! The algorithms: backup, restore, listing, check, rewriting snapshots. They never print; progress is reported
//! through [`Progress`] and results are returned as values for the CLI to render.

pub mod backup;
pub mod check;
pub mod copy;
pub mod dump;
mod dump_zip;
pub mod find;
pub mod forget;
pub mod globs;
pub mod groups;
pub mod pg;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod rewrite;
pub mod session;
pub mod tag;

use std::sync::atomic::AtomicBool;

// Kept here for the algorithms' convenience; they live in [`crate::host`], below both
// `repo/` and `ops/`.
pub use crate::host::{hostname, now_unix_ns, username};

/// Which phase of a backup met an error (restic's `during`: `scan` or `archival`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Counting what there is to back up, for progress totals.
    Scan,
    /// Reading and storing.
    Archival,
}

impl Phase {
    /// The name restic prints in its JSON `during` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scan => "scan",
            Self::Archival => "archival",
        }
    }
}

/// Receives progress from long operations. Implementations must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// A file was completed (`bytes` of content covered).
    fn file_done(&self, _bytes: u64) {}
    /// Bytes of content were covered: read from a source (or reused unread from the parent
    /// snapshot), or written to a target.
    fn bytes(&self, _n: u64) {}
    /// A non-fatal problem (unreadable file, skipped socket).
    fn warn(&self, _message: &str) {}
    /// A source entry could not be backed up as it is (`item` is its path); the backup goes
    /// on and the snapshot is marked incomplete.
    fn error(&self, item: &std::path::Path, _during: Phase, message: &str) {
        self.warn(&format!("{}: {message}", item.display()));
    }
    /// A file started being read (restic's `current_files`).
    fn file_started(&self, _path: &std::path::Path) {}
    /// A file stopped being read (stored, or failed).
    fn file_finished(&self, _path: &std::path::Path) {}
    /// The scanner's running totals of what the backup will cover (files, bytes of content);
    /// `done` once the scan finished.
    fn scan_total(&self, _files: u64, _bytes: u64, _done: bool) {}
}

/// Progress that discards everything.
#[derive(Debug, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Set by a signal handler to ask running operations to stop at the next safe point.
pub type CancelFlag = std::sync::Arc<AtomicBool>;
