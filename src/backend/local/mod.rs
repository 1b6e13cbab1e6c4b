//! Local repositories: a [`Backend`] over a folder, with `std::fs` only.
//!
//! Owns everything a local folder needs and an object store does not: `tmp/` (every write is
//! staged there, fsynced, then published under its final name without replacing anything, see
//! [`files`]), fsyncs of the folders a name lands in, direct ranged reads (a restore's hot
//! path), the removal of stale temporary files, and `temp_files` for `check`. It does not
//! use OpenDAL: OpenDAL's fs service could do none of that (see [`files`]), and going through
//! its async runtime cost a thread hop per ranged read.
//!
//! Opening a folder touches nothing. The folder is a repository once it has a `config` or a
//! `tmp/` (an `init` in progress); until then every operation reports `NotFound`, so a
//! mistyped path is never created; only [`Backend::create`] makes the folders.

mod files;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use files::{
    DIR_MODE, FILE_MODE, STALE_TEMP_AFTER, create_dir_all, io_error, remove_stale_temp_files,
    replace, sync_dir, temp_files, tmp_dir, write_new,
};

use super::{Backend, BackendError, ErrorKind, FileType, TempFile};
use crate::id::Id;

/// A repository in a local folder.
#[derive(Debug)]
pub struct LocalBackend {
    /// Absolute, so a later change of the working directory changes nothing.
    root: PathBuf,
    /// `local:<root>`, for messages.
    location: String,
    /// Set once the folder is known to be a repository (it never stops being one).
    ready: AtomicBool,
}

impl LocalBackend {
    /// A repository in a local folder. Opening creates nothing: a missing folder gives
    /// `NotFound` from every operation until [`Backend::create`] makes it. Stale temporary
    /// files of dead writers are removed (docs/FORMAT.md §2).
    pub fn open(root: impl AsRef<Path>) -> Result<Self, BackendError> {
        let root = std::path::absolute(root.as_ref())
            .map_err(|e| io_error("open", root.as_ref(), "local", &e))?;
        let b = Self {
            location: format!("local:{}", root.display()),
            root,
            ready: AtomicBool::new(false),
        };
        if b.is_repository() {
            b.prepare("open")?;
            remove_stale_temp_files(&tmp_dir(&b.root));
        }
        Ok(b)
    }

    /// The repository's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the folder holds a repository (or one being created).
    fn is_repository(&self) -> bool {
        self.root.join("config").exists() || self.root.join("tmp").is_dir()
    }

