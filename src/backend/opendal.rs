//! The only file that imports OpenDAL: a [`Backend`] over an OpenDAL operator.
//!
//! Local repositories use OpenDAL's fs service for listing, reading and deleting; local
//! writes go through [`super::local`] instead (files 0600 and folders 0700 from the start, a
//! publish by hard link that never replaces, the temporary file removed when a write fails,
//! and the destination folder fsynced before `write` returns), because OpenDAL's fs writer
//! can do none of that. The in-memory store is written through OpenDAL with `if_not_exists`.
//! OpenDAL is async; a private two-thread tokio runtime drives it and every trait method
//! blocks on it, except ranged reads and writes of local files, which use the file directly
//! (ranged reads are a restore's hot path).
//!
//! Opening a local folder touches nothing: OpenDAL's fs service creates its root folder when
//! built, so the operator is built only once the folder is a repository (it has a `config` or
//! a `tmp/`) or [`Backend::create`] has made it one. Until then every operation reports
//! `NotFound`, and a mistyped path is never created.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use opendal::{Buffer, ErrorKind as OdKind, Operator, services};

use super::local::{self, io_error};
use super::{Backend, BackendError, ErrorKind, FileType, TempFile};
use crate::id::Id;

/// A backend over any OpenDAL operator.
pub struct OpendalBackend {
    /// Unset while a local folder is not (yet) a repository; see the module header.
    op: OnceLock<Operator>,
    rt: tokio::runtime::Runtime,
    /// Set for local folders: the root whose directories are fsynced after each write.
    local_root: Option<PathBuf>,
    location: String,
    /// Services without conditional writes are checked with `stat` first.
    check_exists_first: bool,
}

impl std::fmt::Debug for OpendalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpendalBackend")
            .field("location", &self.location)
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

fn convert(op: &'static str, path: &str, e: opendal::Error) -> BackendError {
    let kind = match e.kind() {
        OdKind::NotFound => ErrorKind::NotFound,
        OdKind::AlreadyExists | OdKind::ConditionNotMatch => ErrorKind::AlreadyExists,
        _ if e.is_temporary() => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    };
    BackendError {
        kind,
        op,
        path: path.to_owned(),
        message: e.to_string().replace('\n', " "),
    }
}

