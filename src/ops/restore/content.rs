//! Writing restored files' contents: fetch the packs' byte ranges the read plan (`reads.rs`)
//! asks for, verify every blob against its id, and write it at its offsets.
//!
//! Files are taken in batches ([`Exec::batch_files`] files or [`BATCH_BYTES`] of content, a
//! larger file alone), in plan order. A batch is planned when the queue of requests runs dry, so the
//! next batch is planned while the last requests of the previous one are still being read.
//! A fixed set of workers (`workers`) takes requests from the queue: each reads one range,
//! opens and verifies its blobs one after the other, and writes each to every place it goes.
//!
//! Memory: a worker holds one request's bytes (at most [`reads::CAP`], or one sealed blob when
//! that is longer; the blob cap bounds both) and one blob's plaintext, so reading costs at most
//! `workers × (request cap + largest chunk)` whatever the backend's latency; a slow backend
//! only leaves the workers waiting longer. Plans and file states are per batch.
//!
//! A file is created at its first write and closed at its last, so the files open at once are
//! those a batch has started and not finished: at most `2 × batch_files`, since the next batch
//! starts while the last requests of the one before are read.
//!
//! Why the batch size differs by store: a pack holds its blobs in random order (FORMAT §13),
//! so a batch of a few files touches most of the packs it needs in places far apart, and a
//! restore costs about `batches × packs` requests. Locally a request is a cheap `pread` and
//! small batches keep few files open; against an object store every request is a round trip
//! (and on some servers a read of the whole object), so remote restores take batches of
//! [`REMOTE_BATCH_FILES`] files, which read most packs once, as a whole.
//! A blob that fails (a failed read, or verification of a coalesced copy) is fetched once more
//! on its own through [`Repository::read_blob`], which tries every pack holding it; if that
//! fails too, every file it belongs to fails, is removed (only if this restore created it),
//! and the others go on.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::reads::{self, Limits, Part, Request, Target, Want};
use super::writer::FileWriter;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::ops::Progress;
use crate::repo::{Index, Repository};

/// Files per batch on a local store: bounds the files open at once and the size of a plan.
pub const BATCH_FILES: usize = 256;
/// Files per batch on a remote store (see the module's notes), within the descriptor limit
/// ([`batch_files_within`]).
pub const REMOTE_BATCH_FILES: usize = 8192;
/// Content bytes per batch (a larger file is a batch of its own).
pub const BATCH_BYTES: u64 = 1 << 30;

/// One file to write.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// Where the file is created (it must not exist).
    pub path: &'a Path,
    /// Its chunks, in order.
    pub content: &'a [BlobId],
    /// Its size, which the chunks' lengths must add up to.
    pub size: u64,
}

/// How the contents are written.
#[derive(Debug, Clone, Copy)]
pub struct Exec {
    /// Large files bypass the page cache (`writer.rs`).
    pub direct: bool,
    /// Requests in flight (and threads that fetch, verify and write).
    pub workers: usize,
    /// Bytes of one request, at most (unless a single blob is longer).
    pub cap: u64,
    /// Unwanted bytes read through between two wanted blobs of one request, at most.
    pub gap: u64,
    /// Files per batch, at most: two batches' files may be open at once.
    pub batch_files: usize,
}

impl Exec {
    /// The settings for a local or a remote store (see [`super::RestoreOptions::remote`]),
    /// with the batch lowered to the process's descriptor limit.
    pub fn for_store(direct: bool, workers: usize, remote: bool) -> Self {
        let (cap, gap, batch) = if remote {
            (reads::REMOTE_CAP, reads::REMOTE_GAP, REMOTE_BATCH_FILES)
        } else {
            (reads::CAP, reads::GAP, BATCH_FILES)
        };
        Self {
            direct,
            workers,
            cap,
            gap,
            batch_files: batch_files_within(batch, nofile_limit()),
        }
    }
}

/// Descriptors kept free for everything else the process opens meanwhile (pack files, sockets,
/// the cache, the threads' own).
const SPARE_DESCRIPTORS: u64 = 128;

/// `wanted` files per batch, lowered so that two batches' open files stay within the process's
/// soft descriptor limit `nofile` (less [`SPARE_DESCRIPTORS`]), and never below 16.
pub fn batch_files_within(wanted: usize, nofile: u64) -> usize {
    let room = nofile.saturating_sub(SPARE_DESCRIPTORS) / 2;
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(16)
}

