//! The file operations of local repositories: private modes from the first byte, a publish
//! that never replaces, no temporary file left behind by a failed write, and storage errors
//! that name their cause (a full disk, a permission) in words a user can act on.
//!
//! OpenDAL's fs service could do none of the first three (its temporary files take their mode
//! from the umask, its conditional write checks and then renames over the target, and a failed
//! write leaves its temporary file), which is why local repositories do not use OpenDAL at all
//! ([`super::LocalBackend`]). No OpenDAL types here.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::{BackendError, ErrorKind, TempFile};

/// Mode of every file cista creates in a repository: owner read/write only.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every folder cista creates in a repository.
pub const DIR_MODE: u32 = 0o700;
/// Temporary files older than this are left by a dead writer and may be removed by anyone
/// (docs/FORMAT.md §2): a live write of the largest object (a 1 GiB pack) takes minutes.
pub const STALE_TEMP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Creates `dir` and its missing parents with [`DIR_MODE`]; existing folders keep theirs.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// A storage error for a local file operation, with the cause in words: a full disk or
/// quota, a permission or a read-only file system says what to do about it.
pub fn io_error(op: &'static str, path: &Path, location: &str, e: &std::io::Error) -> BackendError {
    use nix::errno::Errno;
    let errno = e.raw_os_error().map(Errno::from_raw);
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        _ => ErrorKind::Permanent,
    };
    let doing = if op == "write" { "writing to" } else { "in" };
    let message = match errno {
        Some(Errno::ENOSPC | Errno::EDQUOT) => {
            format!("no space left on device {doing} {location}: free space or move the repository")
        }
        Some(Errno::EACCES | Errno::EPERM) => format!(
            "permission denied {doing} {location}: make the repository writable by this user (owner, mode, or an immutable or read-only folder)"
        ),
        Some(Errno::EROFS) => format!(
            "{location} is on a read-only file system: remount it read-write or move the repository"
        ),
        _ => e.to_string(),
    };
    BackendError {
        kind,
        op,
        path: path.display().to_string(),
        message,
    }
}

/// A name for a temporary file in `tmp/`: the object's file name and random hex, so
/// concurrent writers of the same object never share one.
fn temp_name(final_path: &Path) -> std::io::Result<String> {
    let mut r = [0u8; 8];
    crate::crypto::random_bytes(&mut r).map_err(std::io::Error::other)?;
    let base = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(format!("{base}.{}.tmp", hex::encode(r)))
}

/// Writes `parts` to `final_path` atomically and durably, never replacing an existing file:
/// a new [`FILE_MODE`] file in `tmp_dir`, fsynced, then linked to its final name (which fails
/// if the name exists) and unlinked, then the destination folder fsynced. Whatever fails,
/// the temporary file is removed before returning.
pub fn write_new(
    tmp_dir: &Path,
    final_path: &Path,
    parts: &[&[u8]],
    location: &str,
) -> Result<(), BackendError> {
    // Named relative to the repository: the location is in the message already.
    let shown = tmp_dir
        .parent()
        .and_then(|root| final_path.strip_prefix(root).ok())
        .unwrap_or(final_path);
    let err = |e: &std::io::Error| io_error("write", shown, location, e);
    let tmp = tmp_dir.join(temp_name(final_path).map_err(|e| err(&e))?);
    let result = write_and_publish(&tmp, final_path, parts);
    // Gone already after a successful publish by rename; otherwise it must not stay behind.
    let _ = std::fs::remove_file(&tmp);
    result.map_err(|e| err(&e))?;
    sync_dir(final_path.parent().unwrap_or(final_path)).map_err(|e| err(&e))
}

/// Replaces `final_path` atomically and durably: a new [`FILE_MODE`] file in `tmp_dir`,
/// fsynced, renamed over the old file (readers see one or the other, never neither), then
/// the destination folder fsynced. Only the config is ever replaced (docs/FORMAT.md §18).
pub fn replace(
    tmp_dir: &Path,
    final_path: &Path,
    bytes: &[u8],
    location: &str,
) -> Result<(), BackendError> {
    let shown = tmp_dir
        .parent()
        .and_then(|root| final_path.strip_prefix(root).ok())
        .unwrap_or(final_path);
    let err = |e: &std::io::Error| io_error("replace", shown, location, e);
    let tmp = tmp_dir.join(temp_name(final_path).map_err(|e| err(&e))?);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, final_path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| err(&e))?;
    sync_dir(final_path.parent().unwrap_or(final_path)).map_err(|e| err(&e))
}

fn write_and_publish(tmp: &Path, final_path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(tmp)?;
    for p in parts {
        f.write_all(p)?;
    }
    f.sync_all()?;
    drop(f);
    publish(tmp, final_path)
}