    /// Makes sure `tmp/` exists, once the folder is a repository (an older cista, or a hand
    /// copy, may have left it out).
    fn prepare(&self, op: &'static str) -> Result<(), BackendError> {
        let tmp = tmp_dir(&self.root);
        create_dir_all(&tmp).map_err(|e| io_error(op, &tmp, &self.location, &e))?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// `Ok` once the folder is a repository; `NotFound` ("no repository here") before.
    fn ready(&self, op: &'static str) -> Result<(), BackendError> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        // Another process may have initialised the folder since it was opened.
        if self.is_repository() {
            return self.prepare(op);
        }
        Err(BackendError {
            kind: ErrorKind::NotFound,
            op,
            path: self.location.clone(),
            message: "no repository here".into(),
        })
    }

    /// An I/O error on a repository-relative path.
    fn err(&self, op: &'static str, rel: &str, e: &std::io::Error) -> BackendError {
        io_error(op, Path::new(rel), &self.location, e)
    }

    /// Fsyncs every folder from `rel`'s parent up to the root, deepest first (after `create`).
    fn sync_tree(&self, rel: &str) -> Result<(), BackendError> {
        let mut dir = self.root.join(rel);
        while dir.pop() && dir.starts_with(&self.root) {
            sync_dir(&dir).map_err(|e| io_error("sync", &dir, &self.location, &e))?;
            if dir == self.root {
                break;
            }
        }
        Ok(())
    }

    /// Objects directly in `dir` (repository-relative) whose path is the one `t` gives them:
    /// editor droppings, partial downloads and hex names in the wrong folder are skipped.
    fn list_dir(
        &self,
        t: FileType,
        dir: &str,
        out: &mut Vec<(Id, u64)>,
    ) -> Result<(), BackendError> {
        let rd = match std::fs::read_dir(self.root.join(dir)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.err("list", dir, &e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| self.err("list", dir, &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(id) = Id::from_hex(name) else { continue };
            if t.path(&id) != format!("{dir}/{name}") {
                continue;
            }
            match entry.metadata() {
                Ok(m) if m.is_file() => out.push((id, m.len())),
                Ok(_) => {}
                // Deleted since the listing: not an object any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err("list", &format!("{dir}/{name}"), &e)),
            }
        }
        Ok(())
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<(), BackendError> {
        if self.root.join("config").exists() {
            return Err(BackendError {
                kind: ErrorKind::AlreadyExists,
                op: "create",
                path: self.location.clone(),
                message: "a config already exists".into(),
            });
        }
        // Every folder up front, `tmp/` first, so every later write goes through `tmp/` and
        // lands in a folder whose own name is already durable.
        let mk =
            |p: PathBuf| create_dir_all(&p).map_err(|e| io_error("create", &p, &self.location, &e));
        mk(self.root.join("tmp"))?;
        for t in FileType::ALL.iter().filter(|t| **t != FileType::Config) {
            mk(self.root.join(t.dir()))?;
        }
        for b in 0..=255u8 {
            mk(self.root.join("data").join(format!("{b:02x}")))?;
        }
        // New names are durable once their parents are synced: `data/` (for `data/xx`) and
        // the root (for every top-level folder).
        self.sync_tree("data/00/x")?;
        self.prepare("create")
    }

    fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
        self.ready("list")?;
        if t == FileType::Config {
            // The one config, listed under the zero id its path ignores.
            return match std::fs::metadata(self.root.join("config")) {
                Ok(m) if m.is_file() => Ok(vec![(Id::default(), m.len())]),
                Ok(_) => Ok(Vec::new()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.err("list", "config", &e)),
            };
        }
        let mut out = Vec::new();
        if t == FileType::Pack {
            for b in 0..=255u8 {
                self.list_dir(t, &format!("data/{b:02x}"), &mut out)?;
            }
        } else {
            self.list_dir(t, t.dir(), &mut out)?;
        }
        Ok(out)
    }

    fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
        self.ready("read")?;
        let rel = t.path(id);
        std::fs::read(self.root.join(&rel)).map_err(|e| self.err("read", &rel, &e))
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
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        buf.clear();
        self.ready("read")?;
        let rel = t.path(id);
        if offset.checked_add(len).is_none() {
            return Err(BackendError {
                kind: ErrorKind::Permanent,
                op: "read",
                path: rel,
                message: "range overflows".into(),
            });
        }
        if len == 0 {
            let size = self.size(t, id)?;
            if offset > size {
                return Err(BackendError {
                    kind: ErrorKind::Permanent,
                    op: "read",
                    path: rel,
                    message: format!("offset {offset} is past the end ({size} bytes)"),
                });
            }
            return Ok(());
        }
        files::read_range_into(&self.root.join(&rel), offset, len, buf)
            .map_err(|e| self.err("read", &rel, &e))
    }

    fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
        self.ready("stat")?;
        let rel = t.path(id);
        match std::fs::metadata(self.root.join(&rel)) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(_) => Err(self.err(
                "stat",
                &rel,
                &std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
            Err(e) => Err(self.err("stat", &rel, &e)),
        }
    }

    fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
        self.write_parts(t, id, vec![bytes])
    }

    fn write_parts(&self, t: FileType, id: &Id, parts: Vec<Vec<u8>>) -> Result<(), BackendError> {
        self.ready("write")?;
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        write_new(
            &tmp_dir(&self.root),
            &self.root.join(t.path(id)),
            &slices,
            &self.location,
        )
    }

    fn replace_config(&self, bytes: Vec<u8>) -> Result<(), BackendError> {
        self.ready("replace")?;
        let rel = FileType::Config.path(&Id::default());
        let path = self.root.join(&rel);
        if !path.is_file() {
            return Err(BackendError {
                kind: ErrorKind::NotFound,
                op: "replace",
                path: rel,
                message: "no config to replace".into(),
            });
        }
        replace(&tmp_dir(&self.root), &path, &bytes, &self.location)
    }

    fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
        self.ready("delete")?;
        let rel = t.path(id);
        let path = self.root.join(&rel);
        std::fs::remove_file(&path).map_err(|e| self.err("delete", &rel, &e))?;
        let dir = path.parent().unwrap_or(&self.root);
        sync_dir(dir).map_err(|e| io_error("sync", dir, &self.location, &e))
    }

    fn temp_files(&self) -> Result<Vec<TempFile>, BackendError> {
        let tmp = tmp_dir(&self.root);
        temp_files(&tmp).map_err(|e| io_error("list", &tmp, &self.location, &e))
    }
}