/// A ranged read of a local file straight into a new buffer: restores read each chunk this
/// way, and going through OpenDAL's fs service costs a hop to tokio's blocking pool and a
/// copy per chunk (a tenth of a restore's CPU time in `perf`, most of it waking threads).
fn read_local_range(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    f.seek(SeekFrom::Start(offset))?;
    // `len` comes from an index or a pack header: the allocation is bounded by the file, and
    // a lying length is caught by the check below.
    let cap = usize::try_from(len.min(size.saturating_sub(offset))).unwrap_or(0);
    let mut buf = Vec::with_capacity(cap);
    f.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "short read: {} of {len} bytes at offset {offset}",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

impl OpendalBackend {
    /// A repository in a local folder. Opening creates nothing: a missing folder gives
    /// `NotFound` from every operation until [`Backend::create`] makes it.
    pub fn local(root: impl AsRef<Path>) -> Result<Self, BackendError> {
        let root = std::path::absolute(root.as_ref())
            .map_err(|e| io_error("open", root.as_ref(), "local", &e))?;
        let b = Self {
            op: OnceLock::new(),
            rt: runtime()?,
            location: format!("local:{}", root.display()),
            local_root: Some(root),
            check_exists_first: false,
        };
        if b.is_local_repository() {
            b.open_local()?;
            b.remove_stale_temp_files();
        }
        Ok(b)
    }

    /// Removes temporary files a dead writer left in `tmp/` more than
    /// [`local::STALE_TEMP_AFTER`] ago (docs/FORMAT.md §2: a live writer never keeps one that
    /// long). Best effort: failures change nothing.
    fn remove_stale_temp_files(&self) {
        if let Some(root) = &self.local_root {
            local::remove_stale_temp_files(&local::tmp_dir(root));
        }
    }

    /// An in-memory repository: for unit tests only (nothing is durable).
    pub fn memory() -> Result<Self, BackendError> {
        let rt = runtime()?;
        let op = {
            let _guard = rt.enter();
            Operator::new(services::Memory::default()).map_err(|e| convert("open", "memory", e))?
        };
        Ok(Self {
            op: OnceLock::from(op),
            rt,
            local_root: None,
            location: "memory:".into(),
            check_exists_first: true,
        })
    }

    /// Whether the local root holds a repository (or one being created).
    fn is_local_repository(&self) -> bool {
        self.local_root
            .as_ref()
            .is_some_and(|root| root.join("config").exists() || root.join("tmp").is_dir())
    }

    /// Builds the fs operator over an existing local repository, with `tmp/` as the folder
    /// every write goes through (OpenDAL canonicalizes it when building, so it must exist).
    fn open_local(&self) -> Result<&Operator, BackendError> {
        let Some(root) = &self.local_root else {
            return Err(self.no_repository("open"));
        };
        let tmp = local::tmp_dir(root);
        local::create_dir_all(&tmp).map_err(|e| io_error("open", &tmp, &self.location, &e))?;
        // Writes never reach OpenDAL's fs writer (see the module header), so no
        // `atomic_write_dir` is needed.
        let builder = services::Fs::default().root(&root.to_string_lossy());
        let op = {
            let _guard = self.rt.enter();
            Operator::new(builder).map_err(|e| convert("open", &self.location, e))?
        };
        // A racing thread may have set it first; both operators are equivalent.
        Ok(self.op.get_or_init(|| op))
    }

    /// The operator, once the location is a repository.
    fn operator(&self, op: &'static str) -> Result<&Operator, BackendError> {
        if let Some(o) = self.op.get() {
            return Ok(o);
        }
        // Another process may have initialised the folder since it was opened.
        if self.is_local_repository() {
            return self.open_local();
        }
        Err(self.no_repository(op))
    }

    fn no_repository(&self, op: &'static str) -> BackendError {
        BackendError {
            kind: ErrorKind::NotFound,
            op,
            path: self.location.clone(),
            message: "no repository here".into(),
        }
    }

    /// Fsyncs the directory holding `rel` and, for a new subfolder, its parent, so a rename
    /// into them survives a crash.
    /// Fsyncs the directory holding `rel`, so a rename into it (or a removal from it)
    /// survives a crash. Every folder a write can land in is created and synced by
    /// `create()`, so only the immediate parent needs it here.
    fn sync_parent(&self, rel: &str) -> Result<(), BackendError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut dir = root.join(rel);
        dir.pop();
        local::sync_dir(&dir).map_err(|e| io_error("sync", &dir, &self.location, &e))
    }

    /// Fsyncs every folder made by `create()`, deepest first.
    fn sync_tree(&self, rel: &str) -> Result<(), BackendError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut dir = root.join(rel);
        while dir.pop() && dir.starts_with(root) {
            local::sync_dir(&dir).map_err(|e| io_error("sync", &dir, &self.location, &e))?;
            if dir == *root {
                break;
            }
        }
        Ok(())
    }
}

impl OpendalBackend {
    /// Stores a new object atomically and durably; never overwrites (the in-memory store).
    fn write_buffer(&self, t: FileType, id: &Id, buffer: Buffer) -> Result<(), BackendError> {
        let op = self.operator("write")?;
        let path = t.path(id);

        if self.check_exists_first && self.rt.block_on(op.exists(&path)).unwrap_or(false) {
            return Err(BackendError {
                kind: ErrorKind::AlreadyExists,
                op: "write",
                path,
                message: "object already exists".into(),
            });
        }
        self.rt
            .block_on(async { op.write_with(&path, buffer).if_not_exists(true).await })
            .map_err(|e| convert("write", &path, e))?;
        self.sync_parent(&path)
    }
}

impl OpendalBackend {
    /// A local write ([`local::write_new`]), once the folder is a repository.
    fn write_local(&self, t: FileType, id: &Id, parts: &[&[u8]]) -> Result<(), BackendError> {
        self.operator("write")?;
        let Some(root) = &self.local_root else {
            return Err(self.no_repository("write"));
        };
        local::write_new(
            &local::tmp_dir(root),
            &root.join(t.path(id)),
            parts,
            &self.location,
        )
    }
}