/// Gives `tmp` its final name without replacing anything: a hard link fails atomically if
/// the name exists. On file systems without hard links (FAT, some network mounts) the
/// fallback checks, then renames: objects are named by their content, so a racing writer of
/// the same name writes the same bytes.
fn publish(tmp: &Path, final_path: &Path) -> std::io::Result<()> {
    use nix::errno::Errno;
    let linked = match std::fs::hard_link(tmp, final_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The destination folder is missing (removed by hand): make it, once.
            if let Some(parent) = final_path.parent() {
                create_dir_all(parent)?;
                if let Some(grand) = parent.parent() {
                    sync_dir(grand)?;
                }
            }
            std::fs::hard_link(tmp, final_path)
        }
        r => r,
    };
    match linked {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error().map(Errno::from_raw),
                Some(Errno::EPERM | Errno::EOPNOTSUPP | Errno::EMLINK | Errno::EXDEV)
            ) =>
        {
            if final_path.exists() {
                return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(tmp, final_path)
        }
        Err(e) => Err(e),
    }
}

/// Fsyncs a folder so a new or removed name in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Every file in `tmp_dir`, with its age (files whose age cannot be read are reported as new).
pub fn temp_files(tmp_dir: &Path) -> std::io::Result<Vec<TempFile>> {
    let rd = match std::fs::read_dir(tmp_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if !m.is_file() {
            continue;
        }
        let age = m
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        out.push(TempFile {
            name: e.file_name().to_string_lossy().into_owned(),
            len: m.len(),
            age,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes temporary files older than [`STALE_TEMP_AFTER`]. Best effort: a failure changes
/// nothing, and `check` still reports what is left.
pub fn remove_stale_temp_files(tmp_dir: &Path) {
    let Ok(files) = temp_files(tmp_dir) else {
        return;
    };
    for f in files.into_iter().filter(TempFile::is_stale) {
        let _ = std::fs::remove_file(tmp_dir.join(&f.name));
    }
}

/// A ranged read of a local file straight into `buf` (cleared first): restores read each
/// chunk this way, and any hop through an async runtime costs a thread wake-up and a copy per
/// chunk (a tenth of a restore's CPU time in `perf` when this went through OpenDAL's fs
/// service).
pub fn read_range_into(
    path: &Path,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    buf.clear();
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    f.seek(SeekFrom::Start(offset))?;
    // `len` comes from an index or a pack header: the allocation is bounded by the file, and
    // a lying length is caught by the check below.
    let cap = usize::try_from(len.min(size.saturating_sub(offset))).unwrap_or(0);
    buf.reserve(cap);
    f.take(len).read_to_end(buf)?;
    if buf.len() as u64 != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "short read: {} of {len} bytes at offset {offset}",
                buf.len()
            ),
        ));
    }
    Ok(())
}

/// The `tmp/` folder of a local repository root.
pub fn tmp_dir(root: &Path) -> PathBuf {
    root.join("tmp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_file_is_private_never_replaces_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        create_dir_all(&tmp).unwrap();
        let target = d.path().join("obj");
        write_new(&tmp, &target, &[b"ab", b"", b"cd"], "local:x").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"abcd");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        let e = write_new(&tmp, &target, &[b"other"], "local:x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"abcd");
        assert!(temp_files(&tmp).unwrap().is_empty());
    }

    #[test]
    fn replace_swaps_the_file_privately_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        create_dir_all(&tmp).unwrap();
        let target = d.path().join("config");
        write_new(&tmp, &target, &[b"old"], "local:x").unwrap();
        replace(&tmp, &target, b"new", "local:x").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        assert!(temp_files(&tmp).unwrap().is_empty());
        // A failure (no tmp folder) leaves the old file as it was.
        let e = replace(&d.path().join("missing"), &target, b"x", "local:x").unwrap_err();
        assert_eq!(e.op, "replace");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn missing_destination_folder_is_created_private() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        create_dir_all(&tmp).unwrap();
        let target = d.path().join("data").join("ab").join("obj");
        write_new(&tmp, &target, &[b"x"], "local:x").unwrap();
        let mode = std::fs::metadata(target.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, DIR_MODE);
    }

    #[test]
    fn errors_name_their_cause_and_the_repository() {
        let p = Path::new("data/ab/cd");
        let full = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        let e = io_error("write", p, "local:/srv/backup", &full);
        assert!(
            e.message
                .contains("no space left on device writing to local:/srv/backup: free space"),
            "{e}"
        );
        let denied = std::io::Error::from_raw_os_error(nix::errno::Errno::EACCES as i32);
        let e = io_error("write", p, "local:/srv/backup", &denied);
        assert!(
            e.message
                .contains("permission denied writing to local:/srv/backup")
        );
        assert_eq!(e.kind, ErrorKind::Permanent);
    }
}