/// The process's soft limit on open descriptors (1024 if it cannot be read).
pub fn nofile_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

/// A file of a batch while it is being written.
struct Slot {
    path: PathBuf,
    size: u64,
    /// Writes still to come; the one that takes it to zero finishes the file.
    pending: AtomicU64,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    writer: Option<Arc<FileWriter>>,
    /// This restore created the file (so removing it on failure removes nothing of others).
    created: bool,
    error: Option<Error>,
}

/// A planned batch: its files (numbered from `first` among the jobs) and their states.
struct Batch {
    first: usize,
    slots: Vec<Slot>,
}

/// The jobs, and the first one not yet planned.
struct Planner<'a> {
    jobs: &'a [Job<'a>],
    next: usize,
}

struct Shared<'a> {
    repo: &'a Repository,
    index: &'a Index,
    exec: Exec,
    progress: &'a dyn Progress,
    planner: Mutex<Planner<'a>>,
    queue: Mutex<VecDeque<(Arc<Batch>, Request)>>,
    results: Vec<Mutex<Option<Result<u64>>>>,
}

fn poisoned() -> Error {
    Error::io(
        "restore",
        std::io::Error::other("a restore thread panicked"),
    )
}

/// Writes every job's file; returns, per job, its size or why it could not be written (the
/// file is then removed if this call created it).
pub fn write_files(
    repo: &Repository,
    index: &Index,
    jobs: &[Job<'_>],
    exec: Exec,
    progress: &dyn Progress,
) -> Vec<Result<u64>> {
    let shared = Shared {
        repo,
        index,
        exec,
        progress,
        planner: Mutex::new(Planner { jobs, next: 0 }),
        queue: Mutex::new(VecDeque::new()),
        results: jobs.iter().map(|_| Mutex::new(None)).collect(),
    };
    if jobs.is_empty() {
        return Vec::new();
    }
    std::thread::scope(|s| {
        for i in 0..exec.workers.max(1) {
            let shared = &shared;
            let spawned = std::thread::Builder::new()
                .name(format!("cista-restore-{i}"))
                .spawn_scoped(s, move || shared.work());
            if spawned.is_err() && i == 0 {
                // Not even one thread: do the work here.
                shared.work();
            }
        }
    });
    shared
        .results
        .into_iter()
        .map(|r| match r.into_inner() {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => Err(poisoned()),
        })
        .collect()
}

impl Shared<'_> {
    /// A worker: takes requests until there are none and no files are left to plan.
    fn work(&self) {
        // Reused from request to request: the bytes read, and a blob's content.
        let mut sealed = Vec::new();
        let mut plain = Vec::new();
        loop {
            let next = match self.queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(_) => return,
            };
            match next {
                Some((batch, req)) => self.run_request(&batch, &req, &mut sealed, &mut plain),
                None => {
                    if !self.plan_next() {
                        return;
                    }
                }
            }
        }
    }

    /// Plans the next batch and queues its requests; false when all files are planned.
    /// Files that need no read (empty, or failed before any) are finished here.
    fn plan_next(&self) -> bool {
        let Ok(mut planner) = self.planner.lock() else {
            return false;
        };
        // Another worker may have queued a batch while this one waited for the planner.
        if self.queue.lock().map(|q| !q.is_empty()).unwrap_or(false) {
            return true;
        }
        let jobs = planner.jobs;
        if planner.next >= jobs.len() {
            return false;
        }
        let first = planner.next;
        let mut end = first;
        let mut bytes = 0u64;
        while end < jobs.len()
            && end - first < self.exec.batch_files.max(1)
            && (end == first || bytes + jobs[end].size <= BATCH_BYTES)
        {
            bytes += jobs[end].size;
            end += 1;
        }
        planner.next = end;
        // The planner stays locked until the batch's requests are queued: a worker that
        // finds the queue empty meanwhile must wait for them, not conclude from `next` that
        // nothing is left and quit (which once left a one-batch restore to a single worker).

        let mut wants: Vec<Want> = Vec::new();
        let mut slots = Vec::with_capacity(end - first);
        for (n, job) in jobs[first..end].iter().enumerate() {
            let slot = Slot {
                path: job.path.to_path_buf(),
                size: job.size,
                pending: AtomicU64::new(0),
                state: Mutex::new(SlotState::default()),
            };
            let before = wants.len();
            if let Err(e) = self.wants_of(job, n as u32, &mut wants) {
                wants.truncate(before);
                if let Ok(mut st) = slot.state.lock() {
                    st.error = Some(e);
                }
            }
            slot.pending
                .store((wants.len() - before) as u64, Ordering::Relaxed);
            slots.push(slot);
        }
        let batch = Arc::new(Batch { first, slots });
        let limits = Limits {
            gap: self.exec.gap,
            cap: reads::cap_for(bytes, self.exec.workers, self.exec.cap),
        };
        let requests = reads::plan(wants, limits);
        for (n, slot) in batch.slots.iter().enumerate() {
            if slot.pending.load(Ordering::Relaxed) == 0 {
                self.finish(&batch, n);
            }
        }
        if let Ok(mut q) = self.queue.lock() {
            q.extend(requests.into_iter().map(|r| (batch.clone(), r)));
        }
        drop(planner);
        true
    }

    /// Where each chunk of `job` is and where it goes; fails (before anything is created) if
    /// a chunk is in no index or the chunks do not add up to the file's size.
    fn wants_of(&self, job: &Job<'_>, file: u32, wants: &mut Vec<Want>) -> Result<()> {
        let mut off = 0u64;
        for id in job.content {
            let loc = self.index.get(id).ok_or_else(|| Error::RestoreVerify {
                path: job.path.to_path_buf(),
                chunk: id.to_string(),
                reason: "chunk is in no index".into(),
            })?;
            wants.push(Want {
                pack: loc.pack,
                entry: loc.entry,
                target: Target { file, offset: off },
            });
            off += u64::from(loc.entry.raw_len);
        }
        // Offsets come from the index's lengths; a lying index is caught here.
        if off != job.size {
            return Err(Error::RestoreVerify {
                path: job.path.to_path_buf(),
                chunk: "-".into(),
                reason: format!("chunks add up to {off} bytes, the file had {}", job.size),
            });
        }
        Ok(())
    }

    /// Reads one request and writes its blobs; `buf` and `plain` are the worker's reusable
    /// buffers for the bytes read and a blob's content.
    fn run_request(&self, batch: &Batch, req: &Request, buf: &mut Vec<u8>, plain: &mut Vec<u8>) {
        let mut sealed = self
            .repo
            .backend()
            .read_range_into(FileType::Pack, &req.pack.0, req.offset, req.len, buf)
            .ok()
            .filter(|()| buf.len() as u64 == req.len)
            .map(|()| buf.as_mut_slice());
        for part in &req.parts {
            let id = part.entry.id;
            // A failed read or a damaged copy: read it alone, from any pack that holds it.
            let alone;
            let data: std::result::Result<&[u8], String> =
                match self.open_part(req, sealed.as_deref_mut(), part, plain) {
                    Some(d) => Ok(d),
                    None => {
                        alone = self.repo.read_blob(self.index, &id);
                        alone.as_deref().map_err(reason_of)
                    }
                };
            for t in &part.targets {
                let Some(slot) = batch.slots.get(t.file as usize) else {
                    continue;
                };
                match data {
                    Ok(d) => self.write(slot, d, t.offset),
                    Err(ref reason) => self.fail(
                        slot,
                        Error::RestoreVerify {
                            path: slot.path.clone(),
                            chunk: id.to_string(),
                            reason: reason.clone(),
                        },
                    ),
                }
                if slot.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                    self.finish(batch, t.file as usize);
                }
            }
        }
    }

    /// Opens and verifies one blob of a request in place in the bytes read (a compressed one
    /// into `plain`); `None` if they were not had or the blob fails.
    fn open_part<'b>(
        &self,
        req: &Request,
        sealed: Option<&'b mut [u8]>,
        part: &Part,
        plain: &'b mut Vec<u8>,
    ) -> Option<&'b [u8]> {
        let e = part.entry;
        let at = usize::try_from(u64::from(e.offset).checked_sub(req.offset)?).ok()?;
        let bytes = sealed?.get_mut(at..at.checked_add(e.length as usize)?)?;
        self.repo.open_blob_into(&e, bytes, plain).ok()
    }

    /// Writes one chunk into its file, creating the file at its first write.
    fn write(&self, slot: &Slot, data: &[u8], off: u64) {
        let w = match self.writer(slot) {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(e) => return self.fail(slot, e),
        };
        match w.write_at(data, off) {
            Ok(()) => self.progress.bytes(data.len() as u64),
            Err(e) => self.fail(slot, Error::io(&slot.path, e)),
        }
    }

    /// The file's writer, created at the first call; `None` once the file has failed.
    fn writer(&self, slot: &Slot) -> Result<Option<Arc<FileWriter>>> {
        let mut st = slot.state.lock().map_err(|_| poisoned())?;
        if st.error.is_some() {
            return Ok(None);
        }
        if let Some(w) = &st.writer {
            return Ok(Some(w.clone()));
        }
        let w = Arc::new(self.create(slot, &mut st)?);
        st.writer = Some(w.clone());
        Ok(Some(w))
    }

    fn create(&self, slot: &Slot, st: &mut SlotState) -> Result<FileWriter> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&slot.path)
            .map_err(|e| Error::io(&slot.path, e))?;
        st.created = true;
        FileWriter::new(f, slot.size, self.exec.direct).map_err(|e| Error::io(&slot.path, e))
    }

    fn fail(&self, slot: &Slot, e: Error) {
        if let Ok(mut st) = slot.state.lock() {
            st.error.get_or_insert(e);
            st.writer = None;
        }
    }

    /// Completes file `n` of the batch once nothing more will be written to it: checks and
    /// closes it, or removes it if it failed.
    fn finish(&self, batch: &Batch, n: usize) {
        let Some(slot) = batch.slots.get(n) else {
            return;
        };
        let result = self.complete(slot);
        if result.is_ok() {
            self.progress.file_done(slot.size);
        }
        if let Some(r) = self.results.get(batch.first + n)
            && let Ok(mut r) = r.lock()
        {
            *r = Some(result);
        }
    }

    fn complete(&self, slot: &Slot) -> Result<u64> {
        let mut st = slot.state.lock().map_err(|_| poisoned())?;
        let outcome = match (st.error.take(), st.writer.take()) {
            (Some(e), _) => Err(e),
            (None, Some(w)) => match Arc::try_unwrap(w) {
                Ok(w) => w.finish().map_err(|e| Error::io(&slot.path, e)),
                Err(_) => Err(poisoned()),
            },
            // Nothing to write (an empty file): create it.
            (None, None) => self
                .create(slot, &mut st)
                .and_then(|w| w.finish().map_err(|e| Error::io(&slot.path, e))),
        };
        if outcome.is_err() && st.created {
            let _ = std::fs::remove_file(&slot.path);
        }
        outcome.map(|()| slot.size)
    }
}

