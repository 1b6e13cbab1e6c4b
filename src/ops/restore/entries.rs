//! Restoring one entry of the plan into the target: a directory, a file's content, a
//! hardlink, a pipe or a symlink, and its metadata, taking what is already at its path into
//! account (`inplace.rs` decides, this file acts).
//!
//! Every function here returns its failure as a one-line reason instead of stopping the
//! restore: the caller lists it and goes on with the other entries. A file that fails is
//! never left with wrong bytes: a new file is removed, and a file that replaces an existing
//! one is written to a temporary name next to it and renamed over it only when complete, so
//! the old content stays if the new cannot be had.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::inplace::{self, DirAction, Existing, FileAction, OtherAction, RoomError};
use super::metadata::{self, MetadataWarning};
use super::{Item, RestoreOptions, RestoreStats, os, writer};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::BlobId;
use crate::ops::Progress;
use crate::repo::{Index, Repository};

/// What to do with one regular file, decided before contents are written.
#[derive(Debug)]
pub enum FilePlan {
    /// Nothing to write; what became of it.
    Done(Outcome),
    /// Write the content into the new file `path`, then rename it over `replace` if set.
    Write {
        path: PathBuf,
        replace: Option<PathBuf>,
    },
}

/// What became of one regular file's content.
#[derive(Debug)]
pub enum Outcome {
    /// Written; its content bytes.
    Written(u64),
    /// Already there with the snapshot's content.
    Unchanged(u64),
    /// Left as it was by the overwrite mode.
    Skipped(u64),
    /// Not restored, and why.
    Failed(String),
}

/// Everything an entry's restore needs.
pub struct Ctx<'a> {
    repo: &'a Repository,
    index: &'a Index,
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    /// The target was new or empty: nothing can be in the way, so nothing is looked at.
    fresh: bool,
    /// Files of 256 KiB or more bypass the page cache (`writer.rs`).
    pub direct: bool,
    is_root: bool,
    /// Numbers the temporary files of replaced files.
    temp_seq: AtomicU64,
    /// Under `--dry-run`: directories (relative to the target) that would be made or
    /// replaced, below which nothing exists yet.
    would_make: Mutex<HashSet<PathBuf>>,
}

