//! Backup: walk sources, chunk and store new content, build the Merkle tree of directories,
//! write the snapshot last.
//!
//! Parallelism: every directory's entries are processed with rayon (`par_iter`), and inside a
//! file each segment's chunks are hashed, compressed and sealed in parallel, so both small-file
//! trees and one large dump keep every core busy. Packs are assembled by the workers and
//! uploaded by the packer's own thread. A chunk is claimed (index or in-flight set) before it
//! is sealed, so duplicate content is never compressed or encrypted twice.
//!
//! Memory: each worker holds one read segment ([`segment_len`], `stream.rs`) per file it is chunking, plus
//! the packer's bound (docs/DESIGN.md, "Memory bound").

mod dirs;
mod excludes;
mod scan;
mod source;
mod stream;
pub mod targets;
mod writer;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Display;
use std::fs::Metadata;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use excludes::{CACHEDIR_SIGNATURE, CACHEDIR_TAG, Excludes, TagFile, parse_size};
pub use scan::MAX_SCAN_DEPTH;
pub use source::VirtualRoot;
pub use stream::segment_len;
pub use writer::{SnapshotMeta, SnapshotWriter};

use crate::error::{Error, Result};
use crate::format::pack::BlobType;
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{Node, NodeKind, Tree, Xattr};
use crate::id::{BlobId, SnapshotId};
use crate::ops::session::LockOptions;
use crate::ops::{CancelFlag, Phase, Progress, now_unix_ns};
use crate::repo::packer::{Packer, SealedBlob};
use crate::repo::{Index, Repository};

/// What to back up.
#[derive(Debug)]
pub enum Source {
    /// Files and directories, by path.
    Paths(Vec<PathBuf>),
    /// Standard input (or any reader), stored as one file `/NAME`.
    Stdin {
        /// File name in the snapshot.
        name: String,
    },
    /// A command's standard output, stored as `/NAME`; the snapshot is written only if the
    /// command exits successfully.
    Command {
        /// File name in the snapshot.
        name: String,
        /// Program and arguments.
        argv: Vec<OsString>,
    },
}

/// Options of a backup run.
#[derive(Debug, Default, Clone)]
pub struct BackupOptions {
    /// Skip paths matching these.
    pub excludes: Excludes,
    /// Do not cross file-system boundaries below each source path.
    pub one_file_system: bool,
    /// Snapshot tags.
    pub tags: Vec<String>,
    /// Host name recorded (default: this machine's).
    pub host: Option<String>,
    /// Use this parent instead of the latest matching snapshot.
    pub parent: Option<SnapshotId>,
    /// Read every file even if the parent says it is unchanged.
    pub force: bool,
    /// Change detection ignores the status change time (`--ignore-ctime`).
    pub ignore_ctime: bool,
    /// Change detection ignores the inode number, and so the status change time too
    /// (`--ignore-inode`, as in restic).
    pub ignore_inode: bool,
    /// Write no snapshot when the root tree equals the parent's (`--skip-if-unchanged`).
    pub skip_if_unchanged: bool,
    /// Read and chunk everything but write nothing to the repository, not even a lock
    /// (`--dry-run`): the outcome says what would have been added.
    pub dry_run: bool,
    /// Store each entry's real access time (`--with-atime`).
    pub with_atime: bool,
    /// Run the progress scanner beside the backup, for totals ([`Progress::scan_total`]).
    pub scan: bool,
    /// How to wait for the shared lock (`--retry-lock`); `no_lock` is refused, since a backup
    /// writes.
    pub lock: LockOptions,
    /// The snapshot's time and UTC offset (`--time`); default: the start of the run in the
    /// machine's zone. The summary's start and end stay the real ones, as in restic.
    pub time: Option<crate::ops::retention::Moment>,
}

/// What a backup produced.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The new snapshot's id; `None` when none was written (`dry_run`, or skipped because
    /// nothing changed).
    pub id: Option<SnapshotId>,
    /// The snapshot (as it would have been written when `id` is `None`).
    pub snapshot: Snapshot,
    /// Why no snapshot was written, if none was.
    pub not_written: Option<NotWritten>,
}

/// Why a backup that succeeded wrote no snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotWritten {
    /// `--dry-run`.
    DryRun,
    /// `--skip-if-unchanged` and the tree equals the parent's.
    Unchanged,
}

