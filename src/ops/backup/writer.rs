//! The one way a snapshot is written: [`SnapshotWriter::open`] takes the shared lock, loads
//! the index and starts the packer; `add_*` store sources under names in the snapshot's tree
//! (file trees by their absolute paths, streams and command output as files); [`commit`]
//! makes every pack durable and indexed, then writes the snapshot, once.
//!
//! Why a seam: the file backup, a database dump, `copy` and multi-source backup sets all end
//! in "store blobs, build a tree, write one snapshot", and a new kind of source should add an
//! `add_*` call, not edit the backup pipeline. Every source of one writer shares one index
//! view, one claim set (a chunk two sources share is stored once) and one packer.
//!
//! Names: every entry is added under a path of plain names (`postgres/app.dump`); the
//! directories above it are made at commit, 0700 and owned by the current user, timed at the
//! writer's start. Two sources may not claim the same path, and a file may not stand where
//! another source needs a directory.
//!
//! [`commit`]: SnapshotWriter::commit

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use super::source::{self, VirtualRoot};
use super::{BackupOptions, BackupOutcome, Counters, Ctx, NotWritten, local_offset_s};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::lock::LockMode;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::id::{BlobId, SnapshotId};
use crate::ops::session::{LockOptions, Session};
use crate::ops::{CancelFlag, Progress, now_unix_ns};
use crate::repo::Repository;
use crate::repo::packer::Packer;

/// What [`SnapshotWriter::commit`] records besides the tree and the summary.
#[derive(Debug, Clone, Default)]
pub struct SnapshotMeta {
    /// The snapshot's `paths` (what was backed up, as the user named it).
    pub paths: Vec<String>,
    /// The parent snapshot, if the sources were compared against one.
    pub parent: Option<SnapshotId>,
    /// The parent's root tree: with [`BackupOptions::skip_if_unchanged`], an equal root
    /// writes no snapshot.
    pub parent_tree: Option<BlobId>,
    /// Host recorded (default: [`BackupOptions::host`], else this machine's).
    pub hostname: Option<String>,
}

/// A snapshot being written; see the module header.
pub struct SnapshotWriter<'a> {
    ctx: Ctx<'a>,
    session: Session,
    /// Entries added so far, by their path below the root (plain names).
    entries: Mutex<Vec<Entry>>,
}

/// A node and its path below the snapshot's root, as plain names (the last is its own).
type Entry = (Vec<Vec<u8>>, Node);

impl std::fmt::Debug for SnapshotWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter").finish_non_exhaustive()
    }
}

impl<'a> SnapshotWriter<'a> {
    /// Opens a writer on `repo`: the shared lock (none for a dry run, which writes nothing),
    /// the index as its files say, then orphan packs adopted once verified (FORMAT §18), and
    /// the packer.
    pub fn open(
        repo: &'a Repository,
        opts: &'a BackupOptions,
        progress: &'a dyn Progress,
        cancel: &'a CancelFlag,
    ) -> Result<Self> {
        let session = if opts.dry_run {
            Session::unlocked(repo)
        } else {
            let lock = LockOptions {
                no_lock: false,
                // The parent is found among the snapshots, and the index loaded, first.
                list_ahead: vec![FileType::Snapshot, FileType::Index],
                ..opts.lock.clone()
            };
            let host = crate::host::Host::this_process();
            Session::open(repo, LockMode::Shared, &lock, &host, progress, Some(cancel))?
        };
        let start_ns = now_unix_ns();
        let mut index = repo.load_index_files()?;
        for (id, why) in index.damaged() {
            progress.warn(&format!("index file {id} skipped: {why}"));
        }
        if !opts.dry_run {
            // A dry run leaves orphan packs alone (adopting writes an index), so it may count
            // their blobs as new.
            for (id, e) in repo.adopt_orphan_packs(&mut index)?.rejected {
                progress.warn(&format!(
                    "pack {id} not adopted (its blobs will be stored again): {e}"
                ));
            }
        }
        let ctx = Ctx {
            repo,
            index,
            claimed: Mutex::new(HashSet::new()),
            packer: Packer::new(repo)?,
            counters: Counters::default(),
            progress,
            cancel,
            opts,
            start_ns,
        };
        Ok(Self {
            ctx,
            session,
            entries: Mutex::new(Vec::new()),
        })
    }