/// The one-line reason for a library error about an entry whose path is reported separately.
fn reason(e: &Error) -> String {
    match e {
        Error::RestoreVerify { chunk, reason, .. } if chunk == "-" => reason.clone(),
        Error::RestoreVerify { chunk, reason, .. } => {
            format!("chunk {chunk} failed verification ({reason})")
        }
        Error::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

fn room_reason(e: RoomError) -> String {
    match e {
        RoomError::NonEmptyDir => {
            "a non-empty directory is in the way; restore with --delete to replace it".into()
        }
        RoomError::Io(e) => format!("cannot remove what is there: {e}"),
    }
}

impl<'a> Ctx<'a> {
    pub fn new(
        repo: &'a Repository,
        index: &'a Index,
        opts: &'a RestoreOptions,
        progress: &'a dyn Progress,
        fresh: bool,
    ) -> Self {
        Self {
            repo,
            index,
            opts,
            progress,
            fresh,
            direct: opts.direct_io && writer::suits_direct(&opts.target),
            is_root: nix::unistd::geteuid().is_root(),
            temp_seq: AtomicU64::new(0),
            would_make: Mutex::new(HashSet::new()),
        }
    }

    pub fn target(&self) -> &Path {
        &self.opts.target
    }

    pub fn progress(&self) -> &dyn Progress {
        self.progress
    }

    pub fn repo(&self) -> &Repository {
        self.repo
    }

    pub fn index(&self) -> &Index {
        self.index
    }

    /// Pack reads in flight while contents are written.
    pub fn reads_in_flight(&self) -> usize {
        match self.opts.reads_in_flight {
            0 => {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
                (2 * cores).max(4)
            }
            n => n,
        }
    }

    /// Whether the repository is on a remote store (see [`super::RestoreOptions::remote`]).
    pub fn remote(&self) -> bool {
        self.opts.remote
    }

    /// Whether `--delete` applies (a fresh target has nothing to delete).
    pub fn deletes(&self) -> bool {
        self.opts.delete && !self.fresh
    }

    fn dry(&self) -> bool {
        self.opts.dry_run
    }

    /// What is at `rel` now: nothing in a fresh target, nothing below a directory a dry run
    /// would make (a symlink that would be replaced is not looked through either).
    fn existing(&self, rel: &Path) -> std::result::Result<Existing, String> {
        if self.fresh {
            return Ok(Existing::Missing);
        }
        if self.dry() {
            let made = self
                .would_make
                .lock()
                .map_err(|_| "a restore thread panicked")?;
            if super::below(&made, rel) {
                return Ok(Existing::Missing);
            }
        }
        inplace::probe(&self.target().join(rel)).map_err(|e| e.to_string())
    }

    /// Clears `path` for a new entry; under `--dry-run` only checks that it could.
    fn make_room(&self, path: &Path, e: Existing) -> std::result::Result<(), String> {
        if self.dry() {
            return inplace::check_room(path, e, self.opts.delete).map_err(room_reason);
        }
        inplace::make_room(path, e, self.opts.delete).map_err(room_reason)
    }

    /// Makes the directory `rel` (mode 0700 until its metadata is applied) or checks that a
    /// real one is there; a symlink or file in its place is removed first, never followed.
    /// `None` when the overwrite mode leaves a non-directory there (nothing below is
    /// restored); else whether the directory gets the snapshot's metadata: not an existing
    /// one under `never` or `if-newer` with an older snapshot, which leave existing entries
    /// as they are.
    pub fn prepare_dir(
        &self,
        rel: &Path,
        node: &Node,
    ) -> std::result::Result<Option<bool>, String> {
        use std::os::unix::fs::DirBuilderExt;
        let p = self.target().join(rel);
        let e = self.existing(rel)?;
        let mkdir = || {
            if self.dry() {
                let mut made = self
                    .would_make
                    .lock()
                    .map_err(|_| "a restore thread panicked")?;
                made.insert(rel.to_path_buf());
                return Ok(());
            }
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .map_err(|e| e.to_string())
        };
        match inplace::dir_action(self.opts.overwrite, e, node.mtime_ns) {
            DirAction::Create => mkdir()?,
            DirAction::Merge => {
                let keeps = inplace::other_action(self.opts.overwrite, e, node.mtime_ns)
                    == OtherAction::Skip;
                return Ok(Some(!keeps));
            }
            DirAction::Replace => {
                self.make_room(&p, e)?;
                mkdir()?;
            }
            DirAction::Blocked => return Ok(None),
        }
        Ok(Some(true))
    }

    /// Decides what becomes of one regular file at `it.rel`: done already (unchanged,
    /// skipped, failed, or a dry run), or content to write; the writing is batched over all
    /// files (`content.rs`) and [`Ctx::settle_file`] completes it.
    pub fn plan_file(&self, it: &Item, content: &[BlobId], size: u64) -> FilePlan {
        let path = self.target().join(&it.rel);
        let e = match self.existing(&it.rel) {
            Ok(e) => e,
            Err(r) => return FilePlan::Done(Outcome::Failed(r)),
        };
        let write = |path: PathBuf, replace: Option<PathBuf>| {
            if self.dry() {
                self.progress.file_done(size);
                FilePlan::Done(Outcome::Written(size))
            } else {
                FilePlan::Write { path, replace }
            }
        };
        match inplace::file_action(self.opts.overwrite, e, size, it.node.mtime_ns) {
            FileAction::Create => write(path, None),
            FileAction::Skip => {
                self.progress.file_done(size);
                FilePlan::Done(Outcome::Skipped(size))
            }
            FileAction::Keep => {
                self.progress.file_done(size);
                FilePlan::Done(Outcome::Unchanged(size))
            }
            FileAction::Verify => {
                // A file that cannot be read is rewritten, like one that differs.
                if inplace::content_matches(self.repo, self.index, &path, content, size)
                    .unwrap_or(false)
                {
                    self.progress.file_done(size);
                    FilePlan::Done(Outcome::Unchanged(size))
                } else {
                    // Written to a temporary name in the same directory, then renamed over
                    // the existing file: on failure the existing file is untouched.
                    let n = self.temp_seq.fetch_add(1, Ordering::Relaxed);
                    // Short, so it fits NAME_MAX whatever the file's own name; a restore
                    // killed midway can leave one behind (`--delete` removes it on the next
                    // in-place restore).
                    let temp =
                        path.with_file_name(format!(".cista-restore-{}-{n}", std::process::id()));
                    write(temp, Some(path))
                }
            }
            FileAction::Replace => match self.make_room(&path, e) {
                Ok(()) => write(path, None),
                Err(r) => FilePlan::Done(Outcome::Failed(r)),
            },
        }
    }

    /// Completes a file [`Ctx::plan_file`] gave to write, from what writing it gave: renames
    /// a replacement over the file it replaces. A file that failed was already removed by the
    /// writer (only if it created it).
    pub fn settle_file(
        &self,
        path: &Path,
        replace: Option<&Path>,
        written: Result<u64>,
    ) -> Outcome {
        let n = match written {
            Ok(n) => n,
            Err(e) => return Outcome::Failed(reason(&e)),
        };
        if let Some(old) = replace
            && let Err(e) = std::fs::rename(path, old)
        {
            let _ = std::fs::remove_file(path);
            return Outcome::Failed(e.to_string());
        }
        Outcome::Written(n)
    }

    /// Restores a pipe, a symlink, or (with `link_to`) a hardlink to an already restored
    /// file. False when the overwrite mode leaves what is there.
    pub fn restore_other(
        &self,
        rel: &Path,
        node: &Node,
        link_to: Option<&Path>,
    ) -> std::result::Result<bool, String> {
        let p = self.target().join(rel);
        let e = self.existing(rel)?;
        match inplace::other_action(self.opts.overwrite, e, node.mtime_ns) {
            OtherAction::Skip => return Ok(false),
            OtherAction::Create => {}
            OtherAction::Replace => self.make_room(&p, e)?,
        }
        if self.dry() {
            return Ok(true);
        }
        let made = match (&node.kind, link_to) {
            (_, Some(first)) => std::fs::hard_link(self.target().join(first), &p),
            (NodeKind::Fifo, None) => {
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(std::io::Error::from)
            }
            (NodeKind::Symlink { target }, None) => std::os::unix::fs::symlink(os(target), &p),
            _ => Ok(()),
        };
        made.map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// `--delete` in the directory `rel` (snapshot path `abs`, tree `tree`): removes what the
    /// snapshot does not have there. Only in directories the restore covers entirely: with
    /// `--include`, a directory that merely leads to an included path keeps its other entries.
    pub fn delete_extraneous(
        &self,
        rel: &Path,
        abs: &Path,
        parts: &[BlobId],
        stats: &mut RestoreStats,
    ) -> Result<()> {
        let includes = &self.opts.includes;
        if !includes.is_empty() && !includes.matches_or_below(abs) {
            return Ok(());
        }
        if self.dry() {
            let made = self.would_make.lock().map_err(|_| Error::Io {
                path: rel.to_path_buf(),
                source: std::io::Error::other("a restore thread panicked"),
            })?;
            if made.contains(rel) || super::below(&made, rel) {
                return Ok(()); // it would be new: nothing in it to delete
            }
        }
        // The names of every part of the directory (one part unless it was split).
        let mut keep: HashSet<Vec<u8>> = HashSet::new();
        for part in parts {
            keep.extend(
                self.repo
                    .read_tree(self.index, part)?
                    .nodes
                    .into_iter()
                    .map(|n| n.name),
            );
        }
        let dir = self.target().join(rel);
        match inplace::delete_extraneous(&dir, abs, &keep, &self.opts.excludes, self.dry()) {
            Ok(d) => {
                stats.deleted += d.removed;
                for (path, e) in d.failed {
                    stats.failed.push(super::Failure {
                        path,
                        reason: format!("not deleted: {e}"),
                    });
                }
            }
            Err(e) => stats.failed.push(super::Failure {
                path: dir,
                reason: format!("cannot list it to delete what the snapshot lacks: {e}"),
            }),
        }
        Ok(())
    }

    pub fn apply_metadata(&self, rel: &Path, node: &Node) -> Vec<MetadataWarning> {
        if self.dry() {
            return Vec::new();
        }
        metadata::apply(&self.target().join(rel), node, self.is_root)
    }
}
