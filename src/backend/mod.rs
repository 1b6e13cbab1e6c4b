//! Storage: one small [`Backend`] trait that every repository byte goes through.
//!
//! Owns the repository layout (which object lives under which path), the storage error kinds,
//! and [`open`], the one entry point that turns a [`Location`] into a ready backend.
//! Knows nothing of encryption or object contents. Implementations: [`local`] (folders, with
//! `std::fs`) and [`opendal`] (the in-memory store and every remote service, through
//! OpenDAL). Cross-cutting behaviour wraps the trait rather than flagging it: [`retry`] for
//! transient failures (wired by [`open`]), and, with the `testing` feature, [`fault`] for
//! injecting failures and [`conformance`], the suite every backend passes; [`counting`] for
//! request counts, [`cache`] for a verified local copy of a remote repository's metadata.

pub mod cache;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod counting;
#[cfg(any(test, feature = "testing"))]
pub mod fault;
pub mod local;
pub mod location;
pub mod opendal;
pub mod options;
pub mod retry;

use std::sync::Arc;

pub use location::Location;
pub use options::BackendOptions;

/// Opens the backend for `loc`, wrapped in [`retry::RetryBackend`] with the options'
/// `retries`. Remote locations are probed with one request, so an unreachable endpoint, a
/// missing bucket and refused credentials each fail here with their own one-line message
/// (docs/CLI.md, "Exit codes"), before any passphrase is asked for.
///
/// With the `testing` feature, `CISTA_TEST_FAULTS` in `opts.env` puts a
/// [`fault::FaultBackend`] between the retries and the storage ([`fault::FaultSpec`]).
pub fn open(loc: &Location, opts: &BackendOptions) -> Result<Arc<dyn Backend>, BackendError> {
    let policy = retry::RetryPolicy {
        attempts: opts.retries(loc)?,
        ..retry::RetryPolicy::default()
    };
    let concrete: Arc<dyn Backend> = match loc {
        Location::Local(path) => {
            opts.check_known(loc, &[])?;
            let b: Arc<dyn Backend> = Arc::new(local::LocalBackend::open(path)?);
            #[cfg(feature = "testing")]
            if opts.env("CISTA_TEST_FAULTS").is_some() {
                return wrap(b, opts, policy);
            }
            // Never `Transient`: nothing to retry, and a retry's payload copy would cost.
            return Ok(b);
        }
        _ => {
            let b = opendal::build::open(loc, opts)?;
            let mut attempt = 0;
            loop {
                match b.probe() {
                    Err(e) if e.kind == ErrorKind::Transient && attempt + 1 < policy.attempts => {
                        std::thread::sleep(policy.jittered(attempt));
                        attempt += 1;
                    }
                    r => break r?,
                }
            }
            b.remove_stale_temp_files();
            Arc::new(b)
        }
    };
    wrap(concrete, opts, policy)
}

/// `concrete` behind the retries (and, under `testing`, the faults of `CISTA_TEST_FAULTS`).
fn wrap(
    concrete: Arc<dyn Backend>,
    opts: &BackendOptions,
    policy: retry::RetryPolicy,
) -> Result<Arc<dyn Backend>, BackendError> {
    #[cfg(feature = "testing")]
    let concrete = match opts.env("CISTA_TEST_FAULTS") {
        Some(spec) => Arc::new(fault::FaultSpec::parse(spec)?.wrap(concrete)) as Arc<dyn Backend>,
        None => concrete,
    };
    #[cfg(not(feature = "testing"))]
    let _ = opts;
    Ok(Arc::new(retry::RetryBackend::with_policy(concrete, policy)))
}

use std::fmt;

use crate::id::Id;

/// The kinds of file in a repository and the folder each lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// The single `config` file.
    Config,
    /// `keys/<id>`.
    Key,
    /// `data/<first two hex digits>/<id>`.
    Pack,
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Snapshot,
    /// `locks/<id>`.
    Lock,
}

impl FileType {
    /// All types, in the order `init` creates their folders.
    pub const ALL: [FileType; 6] = [
        Self::Config,
        Self::Key,
        Self::Pack,
        Self::Index,
        Self::Snapshot,
        Self::Lock,
    ];

    /// Folder holding this type (empty for the config).
    pub fn dir(self) -> &'static str {
        match self {
            Self::Config => "",
            Self::Key => "keys",
            Self::Pack => "data",
            Self::Index => "index",
            Self::Snapshot => "snapshots",
            Self::Lock => "locks",
        }
    }

    /// Repository-relative path of an object (the id is ignored for the config).
    pub fn path(self, id: &Id) -> String {
        match self {
            Self::Config => "config".to_owned(),
            Self::Pack => {
                let h = id.to_hex();
                format!("data/{}/{}", &h[..2], h)
            }
            other => format!("{}/{}", other.dir(), id.to_hex()),
        }
    }
}

/// How a storage operation failed, so callers can branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// A write found the object already there (writes never overwrite).
    AlreadyExists,
    /// Worth retrying (timeouts, throttling, connection resets).
    Transient,
    /// Anything else: permissions, full disk, invalid configuration.
    Permanent,
}