    /// The stop request every `add_*` call watches (a caller's own waits should too).
    pub fn cancel_flag(&self) -> &CancelFlag {
        self.ctx.cancel
    }

    /// When the writer was opened (ns since the epoch).
    pub fn start_ns(&self) -> i64 {
        self.ctx.start_ns
    }

    /// Archives the file trees of `root` by their absolute paths, comparing against the
    /// parent's root tree `parent` (files whose metadata matches are reused unread). A source
    /// that cannot be read is an error of the snapshot (it is marked incomplete), not of the
    /// call; a missing source path is reported and skipped.
    pub fn add_paths(&self, root: &VirtualRoot, parent: Option<&BlobId>) -> Result<()> {
        for p in root.missing() {
            self.ctx.error(p, "does not exist, skipping");
        }
        let nodes = source::archive_roots(&self.ctx, root, parent)?;
        for n in nodes {
            self.put(vec![n.name.clone()], n)?;
        }
        Ok(())
    }

    /// Stores everything `reader` yields as the file at `path` (plain names joined by `/`),
    /// mode 0644, owned by the current user, timed now. Returns its size.
    pub fn add_stream(&self, path: &str, reader: &mut (dyn Read + Send)) -> Result<u64> {
        let names = split_path(path)?;
        let stored = self.ctx.store_stream(reader, Path::new(path))?;
        self.add_file(names, stored)
    }