#[derive(Debug, Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    data_added: AtomicU64,
    /// Sealed bytes of the blobs a dry run would have stored.
    dry_packed: AtomicU64,
    total_bytes: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    /// The snapshot's summary: these counts, `packed` bytes uploaded, from `start_ns` to now.
    fn summary(self, packed: u64, start_ns: i64) -> Summary {
        let (files_new, files_changed, files_unmodified) = (
            self.files_new.into_inner(),
            self.files_changed.into_inner(),
            self.files_unmodified.into_inner(),
        );
        Summary {
            files_new,
            files_changed,
            files_unmodified,
            dirs_new: self.dirs_new.into_inner(),
            dirs_changed: self.dirs_changed.into_inner(),
            dirs_unmodified: self.dirs_unmodified.into_inner(),
            data_blobs: self.data_blobs.into_inner(),
            tree_blobs: self.tree_blobs.into_inner(),
            data_added: self.data_added.into_inner(),
            data_added_packed: packed + self.dry_packed.into_inner(),
            // restic's definition: the files stored, read or reused; never one that failed.
            total_files_processed: files_new + files_changed + files_unmodified,
            total_bytes_processed: self.total_bytes.into_inner(),
            backup_start_ns: start_ns,
            backup_end_ns: now_unix_ns(),
            errors: self.errors.into_inner(),
        }
    }
}

/// State shared by every worker of one backup run.
pub(crate) struct Ctx<'a> {
    repo: &'a Repository,
    index: Index,
    claimed: Mutex<HashSet<BlobId>>,
    packer: Packer,
    counters: Counters,
    progress: &'a dyn Progress,
    cancel: &'a CancelFlag,
    opts: &'a BackupOptions,
    /// When the backup started (ns since the epoch): times of synthetic nodes.
    start_ns: i64,
}

