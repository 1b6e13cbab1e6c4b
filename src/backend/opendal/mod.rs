//! The only code that imports OpenDAL: a [`Backend`] over any OpenDAL operator (the memory
//! store for tests; S3, GCS, Azure Blob, sftp and WebDAV), and [`build`], which makes the
//! operator for a [`Location`](super::location::Location).
//!
//! Local folders do not come here ([`super::local`] does them with `std::fs`). OpenDAL is
//! async; a private two-thread tokio runtime drives it and every trait method blocks on it
//! (many threads may block on it at once; `-o connections` bounds the requests in flight).
//!
//! How a write is kept from replacing an object is decided per service from OpenDAL's
//! capabilities ([`WriteMode`], docs/FORMAT.md §18): a create-only PUT where the service has
//! one (S3's `If-None-Match: *`, GCS's generation precondition, Azure's `If-None-Match`),
//! else a `stat` first (safe for objects named by their content: a racing writer of the same
//! name writes the same bytes); sftp writes in place, so its writes are staged under `tmp/`
//! and renamed into place (OpenSSH's `posix-rename`, atomic), after the same `stat`.

pub mod build;
#[cfg(feature = "http")]
mod transport;

use bytes::Bytes;
use opendal::{Buffer, ErrorKind as OdKind, Operator, services};

use super::{Backend, BackendError, ErrorKind, FileType, TempFile};
use crate::id::Id;

/// How a write is kept from replacing an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// One PUT with the service's create-only condition: atomic and race-free.
    Conditional,
    /// `stat`, then one unconditional PUT: a racing writer of the same content-named object
    /// writes the same bytes, so losing the race is harmless (docs/FORMAT.md §18).
    CheckFirst,
    /// `stat`, then write a temporary object under `tmp/` create-only and rename it to its
    /// final name: for services whose writes are visible while in progress (sftp). The rename
    /// is atomic; like [`WriteMode::CheckFirst`] it may replace a racing writer's identical
    /// bytes (OpenSSH's `posix-rename` replaces; servers without it refuse, which is reported
    /// as `AlreadyExists`).
    Staged,
}

/// How the config is replaced atomically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceMode {
    /// One PUT replaces an object atomically (object stores, WebDAV servers that stage PUTs).
    Put,
    /// A staged object under `tmp/`, renamed over the config (sftp's `posix-rename` is
    /// atomic; a server without it refuses to rename over the config, which then stays as
    /// it was and the upgrade fails cleanly).
    Rename,
}

/// A backend over an OpenDAL operator.
pub struct OpendalBackend {
    op: Operator,
    rt: tokio::runtime::Runtime,
    location: String,
    write_mode: WriteMode,
    replace_mode: ReplaceMode,
    /// Values that must never appear in a message (credentials given to the builder).
    secrets: Vec<String>,
    /// Prepended to every repository path: the repository's folder with a trailing `/` for
    /// sftp, empty for the rest. OpenDAL's sftp service creates every folder of its root when
    /// it connects, so a mistyped `sftp://` location would leave an empty folder behind (and
    /// `snapshots` would make one); its operator is rooted at the server's `/` instead and
    /// the repository's folder is only ever made by the writes of `init`.
    prefix: String,
}

impl std::fmt::Debug for OpendalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpendalBackend")
            .field("location", &self.location)
            .field("write_mode", &self.write_mode)
            .finish_non_exhaustive()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BackendError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cista-io")
        .enable_all()
        .build()
        .map_err(|e| BackendError {
            kind: ErrorKind::Permanent,
            op: "start",
            path: String::new(),
            message: e.to_string(),
        })
}

impl OpendalBackend {
    /// An in-memory repository: for tests only (nothing is durable).
    pub fn memory() -> Result<Self, BackendError> {
        let rt = runtime()?;
        let op = {
            let _guard = rt.enter();
            Operator::new(services::Memory::default())
                .map_err(|e| convert("open", "memory", e, &[]))?
        };
        Ok(Self::with_operator(
            op,
            rt,
            "memory:".into(),
            None,
            Vec::new(),
            String::new(),
        ))
    }

