//! Restoring into a target that already holds files: what is there ([`probe`]), what to do
//! with it under `--overwrite` ([`file_action`], [`dir_action`], [`other_action`]), whether an
//! existing file already has the snapshot's content ([`content_matches`]), clearing the way for
//! a new entry ([`make_room`]) and `--delete` ([`delete_extraneous`]).
//!
//! The decisions are pure functions of the mode, what `lstat` saw and the node, so they are
//! unit-tested without a file system. The rule that keeps writes inside the target: nothing
//! here follows a symlink. [`probe`] uses `lstat`; a symlink where a directory belongs is
//! removed and a real directory made in its place (never written through); existing files are
//! opened with `O_NOFOLLOW`; removal unlinks the link itself; directories are handled parents
//! first, so every later path below them goes through directories the restore has checked.
//! Not covered: another process swapping a checked directory for a symlink while the restore
//! runs (that needs `openat` for every call; the target is assumed not to be under attack by
//! a writer while it is restored).

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::format::pack::MAX_BLOB_LEN;
use crate::id::BlobId;
use crate::ops::globs::Globs;
use crate::repo::{Index, Repository};

/// How an entry that already exists in the target is treated (restic's `--overwrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Replace every existing entry with the snapshot's. A file's existing content is read and
    /// compared chunk by chunk first, and left untouched when it already matches.
    #[default]
    Always,
    /// Like `Always`, but a file whose size and modification time match the snapshot's is
    /// taken as up to date without reading it.
    IfChanged,
    /// Replace an existing entry only when the snapshot's modification time is newer.
    IfNewer,
    /// Never replace an existing entry; only missing ones are restored.
    Never,
}

/// What `lstat` saw at a path of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing there.
    Missing,
    /// Something there (a symlink is itself, never what it points to).
    Present {
        kind: Kind,
        size: u64,
        mtime_ns: i64,
    },
}

/// The type of an existing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Pipes, sockets, devices.
    Other,
}

/// `lstat` of `path`.
pub fn probe(path: &Path) -> io::Result<Existing> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Missing),
        Err(e) => return Err(e),
    };
    let t = m.file_type();
    let kind = if t.is_file() {
        Kind::File
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    };
    let mtime_ns = m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec();
    Ok(Existing::Present {
        kind,
        size: m.size(),
        mtime_ns,
    })
}

/// What to do for a regular file of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// Nothing is there: create it.
    Create,
    /// Leave what is there alone, metadata included (`never`, or `if-newer` with an older
    /// snapshot).
    Skip,
    /// Take the existing file as up to date (size and mtime match under `if-changed`); its
    /// metadata is applied.
    Keep,
    /// Compare the existing file's content with the snapshot's chunks; rewrite it (through a
    /// temporary file renamed over it) only if they differ.
    Verify,
    /// Something else is there (a directory, a symlink, a pipe): remove it, then create.
    Replace,
}

/// Whether the snapshot's entry is strictly newer than what is there.
fn newer(snapshot_mtime_ns: i64, existing_mtime_ns: i64) -> bool {
    snapshot_mtime_ns > existing_mtime_ns
}

/// The action for a snapshot file of `size` bytes modified at `mtime_ns`.
pub fn file_action(mode: Overwrite, existing: Existing, size: u64, mtime_ns: i64) -> FileAction {
    let Existing::Present {
        kind,
        size: have_size,
        mtime_ns: have_mtime,
    } = existing
    else {
        return FileAction::Create;
    };
    let replace = if kind == Kind::File {
        FileAction::Verify
    } else {
        FileAction::Replace
    };
    match mode {
        Overwrite::Never => FileAction::Skip,
        Overwrite::IfNewer if !newer(mtime_ns, have_mtime) => FileAction::Skip,
        Overwrite::IfChanged
            if kind == Kind::File && have_size == size && have_mtime == mtime_ns =>
        {
            FileAction::Keep
        }
        _ => replace,
    }
}

/// What to do for a directory of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirAction {
    /// Nothing is there: make it.
    Create,
    /// A directory is there: restore into it.
    Merge,
    /// A non-directory (a file, or a symlink, wherever it points) is there: remove it and
    /// make a real directory.
    Replace,
    /// A non-directory is there and the mode forbids replacing it: nothing below is restored.
    Blocked,
}

