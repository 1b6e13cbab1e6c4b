//! The cache on disk: the folder layout, complete files published by rename, and the
//! housekeeping (`CACHEDIR.TAG`, the location hints, removing caches unused for 30 days).
//!
//! Owns paths and file I/O only; what is cached, when it is trusted and when it is dropped is
//! [`super::CacheBackend`]'s. Layout under the cache root (docs/DESIGN.md, "Cache"):
//!
//! ```text
//! CACHEDIR.TAG                      marks the folder for backup tools (bford.info/cachedir)
//! locations/<blake3 of location>    the id of the repository last opened there (a hint)
//! <repository id>/keys/<id>         key files
//! <repository id>/index/<id>        index files
//! <repository id>/snapshots/<id>    snapshots
//! <repository id>/data/<id>         whole tree packs
//! <repository id>/tmp/              files being written; renamed into place when complete
//! ```
//!
//! Several cista processes may share a cache: a file appears under its final name only
//! complete (written in `tmp/`, then renamed), and a name always holds the same bytes (the
//! object's), so a rename over a copy another process just published changes nothing. Folders
//! are created 0700 and files 0600 (the cache holds encrypted objects only, but key files
//! allow offline guessing of the passphrase).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::backend::FileType;
use crate::backend::local::{FILE_MODE, create_dir_all};
use crate::id::Id;

/// The tag's required first line, then what it is for (bford.info/cachedir).
const CACHEDIR_TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by cista.\n\
# For information about cache directory tags, see: https://bford.info/cachedir/\n";

/// How long a repository's cache may go unused before `--cleanup-cache` removes it
/// (restic's 30 days).
pub const MAX_UNUSED: Duration = Duration::from_secs(30 * 24 * 3600);

/// The cache root: one folder per repository id inside it.
#[derive(Debug, Clone)]
pub struct CacheRoot {
    path: PathBuf,
}