    /// Runs `argv` with no input and stores its standard output as the file at `path`. A
    /// command that cannot start or exits unsuccessfully is an error ([`Error::CommandFailed`]),
    /// and its output is not added: whatever it had written stays only as unreferenced blobs.
    pub fn add_command(&self, path: &str, argv: &[OsString]) -> Result<u64> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| Error::InvalidInput("no command given".into()))?;
        let mut cmd = Command::new(prog);
        cmd.args(args);
        self.add_command_with(path, cmd)
    }

    /// [`SnapshotWriter::add_command`] for a command the caller prepared (arguments,
    /// environment, working folder). Its standard input is closed and its output stored; if
    /// its standard error is set to [`Stdio::piped`], the last [`STDERR_TAIL`] bytes of it are
    /// kept and, should it fail, named in the error (a `pg_dump` says why in one line).
    pub fn add_command_with(&self, path: &str, cmd: Command) -> Result<u64> {
        self.add_command_watched(path, cmd, &mut |_| Ok(()))
    }

    /// [`SnapshotWriter::add_command_with`], handing every byte of the output to `watch` as
    /// it is stored (a second reader of the same stream: `pg_restore --list` reads a dump's
    /// table of contents from it). An error from `watch` ends the command (it is killed) and
    /// is the call's error: a caller stops one dump when another one failed.
    pub fn add_command_watched(
        &self,
        path: &str,
        mut cmd: Command,
        watch: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> Result<u64> {
        let names = split_path(path)?;
        let command = format!("{:?}", cmd.get_program());
        // In cista's own process group, so a password prompt on the terminal still works
        // and Ctrl-C reaches it too.
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::CommandFailed {
                command: command.clone(),
                status: format!("could not start: {e}"),
            })?;
        let said = child
            .stderr
            .take()
            .map(|e| std::thread::spawn(move || tail_of(e, STDERR_TAIL)));
        // A stop request ends the command even while it writes nothing (a dump waiting on a
        // table lock, or one that ignores SIGINT), which a read of its output would wait for
        // forever. The child is not reaped until this watcher has ended, so its pid cannot have
        // been reused.
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let done = std::sync::atomic::AtomicBool::new(false);
        let cancel = self.ctx.cancel;
        // Stored under a name nobody can see until the exit status says it is whole.
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if cancel.load(Ordering::Relaxed) {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            });
            let result = match child.stdout.take() {
                Some(out) => {
                    let mut watched = Watched { inner: out, watch };
                    self.ctx.store_stream(&mut watched, Path::new(path))
                }
                None => Err(Error::InvalidInput("command has no standard output".into())),
            };
            done.store(true, Ordering::Relaxed);
            result
        });
        if result.is_err() {
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_err(|e| Error::io(Path::new(cmd.get_program()), e))?;
        let said = said.and_then(|h| h.join().ok()).unwrap_or_default();
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        if !status.success() {
            return Err(Error::CommandFailed {
                command,
                status: if said.is_empty() {
                    status.to_string()
                } else {
                    format!("{status}: {said}")
                },
            });
        }
        self.add_file(names, result?)
    }

    /// Counts a stored stream as a new file and adds its node (mode 0644, the current user,
    /// timed now) at `names`. Returns its size.
    fn add_file(&self, names: Vec<Vec<u8>>, (content, size): (Vec<BlobId>, u64)) -> Result<u64> {
        let c = &self.ctx.counters;
        c.files_new.fetch_add(1, Ordering::Relaxed);
        c.total_bytes.fetch_add(size, Ordering::Relaxed);
        self.ctx.progress.file_done(size);
        let now = now_unix_ns();
        let node = Node {
            name: names.last().cloned().unwrap_or_default(),
            kind: NodeKind::File { size, content },
            mode: 0o100644,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            mtime_ns: now,
            atime_ns: now,
            ctime_ns: now,
            inode: 0,
            device: 0,
            links: 1,
            xattrs: Vec::new(),
        };
        self.put(names, node)?;
        Ok(size)
    }

    fn put(&self, names: Vec<Vec<u8>>, node: Node) -> Result<()> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| Error::InvalidInput("a backup thread panicked".into()))?;
        // One path, one source; and no file where another source needs a directory.
        for (other, _) in entries.iter() {
            let shorter = other.len().min(names.len());
            if other[..shorter] == names[..shorter] {
                return Err(Error::InvalidInput(format!(
                    "two sources of one snapshot at /{}",
                    String::from_utf8_lossy(&names[..shorter].join(&b'/'))
                )));
            }
        }
        entries.push((names, node));
        Ok(())
    }

    /// Makes every pack durable and indexed, then writes the snapshot of everything added,
    /// unless this is a dry run or (with `skip_if_unchanged`) the root equals
    /// `meta.parent_tree`. Nothing is written if the run was cancelled or any pack failed; a
    /// storage failure is reported before anything the sources saw after it.
    pub fn commit(self, meta: SnapshotMeta) -> Result<BackupOutcome> {
        let Self {
            ctx,
            session,
            entries,
        } = self;
        let entries = entries
            .into_inner()
            .map_err(|_| Error::InvalidInput("a backup thread panicked".into()))?;
        let tree = build_root(&ctx, entries);
        let Ctx {
            packer,
            counters,
            opts,
            start_ns,
            repo,
            cancel,
            ..
        } = ctx;
        let packed = packer.bytes_added.load(Ordering::Relaxed);
        packer.finish()?;
        let tree = tree?;
        let summary = counters.summary(packed, start_ns);
        let mut tags = opts.tags.clone();
        tags.sort();
        tags.dedup();
        let (time_unix_ns, tz_offset_s) = match opts.time {
            Some(m) => (m.unix_ns, m.offset_s),
            None => (start_ns, local_offset_s()),
        };
        let snapshot = Snapshot {
            time_unix_ns,
            tz_offset_s,
            hostname: meta
                .hostname
                .or_else(|| opts.host.clone())
                .unwrap_or_else(crate::ops::hostname),
            username: crate::ops::username(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            paths: meta.paths,
            tags,
            tree,
            parent: meta.parent,
            program_version: format!("cista {}", env!("CARGO_PKG_VERSION")),
            incomplete: summary.errors > 0,
            original: None,
            summary,
            lost: None,
        };
        // A stop requested while the last data was being stored still means "no snapshot".
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let not_written = if opts.dry_run {
            Some(NotWritten::DryRun)
        } else if opts.skip_if_unchanged && meta.parent_tree == Some(snapshot.tree) {
            Some(NotWritten::Unchanged)
        } else {
            None
        };
        let id = match not_written {
            None => {
                // A lock others may have ignored commits nothing (FORMAT §17): a prune could
                // have deleted what this snapshot would name.
                session.ensure_fresh()?;
                Some(repo.save_snapshot(&snapshot)?)
            }
            Some(_) => None,
        };
        Ok(BackupOutcome {
            id,
            snapshot,
            not_written,
        })
    }

    /// Ends the writer without a snapshot: what was uploaded is made durable and indexed, so
    /// the next run reuses it. Returns the storage error, if flushing found one (the root
    /// cause of whatever failed in the sources after it).
    pub fn abort(self) -> Result<()> {
        self.ctx.packer.finish().map(|_| ())
    }
}