/// The action for a directory of the snapshot modified at `mtime_ns`.
pub fn dir_action(mode: Overwrite, existing: Existing, mtime_ns: i64) -> DirAction {
    match existing {
        Existing::Missing => DirAction::Create,
        Existing::Present {
            kind: Kind::Dir, ..
        } => DirAction::Merge,
        Existing::Present { mtime_ns: have, .. } => match mode {
            Overwrite::Never => DirAction::Blocked,
            Overwrite::IfNewer if !newer(mtime_ns, have) => DirAction::Blocked,
            _ => DirAction::Replace,
        },
    }
}

/// What to do for a symlink or pipe of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherAction {
    Create,
    Skip,
    /// Remove what is there, then create.
    Replace,
}

/// The action for a symlink, pipe or extra hardlink of the snapshot modified at `mtime_ns`.
pub fn other_action(mode: Overwrite, existing: Existing, mtime_ns: i64) -> OtherAction {
    match existing {
        Existing::Missing => OtherAction::Create,
        Existing::Present { mtime_ns: have, .. } => match mode {
            Overwrite::Never => OtherAction::Skip,
            Overwrite::IfNewer if !newer(mtime_ns, have) => OtherAction::Skip,
            _ => OtherAction::Replace,
        },
    }
}

/// Why an existing entry could not be removed to make room.
#[derive(Debug)]
pub enum RoomError {
    /// A non-empty directory is in the way and `--delete` was not given.
    NonEmptyDir,
    Io(io::Error),
}

/// Removes what is at `path` so a new entry can be created there. A directory is removed only
/// if empty, or with everything in it when `delete` (restic's `--delete` lets a file replace a
/// non-empty directory); anything else, symlinks included, is unlinked (never followed).
pub fn make_room(path: &Path, existing: Existing, delete: bool) -> Result<(), RoomError> {
    match existing {
        Existing::Missing => Ok(()),
        Existing::Present {
            kind: Kind::Dir, ..
        } if delete => std::fs::remove_dir_all(path).map_err(RoomError::Io),
        Existing::Present {
            kind: Kind::Dir, ..
        } => match std::fs::remove_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Err(RoomError::NonEmptyDir),
            r => r.map_err(RoomError::Io),
        },
        Existing::Present { .. } => std::fs::remove_file(path).map_err(RoomError::Io),
    }
}

/// Whether [`make_room`] would succeed, changing nothing (for `--dry-run`).
pub fn check_room(path: &Path, existing: Existing, delete: bool) -> Result<(), RoomError> {
    if let Existing::Present {
        kind: Kind::Dir, ..
    } = existing
        && !delete
        && std::fs::read_dir(path)
            .map_err(RoomError::Io)?
            .next()
            .is_some()
    {
        return Err(RoomError::NonEmptyDir);
    }
    Ok(())
}

/// Whether the regular file at `path` holds exactly `content` (`size` bytes): its size must
/// match, then each chunk's bytes are read and hashed with the repository's id key. Reads
/// stop at the first difference. Never follows a symlink (`O_NOFOLLOW`), and a chunk length
/// from the index above the blob cap counts as a difference rather than an allocation.
pub fn content_matches(
    repo: &Repository,
    index: &Index,
    path: &Path,
    content: &[BlobId],
    size: u64,
) -> io::Result<bool> {
    let mut f = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: should a pipe have taken the file's place since `probe`, opening it
        // must not wait for a writer.
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let m = f.metadata()?;
    if !m.file_type().is_file() || m.len() != size {
        return Ok(false);
    }
    let mut buf = Vec::new();
    let mut total = 0u64;
    for id in content {
        let Some(loc) = index.get(id) else {
            return Ok(false);
        };
        let len = loc.entry.raw_len;
        if len > MAX_BLOB_LEN {
            return Ok(false);
        }
        total += u64::from(len);
        if total > size {
            return Ok(false);
        }
        buf.resize(len as usize, 0);
        f.read_exact(&mut buf)?;
        if repo.blob_id(&buf) != *id {
            return Ok(false);
        }
    }
    Ok(total == size)
}

/// What [`delete_extraneous`] did in one directory.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Entries removed (a directory with everything in it counts once).
    pub removed: u64,
    /// Entries that could not be removed.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Removes the entries of the target directory `dir` whose names are not in `keep` (the