/// Why a chunk could not be had, for a file's error that names the chunk already.
fn reason_of(e: &Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use super::*;
    use crate::backend::opendal::OpendalBackend;
    use crate::backend::{Backend, BackendError};
    use crate::id::Id;
    use crate::ops::NoProgress;
    use crate::ops::backup::{self, BackupOptions, Source};
    use crate::ops::restore::{self, RestoreOptions};

    /// Counts the pack reads of a restore and the most that were in flight at once.
    #[derive(Debug)]
    struct Counting {
        inner: Arc<dyn Backend>,
        pack_reads: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        /// When not 0: a content read (over 1 MiB; tree reads are smaller) waits, up to 5 s,
        /// until this many reads are in flight, once; then it is 0 again.
        rendezvous: AtomicUsize,
    }

    impl Backend for Counting {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> Result<(), BackendError> {
            self.inner.create()
        }
        fn list(&self, t: FileType) -> Result<Vec<(Id, u64)>, BackendError> {
            self.inner.list(t)
        }
        fn read(&self, t: FileType, id: &Id) -> Result<Vec<u8>, BackendError> {
            self.inner.read(t, id)
        }
        fn read_range(
            &self,
            t: FileType,
            id: &Id,
            offset: u64,
            len: u64,
        ) -> Result<Vec<u8>, BackendError> {
            if t == FileType::Pack {
                self.pack_reads.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most_in_flight.fetch_max(now, Ordering::SeqCst);
                // Latency, so reads overlap when they can.
                std::thread::sleep(std::time::Duration::from_millis(2));
                let want = self.rendezvous.load(Ordering::SeqCst);
                if want > 0 && len > 1 << 20 {
                    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
                    while self.in_flight.load(Ordering::SeqCst) < want
                        && std::time::Instant::now() < until
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    self.rendezvous.store(0, Ordering::SeqCst);
                }
            }
            let r = self.inner.read_range(t, id, offset, len);
            if t == FileType::Pack {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            r
        }
        fn size(&self, t: FileType, id: &Id) -> Result<u64, BackendError> {
            self.inner.size(t, id)
        }
        fn write(&self, t: FileType, id: &Id, bytes: Vec<u8>) -> Result<(), BackendError> {
            self.inner.write(t, id, bytes)
        }
        fn delete(&self, t: FileType, id: &Id) -> Result<(), BackendError> {
            self.inner.delete(t, id)
        }
    }

    /// Deterministic incompressible bytes.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A memory repository behind a [`Counting`] backend, holding one backup of `src`.
    fn backed_up_counted(
        src: &Path,
    ) -> (Arc<Counting>, Repository, crate::format::snapshot::Snapshot) {
        let counting = Arc::new(Counting {
            inner: Arc::new(OpendalBackend::memory().unwrap()),
            pack_reads: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            rendezvous: AtomicUsize::new(0),
        });
        let repo = crate::repo::tests::repo_on(counting.clone());
        let cancel = Arc::new(AtomicBool::new(false));
        let snap = backup::run(
            &repo,
            Source::Paths(vec![src.to_path_buf()]),
            None,
            &BackupOptions::default(),
            &NoProgress,
            &cancel,
        )
        .unwrap()
        .snapshot;
        (counting, repo, snap)
    }

    #[test]
    fn a_restore_reads_far_fewer_ranges_than_blobs_and_keeps_reads_in_flight_bounded() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut files = Vec::new();
        for i in 0..300u64 {
            let body = noise(i, 1000 + (i as usize * 37) % 9000);
            std::fs::write(src.join(format!("small-{i}")), &body).unwrap();
            files.push((format!("small-{i}"), body));
        }
        let big = noise(999, 3 << 20);
        std::fs::write(src.join("big"), &big).unwrap();
        files.push(("big".into(), big));

        let (counting, repo, snap) = backed_up_counted(&src);
        let index = repo.load_index().unwrap();
        let data_blobs = index
            .iter()
            .filter(|l| l.entry.blob_type == crate::format::pack::BlobType::Data)
            .count();
        assert!(data_blobs > 300, "{data_blobs} data blobs");

        let reads = pack_reads_of_restore(d.path(), &repo, &counting, &snap, false);
        let out = d.path().join("local").join(src.strip_prefix("/").unwrap());
        for (name, body) in &files {
            assert!(
                std::fs::read(out.join(name)).unwrap() == *body,
                "{name} differs"
            );
        }
        // Tree reads are counted too; the contents need a handful of ranged reads.
        assert!(
            reads * 10 < data_blobs,
            "{reads} pack reads for {data_blobs} data blobs"
        );
        let most = counting.most_in_flight.load(Ordering::SeqCst);
        assert!(most <= 3, "{most} reads in flight, asked for 3");
    }

    /// Restores `snap` from `repo` into a fresh folder of `d` and returns the pack reads.
    fn pack_reads_of_restore(
        d: &Path,
        repo: &Repository,
        counting: &Counting,
        snap: &crate::format::snapshot::Snapshot,
        remote: bool,
    ) -> usize {
        let index = repo.load_index().unwrap();
        let target = d.join(if remote { "remote" } else { "local" });
        let opts = RestoreOptions {
            target,
            reads_in_flight: 3,
            remote,
            ..RestoreOptions::default()
        };
        counting.pack_reads.store(0, Ordering::SeqCst);
        let stats = restore::run(
            repo,
            &index,
            &snap.tree,
            std::path::Path::new("/"),
            "t",
            &opts,
            &NoProgress,
        )
        .unwrap();
        assert!(stats.failed.is_empty(), "{:?}", stats.failed);
        counting.pack_reads.load(Ordering::SeqCst)
    }

    #[test]
    fn a_remote_restore_reads_each_pack_about_once() {
        // 3000 small files over a few packs: local batches of 256 files each touch every
        // pack; a remote batch holds them all.
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let mut files = Vec::new();
        for i in 0..3000u64 {
            let body = noise(i, 6000);
            std::fs::write(src.join(format!("f{i}")), &body).unwrap();
            files.push((format!("f{i}"), body));
        }
        let (counting, repo, snap) = backed_up_counted(&src);
        let packs = repo.backend().list(FileType::Pack).unwrap().len();
        let local = pack_reads_of_restore(d.path(), &repo, &counting, &snap, false);
        // One batch holds every file: all 3 workers read it, none quits while it is planned.
        counting.most_in_flight.store(0, Ordering::SeqCst);
        counting.rendezvous.store(3, Ordering::SeqCst);
        let remote = pack_reads_of_restore(d.path(), &repo, &counting, &snap, true);
        let most = counting.most_in_flight.load(Ordering::SeqCst);
        assert_eq!(
            most, 3,
            "reads in flight in a one-batch restore by 3 workers"
        );
        for (name, body) in &files {
            let out = d.path().join("remote").join(src.strip_prefix("/").unwrap());
            assert!(std::fs::read(out.join(name)).unwrap() == *body, "{name}");
        }
        // A small batch is still split for the 3 workers (`reads::cap_for`): about 2 requests
        // each, plus the tree reads, plus a pack or two cut by the cap.
        assert!(
            remote <= packs + 2 * 3 + 4,
            "{remote} reads of {packs} packs, remote"
        );
        assert!(
            remote * 3 < local,
            "{remote} reads remote against {local} local"
        );
    }

    #[test]
    fn batches_stay_within_the_descriptor_limit() {
        assert_eq!(
            batch_files_within(REMOTE_BATCH_FILES, 1 << 20),
            REMOTE_BATCH_FILES
        );
        assert_eq!(
            batch_files_within(REMOTE_BATCH_FILES, 1024),
            (1024 - 128) / 2
        );
        assert_eq!(batch_files_within(BATCH_FILES, 1024), BATCH_FILES);
        assert_eq!(batch_files_within(BATCH_FILES, 100), 16);
        assert!(nofile_limit() > 0);
    }

    #[test]
    fn a_damaged_blob_in_a_coalesced_read_fails_only_its_files() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let bodies: Vec<Vec<u8>> = (0..20).map(|i| noise(i, 5000)).collect();
        for (i, b) in bodies.iter().enumerate() {
            std::fs::write(src.join(format!("f{i}")), b).unwrap();
        }
        let repo_dir = d.path().join("repo");
        let local: Arc<dyn Backend> =
            Arc::new(crate::backend::local::LocalBackend::open(&repo_dir).unwrap());
        let repo = crate::repo::tests::repo_on(local);
        let cancel = Arc::new(AtomicBool::new(false));
        let snap = backup::run(
            &repo,
            Source::Paths(vec![src.clone()]),
            None,
            &BackupOptions::default(),
            &NoProgress,
            &cancel,
        )
        .unwrap()
        .snapshot;
        let index = repo.load_index().unwrap();
        // Flip a byte inside the blob of f7.
        let id = repo.blob_id(&bodies[7]);
        let loc = index.get(&id).unwrap();
        let pack_path = repo_dir.join(FileType::Pack.path(&loc.pack.0));
        let mut bytes = std::fs::read(&pack_path).unwrap();
        bytes[loc.entry.offset as usize + 30] ^= 1;
        std::fs::remove_file(&pack_path).unwrap();
        std::fs::write(&pack_path, &bytes).unwrap();

        let target = d.path().join("restored");
        let opts = RestoreOptions {
            target: target.clone(),
            ..RestoreOptions::default()
        };
        let stats = restore::run(
            &repo,
            &index,
            &snap.tree,
            std::path::Path::new("/"),
            "t",
            &opts,
            &NoProgress,
        )
        .unwrap();
        let out = target.join(src.strip_prefix("/").unwrap());
        assert_eq!(stats.failed.len(), 1, "{:?}", stats.failed);
        assert!(stats.failed[0].path.ends_with("f7"));
        assert!(!out.join("f7").exists(), "a damaged file is removed");
        for (i, b) in bodies.iter().enumerate().filter(|(i, _)| *i != 7) {
            assert!(std::fs::read(out.join(format!("f{i}"))).unwrap() == *b);
        }
    }
}