/// A reader that shows every byte it yields to `watch`.
struct Watched<'w, R> {
    inner: R,
    watch: &'w mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.watch)(&buf[..n])?;
        Ok(n)
    }
}

/// Bytes of a failing command's standard error kept for its error message.
pub const STDERR_TAIL: usize = 2048;

/// The last `keep` bytes `r` yields, as one line (line breaks become ` / `).
fn tail_of(mut r: impl Read, keep: usize) -> String {
    let mut last: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                last.extend_from_slice(&buf[..n]);
                if last.len() > keep {
                    last.drain(..last.len() - keep);
                }
            }
        }
    }
    String::from_utf8_lossy(&last)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `path` as plain names: no empty, `.` or `..` component, no NUL.
fn split_path(path: &str) -> Result<Vec<Vec<u8>>> {
    let names: Vec<Vec<u8>> = path
        .trim_start_matches('/')
        .split('/')
        .map(|n| n.as_bytes().to_vec())
        .collect();
    if names.iter().any(|n| !Node::name_is_safe(n)) {
        return Err(Error::InvalidInput(format!(
            "{path:?} must be plain names joined by `/`"
        )));
    }
    Ok(names)
}

/// The root tree of the entries: nodes one level deep as they are, deeper ones under
/// directories made here (0700, the current user, the writer's start as times).
fn build_root(ctx: &Ctx<'_>, entries: Vec<Entry>) -> Result<BlobId> {
    let nodes = level(ctx, entries)?;
    // A snapshot names one root tree blob, so the root is never split.
    ctx.store_tree(nodes)
}

