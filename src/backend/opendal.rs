//! The only file that imports OpenDAL: a [`Backend`] over an OpenDAL operator.
//!
//! Local repositories use OpenDAL's fs service with `atomic_write_dir` set to the repository's
//! `tmp/` folder, so each write goes to a temporary file that is fsynced and renamed into
//! place. OpenDAL does not fsync the directory after the rename, so this backend does, making
//! the new name durable before `write` returns. Writes use `if_not_exists`, so an object is
//! never replaced (objects are content-addressed, so a racing writer of the same name writes
//! the same bytes). OpenDAL is async; a private two-thread tokio runtime drives it and every
//! trait method blocks on it.

use std::path::{Path, PathBuf};

use opendal::{ErrorKind as OdKind, Operator, services};

use super::{Backend, BackendError, ErrorKind, FileType};
use crate::id::Id;

/// A backend over any OpenDAL operator.
pub struct OpendalBackend {
    op: Operator,
    rt: tokio::runtime::Runtime,
    /// Set for local folders: the root whose directories are fsynced after each write.
    local_root: Option<PathBuf>,
    location: String,
    /// Services without conditional writes are checked with `stat` first.
    check_exists_first: bool,
    /// Set by `create`: the operator with the atomic-write folder, which `local` cannot
    /// configure before the folder exists. Writes use it when set.
    created: std::sync::OnceLock<Operator>,
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

fn io_error(op: &'static str, path: &Path, e: &std::io::Error) -> BackendError {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        ErrorKind::NotFound
    } else {
        ErrorKind::Permanent
    };
    BackendError {
        kind,
        op,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl OpendalBackend {
    /// A repository in a local folder (created by [`Backend::create`] if missing).
    pub fn local(root: impl AsRef<Path>) -> Result<Self, BackendError> {
        let root =
            std::path::absolute(root.as_ref()).map_err(|e| io_error("open", root.as_ref(), &e))?;
        let location = format!("local:{}", root.display());
        let rt = runtime()?;
        // OpenDAL canonicalizes the atomic-write folder when building, so it must exist then;
        // it is created only if the repository folder itself exists (opening a missing
        // repository must not create it).
        let tmp = root.join("tmp");
        let mut builder = services::Fs::default().root(&root.to_string_lossy());
        if root.join("config").exists() || tmp.exists() {
            std::fs::create_dir_all(&tmp).map_err(|e| io_error("open", &tmp, &e))?;
            builder = builder.atomic_write_dir(&tmp.to_string_lossy());
        }
        // OpenDAL's fs builder creates a missing root folder; opening must not, so remove
        // the folders it made (deepest first; `create` makes them again for `init`).
        let missing: Vec<PathBuf> = root
            .ancestors()
            .take_while(|p| std::fs::symlink_metadata(p).is_err())
            .map(Path::to_path_buf)
            .collect();
        let op = {
            let _guard = rt.enter();
            Operator::new(builder).map_err(|e| convert("open", &location, e))?
        };
        for p in &missing {
            let _ = std::fs::remove_dir(p);
        }
        Ok(Self {
            op,
            rt,
            local_root: Some(root),
            location,
            check_exists_first: false,
            created: std::sync::OnceLock::new(),
        })
    }

    /// An in-memory repository: for unit tests only (nothing is durable).
    pub fn memory() -> Result<Self, BackendError> {
        let rt = runtime()?;
        let op = {
            let _guard = rt.enter();
            Operator::new(services::Memory::default()).map_err(|e| convert("open", "memory", e))?
        };
        Ok(Self {
            op,
            rt,
            local_root: None,
            location: "memory:".into(),
            check_exists_first: true,
            created: std::sync::OnceLock::new(),
        })
    }

    /// Fsyncs the directory holding `rel` and, for a new subfolder, its parent, so a rename
    /// into them survives a crash.
    fn sync_dirs(&self, rel: &str) -> Result<(), BackendError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut dir = root.join(rel);
        while dir.pop() && dir.starts_with(root) {
            let f = std::fs::File::open(&dir).map_err(|e| io_error("sync", &dir, &e))?;
            f.sync_all().map_err(|e| io_error("sync", &dir, &e))?;
            if dir == *root {
                break;
            }
        }
        Ok(())
    }
}

impl Backend for OpendalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<(), BackendError> {
        if let Some(root) = &self.local_root {
            if root.join("config").exists() {
                return Err(BackendError {
                    kind: ErrorKind::AlreadyExists,
                    op: "create",
                    path: self.location.clone(),
                    message: "a config already exists".into(),
                });
            }
            // Create every folder up front, with `tmp/` for atomic writes, then reopen so
            // OpenDAL picks the atomic-write folder up.
            let mk =
                |p: PathBuf| std::fs::create_dir_all(&p).map_err(|e| io_error("create", &p, &e));
            mk(root.join("tmp"))?;
            for t in FileType::ALL.iter().filter(|t| **t != FileType::Config) {
                mk(root.join(t.dir()))?;
            }
            for b in 0..=255u8 {
                mk(root.join("data").join(format!("{b:02x}")))?;
            }
            self.sync_dirs("data/00/x")?;
            let tmp = root.join("tmp");
            let builder = services::Fs::default()
                .root(&root.to_string_lossy())
                .atomic_write_dir(&tmp.to_string_lossy());
            let op = {
                let _guard = self.rt.enter();
                Operator::new(builder).map_err(|e| convert("create", &self.location, e))?
            };
            let _ = self.created.set(op);
            Ok(())
        } else {
            Ok(())
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
        let dir = format!("{}/", t.dir());
        let entries = match self
            .rt
            .block_on(async { self.op.list_with(&dir).recursive(true).await })
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
            // Names that are not ids (editor droppings, partial downloads) are ignored.
            if let Ok(id) = Id::from_hex(e.name()) {
                let len = match e.metadata().content_length() {
                    0 => self
                        .rt
                        .block_on(self.op.stat(e.path()))
                        .map(|m| m.content_length())
                        .unwrap_or(0),
                    n => n,
                };
                out.push((id, len));
            }
        }
        Ok(out)
    }

    fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
        let path = t.path(id);
        let buf = self
            .rt
            .block_on(self.op.read(&path))
            .map_err(|e| convert("read", &path, e))?;
        Ok(buf.to_vec())
    }

    fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let path = t.path(id);
        let end = offset.checked_add(len).ok_or_else(|| BackendError {
            kind: ErrorKind::Permanent,
            op: "read",
            path: path.clone(),
            message: "range overflows".into(),
        })?;
        let buf = self
            .rt
            .block_on(async { self.op.read_with(&path).range(offset..end).await })
            .map_err(|e| convert("read", &path, e))?;
        if buf.len() as u64 != len {
            return Err(BackendError {
                kind: ErrorKind::Permanent,
                op: "read",
                path,
                message: format!(
                    "short read: {} of {len} bytes at offset {offset}",
                    buf.len()
                ),
            });
        }
        Ok(buf.to_vec())
    }

    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
        let path = t.path(id);
        let m = self
            .rt
            .block_on(self.op.stat(&path))
            .map_err(|e| convert("stat", &path, e))?;
        Ok(m.content_length())
    }

    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
        let path = t.path(id);
        if self.check_exists_first && self.rt.block_on(self.op.exists(&path)).unwrap_or(false) {
            return Err(BackendError {
                kind: ErrorKind::AlreadyExists,
                op: "write",
                path,
                message: "object already exists".into(),
            });
        }
        let op = self.created.get().unwrap_or(&self.op);
        self.rt
            .block_on(async { op.write_with(&path, bytes).if_not_exists(true).await })
            .map_err(|e| convert("write", &path, e))?;
        self.sync_dirs(&path)
    }

    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
        let path = t.path(id);
        if !self
            .rt
            .block_on(self.op.exists(&path))
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
            .block_on(self.op.delete(&path))
            .map_err(|e| convert("delete", &path, e))?;
        self.sync_dirs(&path)
    }
}