    /// A backend over `op`, writing as the operator's capabilities allow (`staged` for
    /// services whose writes are visible in progress).
    fn with_operator(
        op: Operator,
        rt: tokio::runtime::Runtime,
        location: String,
        staged: Option<ReplaceMode>,
        secrets: Vec<String>,
        prefix: String,
    ) -> Self {
        let cap = op.info().capability();
        let (write_mode, replace_mode) = match staged {
            Some(r) if cap.rename => (WriteMode::Staged, r),
            _ if cap.write_with_if_not_exists => (WriteMode::Conditional, ReplaceMode::Put),
            _ => (WriteMode::CheckFirst, ReplaceMode::Put),
        };
        Self {
            op,
            rt,
            location,
            write_mode,
            replace_mode,
            secrets,
            prefix,
        }
    }

    /// The operator's path of a repository path (see `prefix`).
    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// How this backend keeps writes from replacing (for tests and diagnostics).
    pub fn write_mode(&self) -> WriteMode {
        self.write_mode
    }

    fn convert(&self, op: &'static str, path: &str, e: opendal::Error) -> BackendError {
        convert(op, path, e, &self.secrets)
    }

    fn exists(&self, op: &'static str, path: &str) -> Result<bool, BackendError> {
        match self.rt.block_on(self.op.stat(&self.key(path))) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == OdKind::NotFound => Ok(false),
            Err(e) => Err(self.convert(op, path, e)),
        }
    }

    fn already_exists(path: String) -> BackendError {
        BackendError {
            kind: ErrorKind::AlreadyExists,
            op: "write",
            path,
            message: "object already exists".into(),
        }
    }

    /// Stores a new object; never replaces one (see [`WriteMode`]).
    fn write_buffer(&self, t: FileType, id: &Id, buffer: Buffer) -> Result<(), BackendError> {
        let path = t.path(id);
        match self.write_mode {
            WriteMode::Conditional => self
                .rt
                .block_on(async {
                    self.op
                        .write_with(&self.key(&path), buffer)
                        .if_not_exists(true)
                        .await
                })
                .map(drop)
                .map_err(|e| self.convert("write", &path, e)),
            WriteMode::CheckFirst => {
                if self.exists("write", &path)? {
                    return Err(Self::already_exists(path));
                }
                self.rt
                    .block_on(self.op.write(&self.key(&path), buffer))
                    .map(drop)
                    .map_err(|e| self.convert("write", &path, e))
            }
            WriteMode::Staged => self.write_staged(path, buffer),
        }
    }

    /// A fresh name under `tmp/` for a staged write of `path`: its file name and random hex,
    /// so concurrent writers of one object never share one.
    fn temp_name(&self, op: &'static str, path: &str) -> Result<String, BackendError> {
        let mut r = [0u8; 8];
        crate::crypto::random_bytes(&mut r).map_err(|e| BackendError {
            kind: ErrorKind::Permanent,
            op,
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let name = path.rsplit('/').next().unwrap_or(path);
        Ok(format!("tmp/{name}.{}.tmp", hex::encode(r)))
    }

    /// [`WriteMode::Staged`]: a create-only temporary object under `tmp/`, renamed to its
    /// final name. The temporary object is removed whatever fails.
    fn write_staged(&self, path: String, buffer: Buffer) -> Result<(), BackendError> {
        if self.exists("write", &path)? {
            return Err(Self::already_exists(path));
        }
        let tmp = self.key(&self.temp_name("write", &path)?);
        let result = self.rt.block_on(async {
            self.op.write_with(&tmp, buffer).if_not_exists(true).await?;
            self.op.rename(&tmp, &self.key(&path)).await
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.rt.block_on(self.op.delete(&tmp));
                // The rename refuses an existing name: a racing writer got there first.
                if self.exists("write", &path).unwrap_or(false) {
                    return Err(Self::already_exists(path));
                }
                Err(self.convert("write", &path, e))
            }
        }
    }

    /// Staged writes left in `tmp/` ([`WriteMode::Staged`] only; other services write in one
    /// request and leave none), with their age from the server's modification time.
    fn staged_files(&self) -> Result<Vec<TempFile>, BackendError> {
        if self.write_mode != WriteMode::Staged {
            return Ok(Vec::new());
        }
        let dir = self.key("tmp/");
        let entries = match self.rt.block_on(self.op.list(&dir)) {
            Ok(e) => e,
            Err(e) if e.kind() == OdKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.convert("list", "tmp/", e)),
        };
        let now = std::time::SystemTime::now();
        let mut out: Vec<TempFile> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| TempFile {
                name: e.name().to_owned(),
                len: e.metadata().content_length(),
                // Unknown or in the future (clock skew): reported as new, never removed.
                age: e
                    .metadata()
                    .last_modified()
                    .and_then(|t| now.duration_since(t.into()).ok())
                    .unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes staged writes older than [`super::local::STALE_TEMP_AFTER`] (a crashed or killed writer's),
    /// as a local repository does when opened. Best effort: a failure changes nothing, and
    /// `check` still reports what is left.
    pub fn remove_stale_temp_files(&self) {
        let Ok(files) = self.staged_files() else {
            return;
        };
        for f in files.into_iter().filter(TempFile::is_stale) {
            let _ = self
                .rt
                .block_on(self.op.delete(&self.key(&format!("tmp/{}", f.name))));
        }
    }

    /// One cheap request that tells an unreachable endpoint, a missing bucket and refused
    /// credentials apart, each with its own message ([`build::describe`]).
    pub fn probe(&self) -> Result<(), BackendError> {
        let r = self.rt.block_on(async {
            use futures_util::StreamExt as _;
            let mut l = self.op.lister_with(&self.prefix).limit(1).await?;
            match l.next().await {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            }
        });
        match r {
            Ok(()) => Ok(()),
            // An empty repository prefix: the bucket answered, so it exists.
            Err(e) if e.kind() == OdKind::NotFound && !build::bucket_missing(&e) => Ok(()),
            Err(e) => Err(self.convert("open", &self.location, e)),
        }
    }
}

/// An OpenDAL error as a [`BackendError`]: kind for branching, and one line a user can act on
/// (`build::describe`), with every configured secret removed.
fn convert(op: &'static str, path: &str, e: opendal::Error, secrets: &[String]) -> BackendError {
    let kind = match e.kind() {
        OdKind::NotFound if build::bucket_missing(&e) => ErrorKind::Permanent,
        OdKind::NotFound => ErrorKind::NotFound,
        OdKind::AlreadyExists | OdKind::ConditionNotMatch => ErrorKind::AlreadyExists,
        _ if e.is_temporary() => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    };
    let mut message = build::describe(&e);
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        message = message.replace(s.as_str(), "***");
    }
    BackendError {
        kind,
        op,
        path: path.to_owned(),
        message,
    }
}

impl Backend for OpendalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<(), BackendError> {
        // Object stores have no folders (docs/FORMAT.md §2); sftp's are made as objects land.
        if self.exists("create", "config")? {
            return Err(BackendError {
                kind: ErrorKind::AlreadyExists,
                op: "create",
                path: self.location.clone(),
                message: "a config already exists".into(),
            });
        }
        Ok(())
    }

    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
        if t == FileType::Config {
            // The one config, listed under the zero id its path ignores.
            return match self.rt.block_on(self.op.stat(&self.key("config"))) {
                Ok(m) => Ok(vec![(Id::default(), m.content_length())]),
                Err(e) if e.kind() == OdKind::NotFound && !build::bucket_missing(&e) => {
                    Ok(Vec::new())
                }
                Err(e) => Err(self.convert("list", "config", e)),
            };
        }
        let dir = format!("{}/", t.dir());
        let entries = match self
            .rt
            .block_on(async { self.op.list_with(&self.key(&dir)).recursive(true).await })
        {
            Ok(e) => e,
            Err(e) if e.kind() == OdKind::NotFound && !build::bucket_missing(&e) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.convert("list", &dir, e)),
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            if !e.metadata().is_file() {
                continue;
            }
            // Only names that `read` would find are objects: editor droppings, partial
            // downloads and hex names in the wrong folder are ignored.
            let Ok(id) = Id::from_hex(e.name()) else {
                continue;
            };
            let path = e.path().trim_start_matches('/');
            if path.strip_prefix(self.prefix.as_str()) != Some(t.path(&id).as_str()) {
                continue;
            }
            let len = match e.metadata().content_length() {
                // Some listings (sftp, WebDAV) may leave the size out: ask.
                0 => match self.rt.block_on(self.op.stat(e.path())) {
                    Ok(m) => m.content_length(),
                    // Deleted since the listing: not an object any more.
                    Err(err) if err.kind() == OdKind::NotFound => continue,
                    Err(err) => return Err(self.convert("list", e.path(), err)),
                },
                n => n,
            };
            out.push((id, len));
        }
        Ok(out)
    }

    fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
        let path = t.path(id);
        let buf = self
            .rt
            .block_on(self.op.read(&self.key(&path)))
            .map_err(|e| self.convert("read", &path, e))?;
        Ok(Vec::from(buf.to_bytes()))
    }

    fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BackendError> {
        crate::backend::range_through_into(self, t, id, offset, len)
    }

    fn read_range_into(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        out.clear();
        let path = t.path(id);
        let range_error = |message: String| BackendError {
            kind: ErrorKind::Permanent,
            op: "read",
            path: path.clone(),
            message,
        };
        let end = offset
            .checked_add(len)
            .ok_or_else(|| range_error("range overflows".into()))?;
        if len == 0 {
            // OpenDAL reads an empty range as "to the end"; check the bounds instead.
            let size = self.size(t, id)?;
            if offset > size {
                return Err(range_error(format!(
                    "offset {offset} is past the end ({size} bytes)"
                )));
            }
            return Ok(());
        }
        // Streamed into one buffer of the asked length: collecting OpenDAL's chunks and then
        // making them one `Vec` would hold the request's bytes two or three times over, which
        // with whole-pack reads in flight is tens of MiB. More bytes than asked (a broken or
        // hostile server) end the read instead of growing the buffer.
        out.reserve(usize::try_from(len).unwrap_or(0));
        let whole = self
            .rt
            .block_on(async {
                use futures_util::TryStreamExt as _;
                let reader = self.op.reader(&self.key(&path)).await?;
                let mut stream = reader.into_stream(offset..end).await?;
                while let Some(chunk) = stream.try_next().await? {
                    if (out.len() + chunk.len()) as u64 > len {
                        return Ok(false);
                    }
                    for b in chunk {
                        out.extend_from_slice(&b);
                    }
                }
                Ok(true)
            })
            .map_err(|e| self.convert("read", &path, e))?;
        if !whole {
            out.clear();
            return Err(range_error(format!(
                "the server sent more than the {len} bytes asked for at offset {offset}"
            )));
        }
        if out.len() as u64 != len {
            // A connection cut mid-body looks like this too: worth another try.
            return Err(BackendError {
                kind: ErrorKind::Transient,
                ..range_error(format!(
                    "short read: {} of {len} bytes at offset {offset}",
                    out.len()
                ))
            });
        }
        Ok(())
    }

    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
        let path = t.path(id);
        let m = self
            .rt
            .block_on(self.op.stat(&self.key(&path)))
            .map_err(|e| self.convert("stat", &path, e))?;
        Ok(m.content_length())
    }

    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
        self.write_buffer(t, id, Buffer::from(bytes))
    }

    fn write_parts(&self, t: FileType, id: &Id, parts: Vec<Vec<u8>>) -> Result<(), BackendError> {
        // `Buffer` holds the parts as they are; writers send them one after another.
        // Empty parts are dropped: OpenDAL 0.59's writers spin forever on a buffer whose
        // current chunk is empty while bytes remain after it (found by the conformance suite).
        let parts: Vec<Bytes> = parts
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(Bytes::from)
            .collect();
        self.write_buffer(t, id, Buffer::from(parts))
    }

    fn replace_config(&self, bytes: Vec<u8>) -> Result<(), BackendError> {
        let path = FileType::Config.path(&Id::default());
        if !self.exists("replace", &path)? {
            return Err(BackendError {
                kind: ErrorKind::NotFound,
                op: "replace",
                path,
                message: "no config to replace".into(),
            });
        }
        if self.replace_mode == ReplaceMode::Rename {
            let tmp = self.key(&self.temp_name("replace", &path)?);
            let r = self.rt.block_on(async {
                self.op.write_with(&tmp, bytes).if_not_exists(true).await?;
                self.op.rename(&tmp, &self.key(&path)).await
            });
            if r.is_err() {
                let _ = self.rt.block_on(self.op.delete(&tmp));
            }
            return r.map_err(|e| self.convert("replace", &path, e));
        }
        // Object stores: one PUT replaces atomically.
        self.rt
            .block_on(self.op.write(&self.key(&path), bytes))
            .map(drop)
            .map_err(|e| self.convert("replace", &path, e))
    }

    fn temp_files(&self) -> Result<Vec<TempFile>, BackendError> {
        self.staged_files()
    }

    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
        let path = t.path(id);
        // Object stores report success for a missing key: ask first.
        if !self.exists("delete", &path)? {
            return Err(BackendError {
                kind: ErrorKind::NotFound,
                op: "delete",
                path,
                message: "not found".into(),
            });
        }
        self.rt
            .block_on(self.op.delete(&self.key(&path)))
            .map_err(|e| self.convert("delete", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_conforms() {
        let b = OpendalBackend::memory().unwrap();
        assert_eq!(b.write_mode(), WriteMode::Conditional);
        crate::backend::conformance::run_all(&b);
    }
}