/// directory's entries in the snapshot) and that do not match `excludes` (checked against the
/// absolute path `abs_dir/NAME` the entry would have in the snapshot). A directory goes with
/// everything in it; symlinks are unlinked, never followed. With `dry_run`, only counts.
pub fn delete_extraneous(
    dir: &Path,
    abs_dir: &Path,
    keep: &HashSet<Vec<u8>>,
    excludes: &Globs,
    dry_run: bool,
) -> io::Result<Deleted> {
    let mut out = Deleted::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if keep.contains(name.as_bytes()) || excludes.matches(&abs_dir.join(&name)) {
            continue;
        }
        let path = entry.path();
        if dry_run {
            out.removed += 1;
            continue;
        }
        // `DirEntry::file_type` does not follow symlinks.
        let r = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => out.removed += 1,
            Err(e) => out.failed.push((path, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(kind: Kind, size: u64, mtime_ns: i64) -> Existing {
        Existing::Present {
            kind,
            size,
            mtime_ns,
        }
    }

    #[test]
    fn a_missing_entry_is_always_created() {
        for mode in [
            Overwrite::Always,
            Overwrite::IfChanged,
            Overwrite::IfNewer,
            Overwrite::Never,
        ] {
            assert_eq!(
                file_action(mode, Existing::Missing, 5, 1),
                FileAction::Create
            );
            assert_eq!(dir_action(mode, Existing::Missing, 1), DirAction::Create);
            assert_eq!(
                other_action(mode, Existing::Missing, 1),
                OtherAction::Create
            );
        }
    }

    #[test]
    fn file_actions_follow_restics_overwrite_modes() {
        let same = present(Kind::File, 10, 100);
        let older = present(Kind::File, 10, 50);
        let newer_there = present(Kind::File, 10, 200);
        let other_size = present(Kind::File, 11, 100);
        use FileAction::*;
        use Overwrite::*;
        // always: every existing file is compared (and rewritten only if it differs).
        assert_eq!(file_action(Always, same, 10, 100), Verify);
        assert_eq!(file_action(Always, newer_there, 10, 100), Verify);
        // if-changed: size and mtime equal means up to date.
        assert_eq!(file_action(IfChanged, same, 10, 100), Keep);
        assert_eq!(file_action(IfChanged, older, 10, 100), Verify);
        assert_eq!(file_action(IfChanged, other_size, 10, 100), Verify);
        // if-newer: only a strictly newer snapshot file replaces.
        assert_eq!(file_action(IfNewer, older, 10, 100), Verify);
        assert_eq!(file_action(IfNewer, same, 10, 100), Skip);
        assert_eq!(file_action(IfNewer, newer_there, 10, 100), Skip);
        // never
        assert_eq!(file_action(Never, older, 10, 100), Skip);
    }

    #[test]
    fn a_non_file_where_a_file_belongs_is_replaced_unless_the_mode_forbids() {
        let dir = present(Kind::Dir, 0, 50);
        let link = present(Kind::Symlink, 3, 50);
        assert_eq!(
            file_action(Overwrite::Always, dir, 1, 100),
            FileAction::Replace
        );
        assert_eq!(
            file_action(Overwrite::IfChanged, link, 3, 50),
            FileAction::Replace,
            "a symlink never counts as an up-to-date file"
        );
        assert_eq!(
            file_action(Overwrite::Never, link, 1, 100),
            FileAction::Skip
        );
    }

    #[test]
    fn a_symlink_where_a_directory_belongs_is_replaced_never_followed() {
        let link = present(Kind::Symlink, 12, 50);
        assert_eq!(dir_action(Overwrite::Always, link, 100), DirAction::Replace);
        assert_eq!(
            dir_action(Overwrite::IfNewer, link, 100),
            DirAction::Replace
        );
        assert_eq!(dir_action(Overwrite::IfNewer, link, 10), DirAction::Blocked);
        assert_eq!(dir_action(Overwrite::Never, link, 100), DirAction::Blocked);
        let dir = present(Kind::Dir, 0, 500);
        assert_eq!(dir_action(Overwrite::Never, dir, 100), DirAction::Merge);
    }

    #[test]
    fn make_room_unlinks_a_symlink_and_keeps_what_it_points_to() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"x").unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let e = probe(&link).unwrap();
        assert!(matches!(
            e,
            Existing::Present {
                kind: Kind::Symlink,
                ..
            }
        ));
        make_room(&link, e, true).unwrap();
        assert_eq!(probe(&link).unwrap(), Existing::Missing);
        assert!(outside.join("precious").exists());

        let full = t.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("f"), b"x").unwrap();
        let e = probe(&full).unwrap();
        assert!(matches!(
            make_room(&full, e, false),
            Err(RoomError::NonEmptyDir)
        ));
        make_room(&full, e, true).unwrap();
        assert!(!full.exists());
    }
}