impl Ctx<'_> {
    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        if self.packer.has_failed() {
            return Err(Error::InvalidInput("pack upload failed".into()));
        }
        Ok(())
    }

    /// A source entry that could not be stored as it is: counted, so the snapshot is marked
    /// incomplete, and reported with its path.
    fn error(&self, item: &Path, msg: impl Display) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.progress.error(item, Phase::Archival, &msg.to_string());
    }

    fn ignore(&self) -> source::Ignore {
        source::Ignore {
            ctime: self.opts.ignore_ctime,
            inode: self.opts.ignore_inode,
        }
    }

    /// A directory this run makes up (above a source it cannot read, or above a named
    /// stream): 0700, the current user, the run's start as times.
    fn made_dir(&self, name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: 0o040_700,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            mtime_ns: self.start_ns,
            atime_ns: self.start_ns,
            ctime_ns: self.start_ns,
            inode: 0,
            device: 0,
            links: 1,
            xattrs: Vec::new(),
        }
    }

    /// A node from an entry's metadata, with this run's options.
    fn node(&self, name: &[u8], kind: NodeKind, m: &Metadata, xattrs: Vec<Xattr>) -> Node {
        source::node_from_meta(name, kind, m, xattrs, self.opts.with_atime)
    }

    /// Counts a stored directory as restic does: new (not in the parent), unmodified (its
    /// node equals the parent's: same tree and metadata, restic's `Node.Equals`) or changed.
    fn count_dir(&self, parent: Option<&Node>, node: &Node) {
        let c = &self.counters;
        match parent {
            None => &c.dirs_new,
            Some(p) if p == node => &c.dirs_unmodified,
            Some(_) => &c.dirs_changed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a stored file as restic does: new (not in the parent), unmodified (its node
    /// equals the parent's, restic's `Node.Equals`: a file reused unread whose ctime or inode
    /// changed under `--ignore-ctime`/`--ignore-inode` is changed), or changed; and its
    /// `size` bytes as processed.
    fn count_file(&self, parent: Option<&Node>, node: &Node, size: u64) {
        let c = &self.counters;
        match parent {
            None => &c.files_new,
            Some(p) if p == node => &c.files_unmodified,
            Some(_) => &c.files_changed,
        }
        .fetch_add(1, Ordering::Relaxed);
        c.total_bytes.fetch_add(size, Ordering::Relaxed);
        self.progress.file_done(size);
    }

    /// True if this call is the one that must store `id`.
    fn claim(&self, id: &BlobId) -> bool {
        if self.index.contains(id) {
            return false;
        }
        self.claimed
            .lock()
            .map(|mut c| c.insert(*id))
            // A poisoned set (a worker panicked) must not make a chunk look stored: storing
            // it again only costs a duplicate blob.
            .unwrap_or(true)
    }

    fn store_blob(&self, blob_type: BlobType, data: &[u8]) -> Result<BlobId> {
        let id = self.repo.blob_id(data);
        if self.claim(&id) {
            let sealed = self.repo.seal_blob(blob_type, &id, data)?;
            let c = &self.counters;
            c.data_added.fetch_add(data.len() as u64, Ordering::Relaxed);
            match blob_type {
                BlobType::Data => &c.data_blobs,
                BlobType::Tree => &c.tree_blobs,
            }
            .fetch_add(1, Ordering::Relaxed);
            if self.opts.dry_run {
                // Sealed only to measure what it would add to storage.
                c.dry_packed
                    .fetch_add(sealed.len() as u64, Ordering::Relaxed);
                return Ok(id);
            }
            // Blob lengths are bounded by the chunker's max (≤ 16 MiB) or the tree cap.
            let raw_len = u32::try_from(data.len())
                .map_err(|_| Error::InvalidInput("blob too large".into()))?;
            self.packer.add(SealedBlob {
                blob_type,
                id,
                raw_len,
                sealed,
            })?;
        }
        Ok(id)
    }

    fn store_tree(&self, mut nodes: Vec<Node>) -> Result<BlobId> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let bytes = Tree { nodes }.encode();
        // Directories are split (`dirs.rs`); this one tree is the root, which a snapshot names
        // by a single blob id.
        if bytes.len() > crate::format::pack::MAX_BLOB_LEN as usize {
            return Err(Error::InvalidInput(format!(
                "the snapshot's root would take {} bytes, more than a tree blob holds (docs/FORMAT.md §20); back up fewer paths at once",
                bytes.len()
            )));
        }
        self.store_blob(BlobType::Tree, &bytes)
    }
}

/// Runs a backup and writes its snapshot, through a [`SnapshotWriter`]. A source that fails
/// to read is a warning (the snapshot is marked incomplete), and so is a source path that does
/// not exist, unless none exists; a failing command or storage error writes no snapshot. With
/// `dry_run` nothing is written to the repository (no lock, no pack, no index, no snapshot).
pub fn run(
    repo: &Repository,
    source: Source,
    stdin: Option<&mut (dyn Read + Send)>,
    opts: &BackupOptions,
    progress: &dyn Progress,
    cancel: &CancelFlag,
) -> Result<BackupOutcome> {
    let writer = SnapshotWriter::open(repo, opts, progress, cancel)?;
    let hostname = opts.host.clone().unwrap_or_else(super::hostname);
    let (paths, root) = match &source {
        Source::Paths(p) => {
            let root = VirtualRoot::new(p)?;
            (root.paths(), Some(root))
        }
        Source::Stdin { name } | Source::Command { name, .. } => {
            if !Node::name_is_safe(name.as_bytes()) {
                return Err(Error::InvalidInput(format!(
                    "--stdin-filename {name:?} must be a plain file name"
                )));
            }
            (vec![format!("/{name}")], None)
        }
    };
    let parent = find_parent(repo, opts, &hostname, &paths)?;
    let parent_tree = parent.as_ref().map(|(_, s)| s.tree);

    let scan_done = AtomicBool::new(false);
    let added = std::thread::scope(|s| {
        let added = match (&source, &root) {
            (Source::Paths(_), Some(root)) => {
                if opts.scan {
                    let scan_done = &scan_done;
                    s.spawn(move || {
                        scan::run(
                            root.sources(),
                            &opts.excludes,
                            opts.one_file_system,
                            progress,
                            &[scan_done, cancel],
                        )
                    });
                }
                writer.add_paths(root, parent_tree.as_ref())
            }
            (Source::Stdin { name }, _) => match stdin {
                Some(r) => writer.add_stream(name, r).map(|_| ()),
                None => Err(Error::InvalidInput("no standard input given".into())),
            },
            (Source::Command { name, argv }, _) => writer.add_command(name, argv).map(|_| ()),
            _ => Err(Error::InvalidInput("no source".into())),
        };
        // The scanner only feeds the progress display: a failed backup stops it; after a
        // successful one it finishes (it only stats), so the last status has exact totals.
        if added.is_err() {
            scan_done.store(true, Ordering::Relaxed);
        }
        added
    });
    if let Err(e) = added {
        // Whatever happened, make uploaded packs durable and indexed so the next run reuses
        // them. A storage failure is the root cause of whatever the walk reported after it
        // ("pack upload failed"), so it is the error to show.
        writer.abort()?;
        return Err(e);
    }
    writer.commit(SnapshotMeta {
        paths,
        parent: parent.map(|(id, _)| id),
        parent_tree,
        hostname: Some(hostname),
    })
}

fn local_offset_s() -> i32 {
    jiff::Zoned::now().offset().seconds()
}

/// The latest snapshot of the same host and paths, unless one was named.
fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    hostname: &str,
    paths: &[String],
) -> Result<Option<(SnapshotId, Snapshot)>> {
    if opts.force {
        return Ok(None);
    }
    if let Some(id) = opts.parent {
        return Ok(Some((id, repo.load_snapshot(&id)?)));
    }
    Ok(repo
        .list_snapshots()?
        .into_iter()
        .rev()
        .find(|(_, s)| s.hostname == hostname && s.paths == paths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::backend::fault::FaultBackend;
    use crate::backend::local::LocalBackend;
    use crate::format::config::ChunkerParams;
    use crate::ops::NoProgress;
    use crate::ops::check::{self, CheckOptions};
    use crate::repo::InitOptions;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    fn opts() -> InitOptions {
        InitOptions {
            chunker: ChunkerParams {
                min: 4096,
                avg: 16384,
                max: 65536,
            },
            pack_size: 1 << 20,
            compression_level: 3,
            kdf: crate::repo::tests::CHEAP_KDF,
        }
    }

    fn tree(dir: &Path, files: usize) {
        for i in 0..files {
            let data =
                crate::format::vectors::samples::pseudo_random(300_000, 0x9e37_79b9 + i as u64);
            std::fs::write(dir.join(format!("f{i}")), data).unwrap();
        }
    }

    fn backup(repo: &Repository, src: &Path) -> Result<BackupOutcome> {
        let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
        run(
            repo,
            Source::Paths(vec![src.to_path_buf()]),
            None,
            &BackupOptions::default(),
            &NoProgress,
            &cancel,
        )
    }

    /// A write failure mid-backup (full disk, lost mount) fails the backup with an error, leaves
    /// a repository that checks clean, and the next backup reuses what was stored.
    #[test]
    fn failing_storage_mid_backup_loses_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (src, repo_dir) = (d.path().join("src"), d.path().join("repo"));
        std::fs::create_dir(&src).unwrap();
        tree(&src, 8);
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::open(&repo_dir).unwrap());
        Repository::init(local.clone(), b"pw", &opts()).unwrap();

        let faulty: Arc<dyn Backend> =
            Arc::new(FaultBackend::new(local.clone()).fail_writes_after(3));
        let repo = Repository::open(faulty, b"pw").unwrap();
        assert!(backup(&repo, &src).is_err());
        drop(repo);

        let repo = Repository::open(local, b"pw").unwrap();
        assert!(
            repo.list_snapshots().unwrap().is_empty(),
            "no snapshot after a failed backup"
        );
        let report = check::run(&repo, &CheckOptions::read_all()).unwrap();
        assert!(report.is_ok(), "{:?}", report.findings);
        let out = backup(&repo, &src).unwrap();
        let total = out.snapshot.summary.total_bytes_processed;
        assert!(
            out.snapshot.summary.data_added < total,
            "stored packs were reused"
        );
        assert!(
            check::run(&repo, &CheckOptions::read_all())
                .unwrap()
                .is_ok()
        );
    }

    /// Cancelling (Ctrl-C) stops with `Interrupted`, writes no snapshot, and keeps the
    /// repository valid.
    #[test]
    fn cancelled_backup_writes_no_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let (src, repo_dir) = (d.path().join("src"), d.path().join("repo"));
        std::fs::create_dir(&src).unwrap();
        tree(&src, 2);
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::open(&repo_dir).unwrap());
        let repo = Repository::init(local, b"pw", &opts()).unwrap();
        let cancel: CancelFlag = Arc::new(AtomicBool::new(true));
        let r = run(
            &repo,
            Source::Paths(vec![src.clone()]),
            None,
            &BackupOptions::default(),
            &NoProgress,
            &cancel,
        );
        assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
        assert!(repo.list_snapshots().unwrap().is_empty());
        assert!(check::run(&repo, &CheckOptions::default()).unwrap().is_ok());
    }

    /// Appends to a file each time a read segment is reported, `left` times: a writer that
    /// changes the file while the backup reads it, at a point the test controls.
    struct Appender {
        path: PathBuf,
        left: AtomicU64,
    }

    impl Progress for Appender {
        fn bytes(&self, _n: u64) {
            if self
                .left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&self.path)
                    .unwrap();
                f.write_all(b"appended while read\n").unwrap();
            }
        }
    }

    /// A file that changes during its first read is read again, and the second read is what
    /// is stored, with no error; one that changes during both is stored and reported.
    #[test]
    fn file_changed_while_read_is_read_again() {
        let d = tempfile::tempdir().unwrap();
        let (src, repo_dir) = (d.path().join("src"), d.path().join("repo"));
        std::fs::create_dir(&src).unwrap();
        let f = src.join("log");
        std::fs::write(&f, b"first line\n".repeat(1000)).unwrap();
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::open(&repo_dir).unwrap());
        let repo = Repository::init(local, b"pw", &opts()).unwrap();
        let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
        let run_with = |left: u64| {
            let p = Appender {
                path: f.clone(),
                left: AtomicU64::new(left),
            };
            let o = BackupOptions {
                force: true,
                ..BackupOptions::default()
            };
            run(
                &repo,
                Source::Paths(vec![src.clone()]),
                None,
                &o,
                &p,
                &cancel,
            )
            .unwrap()
        };
        let stored_bytes = |out: &BackupOutcome| {
            let index = repo.load_index().unwrap();
            let mut dir = repo.read_tree(&index, &out.snapshot.tree).unwrap();
            for c in src.iter().skip(1) {
                let node = dir.get(c.as_bytes()).unwrap().clone();
                let NodeKind::Dir { subtree } = node.kind else {
                    panic!("not a directory")
                };
                dir = repo.read_tree(&index, &subtree).unwrap();
            }
            let mut back = Vec::new();
            crate::ops::restore::dump_file(&repo, &index, &dir.nodes[0], &mut back).unwrap();
            back
        };

        let once = run_with(1);
        assert_eq!(once.snapshot.summary.errors, 0);
        assert!(!once.snapshot.incomplete);
        assert_eq!(
            stored_bytes(&once),
            std::fs::read(&f).unwrap(),
            "the second read"
        );

        let always = run_with(2);
        assert_eq!(always.snapshot.summary.errors, 1);
        assert!(always.snapshot.incomplete);
        let now = std::fs::read(&f).unwrap();
        let kept = stored_bytes(&always);
        assert_eq!(
            kept.len() + 20,
            now.len(),
            "stored as the second read saw it"
        );
        assert!(now.starts_with(&kept));
    }

    /// A stream spanning several read segments chunks exactly as the whole buffer does (the
    /// double-buffered reader must not move a boundary) and reads back identical.
    #[test]
    fn multi_segment_stream_chunks_like_the_whole_buffer() {
        let d = tempfile::tempdir().unwrap();
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::open(d.path().join("repo")).unwrap());
        let repo = Repository::init(local, b"pw", &opts()).unwrap();
        let mut x = 7u64;
        let mut data: Vec<u8> = (0..(segment_len(opts().chunker.max) * 5 / 2))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 7) as u8
            })
            .collect();
        data.extend(b"tail of the dump\n".repeat(1000));
        let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
        let mut reader: &[u8] = &data;
        let source = Source::Stdin {
            name: "db.sql".into(),
        };
        let out = run(
            &repo,
            source,
            Some(&mut reader),
            &BackupOptions::default(),
            &NoProgress,
            &cancel,
        )
        .unwrap();

        let index = repo.load_index().unwrap();
        let tree = repo.read_tree(&index, &out.snapshot.tree).unwrap();
        let NodeKind::File { content, size } = &tree.nodes[0].kind else {
            panic!("not a file")
        };
        assert_eq!(*size, data.len() as u64);
        let mut expected = Vec::new();
        let mut pos = 0;
        for n in repo.chunker().cut_all(&data) {
            expected.push(repo.blob_id(&data[pos..pos + n]));
            pos += n;
        }
        assert_eq!(content, &expected);
        let mut back = Vec::new();
        crate::ops::restore::dump_file(&repo, &index, &tree.nodes[0], &mut back).unwrap();
        assert!(back == data, "dumped bytes differ");
    }
}