impl Backend for OpendalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<(), BackendError> {
        let already = || BackendError {
            kind: ErrorKind::AlreadyExists,
            op: "create",
            path: self.location.clone(),
            message: "a config already exists".into(),
        };
        let Some(root) = &self.local_root else {
            let op = self.operator("create")?;
            return match self.rt.block_on(op.exists("config")) {
                Ok(false) => Ok(()),
                Ok(true) => Err(already()),
                Err(e) => Err(convert("create", "config", e)),
            };
        };
        if root.join("config").exists() {
            return Err(already());
        }
        // Create every folder up front, with `tmp/` for atomic writes, then build the operator
        // over them so every later write goes through `tmp/`.
        let mk = |p: PathBuf| {
            local::create_dir_all(&p).map_err(|e| io_error("create", &p, &self.location, &e))
        };
        mk(root.join("tmp"))?;
        for t in FileType::ALL.iter().filter(|t| **t != FileType::Config) {
            mk(root.join(t.dir()))?;
        }
        for b in 0..=255u8 {
            mk(root.join("data").join(format!("{b:02x}")))?;
        }
        self.sync_tree("data/00/x")?;
        self.operator("create")?;
        Ok(())
    }

    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
        let op = self.operator("list")?;
        if t == FileType::Config {
            // The one config, listed under the zero id its path ignores.
            return match self.rt.block_on(op.stat("config")) {
                Ok(m) => Ok(vec![(Id::default(), m.content_length())]),
                Err(e) if e.kind() == OdKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(convert("list", "config", e)),
            };
        }
        let dir = format!("{}/", t.dir());
        let entries = match self
            .rt
            .block_on(async { op.list_with(&dir).recursive(true).await })
        {
            Ok(e) => e,
            Err(e) if e.kind() == OdKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(convert("list", &dir, e)),
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
            if e.path().trim_start_matches('/') != t.path(&id) {
                continue;
            }
            let len = match e.metadata().content_length() {
                0 => match self.rt.block_on(op.stat(e.path())) {
                    Ok(m) => m.content_length(),
                    // Deleted since the listing: not an object any more.
                    Err(err) if err.kind() == OdKind::NotFound => continue,
                    Err(err) => return Err(convert("list", e.path(), err)),
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
            .block_on(self.operator("read")?.read(&path))
            .map_err(|e| convert("read", &path, e))?;
        Ok(Vec::from(buf.to_bytes()))
    }

    fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let op = self.operator("read")?;
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
            return Ok(Vec::new());
        }
        if let Some(root) = &self.local_root {
            return read_local_range(&root.join(&path), offset, len)
                .map_err(|e| io_error("read", &root.join(&path), &self.location, &e));
        }
        let buf = self
            .rt
            .block_on(async { op.read_with(&path).range(offset..end).await })
            .map_err(|e| convert("read", &path, e))?;
        if buf.len() as u64 != len {
            return Err(range_error(format!(
                "short read: {} of {len} bytes at offset {offset}",
                buf.len()
            )));
        }
        Ok(Vec::from(buf.to_bytes()))
    }

    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
        let path = t.path(id);
        let m = self
            .rt
            .block_on(self.operator("stat")?.stat(&path))
            .map_err(|e| convert("stat", &path, e))?;
        Ok(m.content_length())
    }

    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
        if self.local_root.is_some() {
            return self.write_local(t, id, &[&bytes]);
        }
        self.write_buffer(t, id, Buffer::from(bytes))
    }

    fn write_parts(&self, t: FileType, id: &Id, parts: Vec<Vec<u8>>) -> Result<(), BackendError> {
        if self.local_root.is_some() {
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            return self.write_local(t, id, &slices);
        }
        // `Buffer` holds the parts as they are; the fs writer writes them one after another.
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
        let op = self.operator("replace")?;
        let path = FileType::Config.path(&Id::default());
        if !self
            .rt
            .block_on(op.exists(&path))
            .map_err(|e| convert("replace", &path, e))?
        {
            return Err(BackendError {
                kind: ErrorKind::NotFound,
                op: "replace",
                path,
                message: "no config to replace".into(),
            });
        }
        if let Some(root) = &self.local_root {
            return local::replace(
                &local::tmp_dir(root),
                &root.join(&path),
                &bytes,
                &self.location,
            );
        }
        // Object stores: one PUT replaces atomically.
        self.rt
            .block_on(op.write(&path, bytes))
            .map(drop)
            .map_err(|e| convert("replace", &path, e))
    }

    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
        let op = self.operator("delete")?;
        let path = t.path(id);
        if !self
            .rt
            .block_on(op.exists(&path))
            .map_err(|e| convert("delete", &path, e))?
        {
            return Err(BackendError {
                kind: ErrorKind::NotFound,
                op: "delete",
                path,
                message: "not found".into(),
            });
        }
        self.rt
            .block_on(op.delete(&path))
            .map_err(|e| convert("delete", &path, e))?;
        self.sync_parent(&path)
    }

    fn temp_files(&self) -> Result<Vec<TempFile>, BackendError> {
        let Some(root) = &self.local_root else {
            return Ok(Vec::new());
        };
        let tmp = local::tmp_dir(root);
        local::temp_files(&tmp).map_err(|e| io_error("list", &tmp, &self.location, &e))
    }
}