/// Whether `name` is a repository cache folder's (64 lowercase hex digits).
fn is_repo_dir_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl CacheRoot {
    /// Opens (creating 0700 when missing) the cache root and tags it `CACHEDIR.TAG`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        create_dir_all(path)?;
        let tag = path.join("CACHEDIR.TAG");
        if !tag.exists() {
            write_complete(&path.join("tmp"), &tag, &[CACHEDIR_TAG])?;
        }
        crate::backend::local::remove_stale_temp_files(&path.join("tmp"));
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// The root folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cache of repository `repo_id_hex`, created if missing. Its folder's modification
    /// time is set to now (what `--cleanup-cache` ages by), and temporary files a dead
    /// process left more than a day ago are removed.
    pub fn repo(&self, repo_id_hex: &str) -> std::io::Result<RepoCache> {
        if !is_repo_dir_name(repo_id_hex) {
            return Err(std::io::Error::other("not a repository id"));
        }
        let dir = self.path.join(repo_id_hex);
        for sub in ["keys", "index", "snapshots", "data", "tmp"] {
            create_dir_all(&dir.join(sub))?;
        }
        // Best effort: a cache that cannot be aged is still a cache.
        let _ = std::fs::File::open(&dir).and_then(|f| f.set_modified(SystemTime::now()));
        crate::backend::local::remove_stale_temp_files(&dir.join("tmp"));
        Ok(RepoCache { dir })
    }

    fn hint_path(&self, location: &str) -> PathBuf {
        self.path
            .join("locations")
            .join(blake3::hash(location.as_bytes()).to_hex().as_str())
    }

    /// The repository id last opened at `location`, if its cache folder still exists. Only
    /// a hint: what the cache serves is checked against its name whatever folder it is in.
    pub fn hinted_repo(&self, location: &str) -> Option<String> {
        let mut s = String::new();
        std::fs::File::open(self.hint_path(location))
            .ok()?
            .take(64)
            .read_to_string(&mut s)
            .ok()?;
        (is_repo_dir_name(&s) && self.path.join(&s).is_dir()).then_some(s)
    }

    /// Records that `location` holds repository `repo_id_hex` (best effort).
    pub fn remember_location(&self, location: &str, repo_id_hex: &str) -> std::io::Result<()> {
        let path = self.hint_path(location);
        if let Some(dir) = path.parent() {
            create_dir_all(dir)?;
        }
        write_complete(&self.path.join("tmp"), &path, &[repo_id_hex.as_bytes()])
    }

    /// Repository caches other than `keep` not used for [`MAX_UNUSED`] (by folder mtime).
    pub fn old_repos(&self, keep: Option<&str>) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let now = SystemTime::now();
        let mut old: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                is_repo_dir_name(&name) && Some(&*name) != keep
            })
            .filter(|e| {
                e.metadata().ok().filter(|m| m.is_dir()).is_some_and(|m| {
                    m.modified()
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .is_some_and(|age| age > MAX_UNUSED)
                })
            })
            .map(|e| e.path())
            .collect();
        old.sort();
        old
    }

    /// Removes the caches [`CacheRoot::old_repos`] names, and location hints that point at
    /// no cache; returns the folders removed.
    pub fn remove_old_repos(&self, keep: Option<&str>) -> std::io::Result<Vec<PathBuf>> {
        let old = self.old_repos(keep);
        for dir in &old {
            std::fs::remove_dir_all(dir)?;
        }
        if let Ok(rd) = std::fs::read_dir(self.path.join("locations")) {
            for e in rd.flatten() {
                let mut s = String::new();
                let points_nowhere = std::fs::File::open(e.path())
                    .and_then(|f| f.take(64).read_to_string(&mut s))
                    .is_ok()
                    && !self.path.join(&s).is_dir();
                if points_nowhere {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(old)
    }
}

/// One repository's cache folder.
#[derive(Debug)]
pub struct RepoCache {
    dir: PathBuf,
}

impl RepoCache {
    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn type_dir(&self, t: FileType) -> Option<PathBuf> {
        let sub = match t {
            FileType::Key => "keys",
            FileType::Index => "index",
            FileType::Snapshot => "snapshots",
            FileType::Pack => "data",
            FileType::Config | FileType::Lock => return None,
        };
        Some(self.dir.join(sub))
    }

    /// Where the copy of an object lives (`None` for types never cached).
    pub fn path(&self, t: FileType, id: &Id) -> Option<PathBuf> {
        Some(self.type_dir(t)?.join(id.to_hex()))
    }

    /// The whole copy, if there is one of exactly `len` bytes (`None` on any failure: a
    /// cache that cannot be read is a cache that misses).
    pub fn get(&self, t: FileType, id: &Id, len: u64) -> Option<Vec<u8>> {
        let f = std::fs::File::open(self.path(t, id)?).ok()?;
        if f.metadata().ok()?.len() != len {
            return None;
        }
        let mut buf = Vec::with_capacity(usize::try_from(len).ok()?);
        f.take(len).read_to_end(&mut buf).ok()?;
        (buf.len() as u64 == len).then_some(buf)
    }

    /// Size of the copy, if there is one.
    pub fn len(&self, t: FileType, id: &Id) -> Option<u64> {
        std::fs::metadata(self.path(t, id)?).ok().map(|m| m.len())
    }

    /// The BLAKE3 of the copy, streamed (a tree pack is never held whole to check it).
    pub fn hash(&self, t: FileType, id: &Id) -> std::io::Result<Id> {
        let path = self
            .path(t, id)
            .ok_or_else(|| std::io::Error::other("not cached"))?;
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(path)?)?;
        Ok(Id(*h.finalize().as_bytes()))
    }

    /// `len` bytes at `offset` of the copy; fewer is an error.
    pub fn read_range(
        &self,
        t: FileType,
        id: &Id,
        offset: u64,
        len: u64,
    ) -> std::io::Result<Vec<u8>> {
        let path = self
            .path(t, id)
            .ok_or_else(|| std::io::Error::other("not cached"))?;
        let f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
        f.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Writes a copy made of `parts` under a temporary name, for [`Staged::publish`].
    pub fn stage(&self, t: FileType, id: &Id, parts: &[&[u8]]) -> std::io::Result<Staged> {
        let path = self
            .path(t, id)
            .ok_or_else(|| std::io::Error::other("not cached"))?;
        stage(&self.dir.join("tmp"), &path, parts)
    }

    /// Stores a copy made of `parts`, published only complete.
    pub fn put(&self, t: FileType, id: &Id, parts: &[&[u8]]) -> std::io::Result<()> {
        let path = self
            .path(t, id)
            .ok_or_else(|| std::io::Error::other("not cached"))?;
        write_complete(&self.dir.join("tmp"), &path, parts)
    }

    /// Removes the copy (missing is fine).
    pub fn remove(&self, t: FileType, id: &Id) {
        if let Some(p) = self.path(t, id) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The ids of every copy of type `t`; names that are not ids are left alone.
    pub fn ids(&self, t: FileType) -> Vec<Id> {
        let Some(dir) = self.type_dir(t) else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| Id::from_hex(&e.file_name().to_string_lossy()).ok())
            .collect()
    }
}

/// A complete copy written under a temporary name, given its final name by
/// [`Staged::publish`]; removed if dropped unpublished.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    published: bool,
}

impl Staged {
    /// Renames the copy to its final name (over an older copy: the same bytes).
    pub fn publish(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, &self.path)?;
        self.published = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `parts` to a new 0600 file in `tmp_dir`, to be renamed to `path`. Not fsynced: a
/// cache lost in a crash is only a cache, and every copy is checked against its name before
/// use. The temporary file never stays behind an error.
fn stage(tmp_dir: &Path, path: &Path, parts: &[&[u8]]) -> std::io::Result<Staged> {
    create_dir_all(tmp_dir)?;
    let mut r = [0u8; 8];
    crate::crypto::random_bytes(&mut r).map_err(std::io::Error::other)?;
    let staged = Staged {
        tmp: tmp_dir.join(format!("{}.tmp", hex::encode(r))),
        path: path.to_owned(),
        published: false,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&staged.tmp)?;
    for p in parts {
        f.write_all(p)?;
    }
    Ok(staged)
}

/// [`stage`], then publish: readers see the whole file or none.
fn write_complete(tmp_dir: &Path, path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    stage(tmp_dir, path, parts)?.publish()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn layout_modes_and_tag() {
        let tmp = tempfile::tempdir().unwrap();
        let root = CacheRoot::open(&tmp.path().join("c")).unwrap();
        let tag = std::fs::read(root.path().join("CACHEDIR.TAG")).unwrap();
        assert!(tag.starts_with(b"Signature: 8a477f597d28d172789f06886806bc55"));
        let id_hex = "ab".repeat(32);
        let repo = root.repo(&id_hex).unwrap();
        assert_eq!(mode(root.path()), 0o700);
        assert_eq!(mode(repo.dir()), 0o700);
        let id = Id::of_stored(b"x");
        repo.put(FileType::Snapshot, &id, &[b"x"]).unwrap();
        let p = repo.path(FileType::Snapshot, &id).unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(repo.get(FileType::Snapshot, &id, 1).unwrap(), b"x");
        // A wrong length is a miss, not a short read.
        assert!(repo.get(FileType::Snapshot, &id, 2).is_none());
        assert_eq!(repo.ids(FileType::Snapshot), vec![id]);
        assert_eq!(repo.hash(FileType::Snapshot, &id).unwrap(), id);
        // Nothing left in tmp/ after publishing.
        assert_eq!(
            std::fs::read_dir(repo.dir().join("tmp")).unwrap().count(),
            0
        );
        // Never cached: config and locks.
        assert!(repo.path(FileType::Lock, &id).is_none());
        assert!(repo.put(FileType::Config, &id, &[b"x"]).is_err());
        repo.remove(FileType::Snapshot, &id);
        assert!(repo.ids(FileType::Snapshot).is_empty());
        // Not a repository id: refused, nothing created.
        assert!(root.repo("../etc").is_err());
    }

    #[test]
    fn ranges_are_exact() {
        let tmp = tempfile::tempdir().unwrap();
        let root = CacheRoot::open(tmp.path()).unwrap();
        let repo = root.repo(&"01".repeat(32)).unwrap();
        let id = Id::of_stored(b"0123456789");
        repo.put(FileType::Pack, &id, &[b"01234", b"56789"])
            .unwrap();
        assert_eq!(repo.read_range(FileType::Pack, &id, 3, 4).unwrap(), b"3456");
        assert!(repo.read_range(FileType::Pack, &id, 8, 3).is_err());
        assert!(repo.read_range(FileType::Pack, &id, u64::MAX, 2).is_err());
    }

    #[test]
    fn location_hints_and_cleanup() {
        let tmp = tempfile::tempdir().unwrap();
        let root = CacheRoot::open(tmp.path()).unwrap();
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        root.repo(&a).unwrap();
        root.repo(&b).unwrap();
        assert_eq!(root.hinted_repo("s3:bucket/x"), None);
        root.remember_location("s3:bucket/x", &a).unwrap();
        root.remember_location("s3:bucket/y", &b).unwrap();
        assert_eq!(root.hinted_repo("s3:bucket/x"), Some(a.clone()));
        // Nothing is old yet.
        assert!(root.old_repos(None).is_empty());
        // Age `b` by 31 days: it is old unless it is the one in use.
        let old = SystemTime::now() - MAX_UNUSED - Duration::from_secs(24 * 3600);
        std::fs::File::open(root.path().join(&b))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(root.old_repos(Some(&b)).is_empty());
        assert_eq!(root.old_repos(Some(&a)), vec![root.path().join(&b)]);
        let removed = root.remove_old_repos(Some(&a)).unwrap();
        assert_eq!(removed, vec![root.path().join(&b)]);
        assert!(!root.path().join(&b).exists());
        assert!(root.path().join(&a).is_dir());
        // The hint to the removed cache went with it; the other stays.
        assert_eq!(root.hinted_repo("s3:bucket/y"), None);
        assert_eq!(
            std::fs::read_dir(root.path().join("locations"))
                .unwrap()
                .count(),
            1
        );
        // Folders that are not repository caches are never removed.
        std::fs::create_dir(root.path().join("mine")).unwrap();
        assert!(root.remove_old_repos(None).unwrap().is_empty());
        assert!(root.path().join("mine").is_dir());
    }
}