/// A storage error with the path it concerns.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} {path}: {message}")]
pub struct BackendError {
    /// Branchable kind.
    pub kind: ErrorKind,
    /// The operation (`read`, `write`, ...).
    pub op: &'static str,
    /// Location of the object or folder concerned.
    pub path: String,
    /// The underlying error, one line.
    pub message: String,
}

/// [`Backend::read_range`] for storage and wrappers whose ranged read is
/// [`Backend::read_range_into`]: into a new buffer.
pub(crate) fn range_through_into(
    b: &dyn Backend,
    t: FileType,
    id: &Id,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, BackendError> {
    let mut buf = Vec::new();
    b.read_range_into(t, id, offset, len, &mut buf)?;
    Ok(buf)
}

/// What a caller knows about packs that a caching wrapper can use ([`Backend::hint`]).
#[derive(Debug, Clone, Copy)]
pub enum PackHint<'a> {
    /// Every pack of the index just loaded whose blobs are all trees (FORMAT §13 keeps tree
    /// blobs in packs of their own): worth keeping whole, and any other pack kept may go.
    TreePacks(&'a [Id]),
    /// A pack of tree blobs only, about to be written.
    NewTreePack(&'a Id),
}

/// A file in a repository's `tmp/` (a folder, or sftp): a write in progress, or one a crash
/// interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempFile {
    /// File name inside `tmp/`.
    pub name: String,
    /// Size in bytes.
    pub len: u64,
    /// Time since it was last modified.
    pub age: std::time::Duration,
}

impl TempFile {
    /// Older than [`local::STALE_TEMP_AFTER`]: a dead writer's, which anyone opening the
    /// repository may remove (docs/FORMAT.md §2).
    pub fn is_stale(&self) -> bool {
        self.age > local::STALE_TEMP_AFTER
    }
}

/// Storage for one repository. Implementations must be safe to call from many threads.
///
/// Contract: `write` is atomic (readers see all of an object or nothing) and durable when it
/// returns, and never replaces an existing object (`AlreadyExists`); only `replace_config`
/// replaces, and only the config; `list` returns every object durable before the call began.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Human description (`local:/srv/backup`), for messages.
    fn location(&self) -> String;
    /// Creates the repository's folders; fails if a config already exists.
    fn create(&self) -> Result<(), BackendError>;
    /// Ids and sizes of every object of one type; the config, if present, is listed once under
    /// the zero id. Names that are not objects (not hex, wrong folder, `tmp/`) are skipped.
    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError>;
    /// A hint that `list(t)` follows soon: a backend that waits on round trips may start the
    /// listing now, in the background, and answer the next `list(t)` with it, which then
    /// holds every object durable before this call began (not before that `list`). Callers
    /// hint only where such a listing is as good as a later one (after a lock that keeps
    /// deletions out is written, [`crate::repo::Repository::lock_listing_ahead`]). A later
    /// hint for the same type replaces an unused one. The default does nothing.
    fn list_ahead(&self, _t: FileType) {}
    /// The whole object.
    fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError>;
    /// `len` bytes from `offset`; fewer bytes than asked for is an error.
    fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BackendError>;
    /// [`Backend::read_range`] into `buf`, replacing what it held: a caller reading range
    /// after range (restore's workers, check) keeps one buffer, so its pages are not faulted
    /// in and zeroed again for every read (a twentieth of a remote restore's CPU time). On an
    /// error `buf` holds nothing of use. Storage and the wrappers in the read path override
    /// it; the default is a plain `read_range`.
    fn read_range_into(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        *buf = self.read_range(t, id, offset, len)?;
        Ok(())
    }
    /// Size of an object.
    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError>;
    /// Stores a new object atomically and durably; never overwrites.
    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError>;
    /// [`Backend::write`] of the concatenation of `parts`. Backends that can send a
    /// non-contiguous buffer override this to avoid joining the parts (a pack's sealed blobs).
    fn write_parts(&self, t: FileType, id: &Id, parts: Vec<Vec<u8>>) -> Result<(), BackendError> {
        self.write(t, id, parts.concat())
    }
    /// Replaces the `config` atomically and durably (readers see the old config or the new
    /// one, never neither and never a mix): the one object ever replaced, when a repository
    /// is upgraded to a newer format (docs/FORMAT.md §10, §18). `NotFound` if there is none.
    /// Storage that cannot replace atomically keeps this refusal (wrappers forward it).
    fn replace_config(&self, bytes: Vec<u8>) -> Result<(), BackendError> {
        drop(bytes);
        Err(BackendError {
            kind: ErrorKind::Permanent,
            op: "replace",
            path: FileType::Config.path(&Id::default()),
            message: format!("{} cannot replace its config", self.location()),
        })
    }
    /// Removes an object; removing a missing object is `NotFound`.
    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError>;
    /// Files in `tmp/`, for `check`: writes in progress or interrupted, in local
    /// repositories and those whose writes are staged (sftp); object stores have none.
    fn temp_files(&self) -> Result<Vec<TempFile>, BackendError> {
        Ok(Vec::new())
    }
    /// Advisory: tells a caching wrapper ([`cache`]) which packs hold trees only. Storage
    /// ignores it; it changes no result. A default method, because only the cache needs it
    /// and only the repository (which has decrypted the index) knows.
    fn hint(&self, hint: PackHint<'_>) {
        let _ = hint;
    }
}