fn level(ctx: &Ctx<'_>, entries: Vec<Entry>) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    let mut below: BTreeMap<Vec<u8>, Vec<Entry>> = BTreeMap::new();
    for (mut names, node) in entries {
        if names.len() <= 1 {
            nodes.push(node);
        } else {
            let first = names.remove(0);
            below.entry(first).or_default().push((names, node));
        }
    }
    for (name, inner) in below {
        let children = level(ctx, inner)?;
        let id = ctx.store_tree(children)?;
        ctx.counters.dirs_new.fetch_add(1, Ordering::Relaxed);
        nodes.push(ctx.made_dir(&name, NodeKind::Dir { subtree: id }));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::ops::NoProgress;
    use crate::ops::check::{self, CheckOptions};
    use crate::repo::Index;

    fn cancel() -> CancelFlag {
        Arc::new(AtomicBool::new(false))
    }

    /// The node at `path` (plain names) of the tree `root`.
    fn lookup(repo: &Repository, index: &Index, root: &BlobId, path: &[&str]) -> Node {
        let mut tree = repo.read_tree(index, root).unwrap();
        for (i, name) in path.iter().enumerate() {
            let node = tree.get(name.as_bytes()).cloned().unwrap();
            if i + 1 == path.len() {
                return node;
            }
            let NodeKind::Dir { subtree } = node.kind else {
                panic!("{name} is not a directory");
            };
            tree = repo.read_tree(index, &subtree).unwrap();
        }
        unreachable!("empty path")
    }

    fn content(repo: &Repository, index: &Index, node: &Node) -> Vec<u8> {
        let mut out = Vec::new();
        crate::ops::restore::dump_file(repo, index, node, &mut out).unwrap();
        out
    }

    #[test]
    fn sources_of_several_kinds_land_in_one_snapshot_under_their_names() {
        let repo = crate::repo::tests::repo();
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("uploads");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a.bin"), b"uploaded file").unwrap();
        let opts = BackupOptions::default();
        let c = cancel();
        let w = SnapshotWriter::open(&repo, &opts, &NoProgress, &c).unwrap();
        let dump = b"-- a database dump\n".repeat(1000);
        assert_eq!(
            w.add_stream("postgres/app.dump", &mut dump.as_slice())
                .unwrap(),
            dump.len() as u64
        );
        w.add_stream("postgres/globals.sql", &mut &b"CREATE ROLE app;"[..])
            .unwrap();
        let argv = ["sh", "-c", "printf 'KEY=value'"].map(OsString::from);
        assert_eq!(w.add_command("env/.env", &argv).unwrap(), 9);
        let root = VirtualRoot::new(std::slice::from_ref(&src)).unwrap();
        w.add_paths(&root, None).unwrap();
        let out = w
            .commit(SnapshotMeta {
                paths: vec!["set".into()],
                ..SnapshotMeta::default()
            })
            .unwrap();
        assert!(out.id.is_some());
        let s = &out.snapshot.summary;
        assert_eq!((s.files_new, s.errors), (4, 0));

        let index = repo.load_index().unwrap();
        let tree = &out.snapshot.tree;
        let app = lookup(&repo, &index, tree, &["postgres", "app.dump"]);
        assert_eq!(content(&repo, &index, &app), dump);
        let env = lookup(&repo, &index, tree, &["env", ".env"]);
        assert_eq!(content(&repo, &index, &env), b"KEY=value");
        // The made directories: 0700, the writer's start as times.
        let pg = lookup(&repo, &index, tree, &["postgres"]);
        assert_eq!(pg.mode, 0o040_700);
        // The file tree keeps its absolute path.
        let mut path: Vec<String> = src
            .components()
            .skip(1)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        path.push("a.bin".into());
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let a = lookup(&repo, &index, tree, &path);
        assert_eq!(content(&repo, &index, &a), b"uploaded file");
        assert!(
            check::run(&repo, &CheckOptions::read_all())
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn two_sources_may_not_claim_one_path_and_names_must_be_plain() {
        let repo = crate::repo::tests::repo();
        let opts = BackupOptions::default();
        let c = cancel();
        let w = SnapshotWriter::open(&repo, &opts, &NoProgress, &c).unwrap();
        w.add_stream("db/app.dump", &mut &b"one"[..]).unwrap();
        for clash in ["db/app.dump", "db", "db/app.dump/x"] {
            let e = w.add_stream(clash, &mut &b"two"[..]).unwrap_err();
            assert!(e.to_string().contains("two sources"), "{clash}: {e}");
        }
        for bad in ["", "a//b", "../x", "a/./b", "a\0b"] {
            assert!(w.add_stream(bad, &mut &b"x"[..]).is_err(), "{bad:?}");
        }
        // A sibling is fine, and the clashes left nothing behind.
        w.add_stream("db/other.dump", &mut &b"three"[..]).unwrap();
        let out = w.commit(SnapshotMeta::default()).unwrap();
        let index = repo.load_index().unwrap();
        let db = lookup(&repo, &index, &out.snapshot.tree, &["db"]);
        let NodeKind::Dir { subtree } = db.kind else {
            panic!("db is not a directory")
        };
        assert_eq!(repo.read_tree(&index, &subtree).unwrap().nodes.len(), 2);
    }

    #[test]
    fn a_failing_command_adds_nothing_and_an_aborted_writer_writes_no_snapshot() {
        let repo = crate::repo::tests::repo();
        let opts = BackupOptions::default();
        let c = cancel();
        let w = SnapshotWriter::open(&repo, &opts, &NoProgress, &c).unwrap();
        let argv = ["sh", "-c", "printf partial; exit 3"].map(OsString::from);
        let e = w.add_command("dump.sql", &argv).unwrap_err();
        assert!(matches!(e, Error::CommandFailed { .. }), "{e}");
        // With its standard error captured, the failure says what the command said.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "printf out; echo 'first line' >&2; echo 'FATAL: no such role' >&2; exit 1",
        ])
        .stderr(Stdio::piped());
        let e = w.add_command_with("dump.sql", cmd).unwrap_err().to_string();
        assert!(e.contains("first line / FATAL: no such role"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        // The name is still free: the failed output never reached the tree.
        w.add_stream("dump.sql", &mut &b"whole"[..]).unwrap();
        w.abort().unwrap();
        assert!(repo.list_snapshots().unwrap().is_empty());
        assert!(
            check::run(&repo, &CheckOptions::read_all())
                .unwrap()
                .is_ok()
        );
    }
}
