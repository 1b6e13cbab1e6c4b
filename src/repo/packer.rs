//! Pack writing: collects sealed blobs into packs, shuffles and pads them, verifies the
//! header it wrote, uploads packs on a separate thread, and writes index files only after the
//! packs they name are durable.
//!
//! Memory is bounded: at most one open pack per blob type (each up to the pack target plus one
//! blob), [`UPLOAD_QUEUE`] finished packs waiting, and one being written; a finished pack
//! transiently holds its blobs twice while it is assembled.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::backend::{ErrorKind, FileType, PackHint};
use crate::crypto;
use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::pack::{self, BlobType, PackEntry, PackHeader};
use crate::id::{BlobId, Id, IndexId, PackId};
use crate::repo::Repository;

/// Finished packs waiting for the uploader. One: a deeper queue bought no speed in the peer
/// comparison but let backups peak 4–7 MB higher whenever writes slowed down (docs/DESIGN.md,
/// "Memory bound").
pub const UPLOAD_QUEUE: usize = 1;
/// An index file is written after this many packs, so an interrupted backup leaves most of
/// its work indexed (the rest is adopted from pack headers by the next backup).
pub const PACKS_PER_INDEX: usize = 64;

/// A sealed blob waiting for its pack.
#[derive(Debug)]
pub struct SealedBlob {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Keyed id of the plaintext.
    pub id: BlobId,
    /// Plaintext length.
    pub raw_len: u32,
    /// `nonce || ciphertext || tag`.
    pub sealed: Vec<u8>,
}

/// A pack ready to store.
#[derive(Debug)]
pub struct FinishedPack {
    /// BLAKE3 of the pack's bytes (the parts in order).
    pub id: PackId,
    /// The pack's bytes, in order, in pieces (the sealed blobs are not copied together).
    pub parts: Vec<Vec<u8>>,
    /// Total length of the parts.
    pub len: u64,
    /// Its blobs, for the index.
    pub entries: Vec<PackEntry>,
}

fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    crypto::random_bytes(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Assembles a pack: blobs in random order, random padding, sealed header, trailer; then
/// re-reads the header it wrote (verify after write) before anything is uploaded.
///
/// Zero-copy: the sealed blobs become parts of the pack as they are; only the 8-byte header
/// and the tail (padding, sealed header, trailer) are new buffers. The pack's name is hashed
/// over the parts in order.
pub fn assemble(repo: &Repository, mut blobs: Vec<SealedBlob>) -> Result<FinishedPack> {
    // Fisher-Yates: the order in which blobs were produced must not show in the pack.
    for i in (1..blobs.len()).rev() {
        let j = (random_u64()? % (i as u64 + 1)) as usize;
        blobs.swap(i, j);
    }
    let body: usize = blobs.iter().map(|b| b.sealed.len()).sum();
    // Up to 1/256 of the pack (at least 4 KiB): blurs pack sizes for ~0.2% of storage on
    // average (1/64 cost 0.8% and made repositories larger than restic's).
    let pad_max = (body / 256).max(4096);
    let pad = (random_u64()? % (pad_max as u64 + 1)) as usize;
    let too_big = || Error::InvalidInput("pack exceeds 4 GiB; lower the pack size".into());

    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(blobs.len() + 2);
    parts.push(pack::pack_magic().to_vec());
    let mut len = pack::pack_magic().len();
    let mut entries = Vec::with_capacity(blobs.len());
    for b in blobs {
        let offset = u32::try_from(len).map_err(|_| too_big())?;
        let length = u32::try_from(b.sealed.len()).map_err(|_| too_big())?;
        entries.push(PackEntry {
            blob_type: b.blob_type,
            id: b.id,
            offset,
            length,
            raw_len: b.raw_len,
        });
        len += b.sealed.len();
        parts.push(b.sealed);
    }
    let header = PackHeader { entries };
    let sealed_header = repo
        .master_key()
        .seal(&pack::pack_header_ad(), &header.encode())?;
    let header_len = u32::try_from(sealed_header.len())
        .map_err(|_| Error::InvalidInput("pack header too large".into()))?;
    let mut tail = vec![0u8; pad];
    crypto::random_bytes(&mut tail)?;
    tail.extend_from_slice(&sealed_header);
    tail.extend_from_slice(&header_len.to_le_bytes());
    let total = (len + tail.len()) as u64;

    // Verify after write: what a reader will parse is what we meant to write. The sealed
    // header and trailer both lie in `tail`.
    let verify = || -> std::result::Result<(), String> {
        let trailer = tail
            .last_chunk::<{ pack::TRAILER_LEN }>()
            .copied()
            .ok_or("pack tail too short")?;
        let (s, e) = pack::header_range(total, trailer).map_err(|e| e.to_string())?;
        let tail_start = total - tail.len() as u64;
        let sealed = tail
            .get((s - tail_start.min(s)) as usize..(e - tail_start.min(e)) as usize)
            .filter(|_| s >= tail_start)
            .ok_or("header range outside the tail")?;
        let plain = repo
            .master_key()
            .open(&pack::pack_header_ad(), sealed)
            .map_err(|e| e.to_string())?;
        let parsed = PackHeader::decode(&plain, s).map_err(|e| e.to_string())?;
        if parsed != header {
            Err("header differs after re-reading".into())
        } else {
            Ok(())
        }
    };
    verify().map_err(|reason| Error::corrupt("pack", "being written", reason))?;
    parts.push(tail);
    let mut hasher = blake3::Hasher::new();
    for p in &parts {
        hasher.update(p);
    }
    Ok(FinishedPack {
        id: PackId(Id(*hasher.finalize().as_bytes())),
        parts,
        len: total,
        entries: header.entries,
    })
}

#[derive(Debug, Default)]
struct Builder {
    blobs: Vec<SealedBlob>,
    bytes: usize,
}

/// Shared by the backup's worker threads: `add` sealed blobs, then `finish` once.
#[derive(Debug)]
pub struct Packer {
    repo: Repository,
    target: usize,
    data: Mutex<Builder>,
    tree: Mutex<Builder>,
    tx: Option<Sender<FinishedPack>>,
    uploader: Option<JoinHandle<Result<Uploaded>>>,
    failed: std::sync::Arc<AtomicBool>,
    /// Bytes of sealed blobs added (what this run adds to storage, before padding).
    pub bytes_added: AtomicU64,
    /// Blobs added.
    pub blobs_added: AtomicU64,
}

/// What the uploader stored: the packs, and the index files naming them.
type Uploaded = (Vec<IndexPack>, Vec<IndexId>);

fn upload_loop(
    repo: Repository,
    rx: Receiver<FinishedPack>,
    failed: std::sync::Arc<AtomicBool>,
    packs_per_index: usize,
) -> Result<Uploaded> {
    let mut all = Vec::new();
    let mut files = Vec::new();
    let mut unindexed = Vec::new();
    let mut first_error = None;
    for p in rx {
        if first_error.is_some() {
            continue; // keep draining so producers never block on a dead uploader
        }
        if p.entries.iter().all(|e| e.blob_type == BlobType::Tree) {
            // A metadata cache keeps the tree packs a backup writes as they are written.
            repo.backend().hint(PackHint::NewTreePack(&p.id.0));
        }
        let res = match repo.backend().write_parts(FileType::Pack, &p.id.0, p.parts) {
            Ok(()) => Ok(()),
            Err(e) if e.kind == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::from(e)),
        };
        let res = res.and_then(|()| {
            unindexed.push(IndexPack {
                id: p.id,
                blobs: p.entries,
            });
            if unindexed.len() >= packs_per_index {
                files.extend(repo.save_index(unindexed.clone())?);
                all.append(&mut unindexed);
            }
            Ok(())
        });
        if let Err(e) = res {
            failed.store(true, Ordering::Relaxed);
            first_error = Some(e);
        }
    }
    if let Some(e) = first_error {
        // The packs stored before the failure are durable: index them (best effort; on a
        // full disk this may fail too), so the next backup reuses them without reading each
        // one whole to adopt it.
        if !unindexed.is_empty() {
            let _ = repo.save_index(unindexed);
        }
        return Err(e);
    }
    if !unindexed.is_empty() {
        files.extend(repo.save_index(unindexed.clone())?);
        all.append(&mut unindexed);
    }
    Ok((all, files))
}

impl Packer {
    /// Starts the uploader thread.
    pub fn new(repo: &Repository) -> Result<Self> {
        Self::with_index_every(repo, PACKS_PER_INDEX)
    }

    /// [`Packer::new`] writing an index file after every `packs` packs (at least one): `copy`
    /// indexes more often than a backup, because after an interruption an unindexed pack
    /// costs a remote target a whole download to adopt, not a local read.
    pub fn with_index_every(repo: &Repository, packs: usize) -> Result<Self> {
        let packs_per_index = packs.max(1);
        let (tx, rx) = bounded(UPLOAD_QUEUE);
        let failed = std::sync::Arc::new(AtomicBool::new(false));
        let uploader = {
            let (repo, failed) = (repo.clone(), failed.clone());
            std::thread::Builder::new()
                .name("cista-upload".into())
                .spawn(move || upload_loop(repo, rx, failed, packs_per_index))
                .map_err(|e| Error::io("upload thread", e))?
        };
        Ok(Self {
            repo: repo.clone(),
            target: repo.config().pack_size as usize,
            data: Mutex::default(),
            tree: Mutex::default(),
            tx: Some(tx),
            uploader: Some(uploader),
            failed,
            bytes_added: AtomicU64::new(0),
            blobs_added: AtomicU64::new(0),
        })
    }

    /// Whether the uploader has failed (callers stop producing; `finish` returns the error).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Adds a sealed blob; when its pack is full, assembles it and queues it for upload
    /// (blocking while the queue is full, which is what bounds memory).
    pub fn add(&self, blob: SealedBlob) -> Result<()> {
        self.bytes_added
            .fetch_add(blob.sealed.len() as u64, Ordering::Relaxed);
        self.blobs_added.fetch_add(1, Ordering::Relaxed);
        let slot = if blob.blob_type == BlobType::Tree {
            &self.tree
        } else {
            &self.data
        };
        let full = {
            let mut b = slot
                .lock()
                .map_err(|_| Error::InvalidInput("pack builder poisoned".into()))?;
            b.bytes += blob.sealed.len();
            b.blobs.push(blob);
            if b.bytes >= self.target || b.blobs.len() >= pack::MAX_PACK_BLOBS {
                Some(std::mem::take(&mut *b))
            } else {
                None
            }
        };
        if let Some(b) = full {
            self.send(b)?;
        }
        Ok(())
    }

    fn send(&self, b: Builder) -> Result<()> {
        if b.blobs.is_empty() {
            return Ok(());
        }
        let pack = assemble(&self.repo, b.blobs)?;
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("packer already finished".into()))?;
        if tx.send(pack).is_err() || self.has_failed() {
            return Err(Error::InvalidInput(
                "pack upload stopped after an earlier error".into(),
            ));
        }
        Ok(())
    }

    /// Flushes the open packs, waits for every upload, writes the last index file, and
    /// returns every pack stored by this packer.
    pub fn finish(self) -> Result<Vec<IndexPack>> {
        Ok(self.finish_with_index_files()?.0)
    }

    /// [`Packer::finish`], also returning the index files it wrote (prune tells its own
    /// writes from those of a backup running beside it).
    pub fn finish_with_index_files(mut self) -> Result<(Vec<IndexPack>, Vec<IndexId>)> {
        let data = std::mem::take(
            &mut *self
                .data
                .lock()
                .map_err(|_| Error::InvalidInput("poisoned".into()))?,
        );
        let tree = std::mem::take(
            &mut *self
                .tree
                .lock()
                .map_err(|_| Error::InvalidInput("poisoned".into()))?,
        );
        let flushed = self.send(data).and_then(|()| self.send(tree));
        drop(self.tx.take());
        let uploaded = match self.uploader.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => Err(Error::InvalidInput("upload thread panicked".into())),
        };
        // The uploader's error is the root cause (a full disk, a permission error); the
        // producers only saw that it had stopped, so it is the one to report.
        let stored = uploaded?;
        flushed?;
        Ok(stored)
    }
}

impl Drop for Packer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.uploader.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tests::repo;

    fn blobs(r: &Repository, n: usize) -> Vec<SealedBlob> {
        (0..n)
            .map(|i| {
                let data = format!("blob number {i}").into_bytes();
                let id = r.blob_id(&data);
                let sealed = r.seal_blob(BlobType::Data, &id, &data).unwrap();
                SealedBlob {
                    blob_type: BlobType::Data,
                    id,
                    raw_len: data.len() as u32,
                    sealed,
                }
            })
            .collect()
    }

    /// Regression: a failed upload (a full disk) was reported as "pack upload stopped after
    /// an earlier error", hiding the error itself.
    #[test]
    fn first_upload_error_is_the_one_reported() {
        use crate::backend::fault::FaultBackend;
        use crate::backend::opendal::OpendalBackend;
        use crate::backend::{Backend, FileType};
        use crate::repo::InitOptions;
        use std::sync::Arc;

        let inner: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let faulty: Arc<dyn Backend> =
            Arc::new(FaultBackend::new(inner).fail_writes_of(FileType::Pack));
        let opts = InitOptions {
            pack_size: 1 << 20,
            ..crate::repo::tests::cheap_options()
        };
        let r = Repository::init(faulty, b"pw", &opts).unwrap();
        let blob = |i: u64| {
            let data = crate::format::vectors::samples::pseudo_random(700_000, i);
            let id = r.blob_id(&data);
            SealedBlob {
                blob_type: BlobType::Data,
                id,
                raw_len: data.len() as u32,
                sealed: r.seal_blob(BlobType::Data, &id, &data).unwrap(),
            }
        };
        let packer = Packer::new(&r).unwrap();
        // Two blobs fill a pack; wait until its upload has failed, then fill another, whose
        // hand-over fails because the uploader has stopped.
        packer.add(blob(1)).unwrap();
        let _ = packer.add(blob(2));
        for _ in 0..1000 {
            if packer.has_failed() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(packer.has_failed());
        let _ = packer.add(blob(3));
        let _ = packer.add(blob(4));
        let e = packer.finish().unwrap_err().to_string();
        assert!(e.contains("injected fault: writes of Pack fail"), "{e}");
    }

    /// Packs stored before an upload failure are indexed, not left for adoption.
    #[test]
    fn packs_stored_before_a_failure_are_indexed() {
        use crate::backend::fault::FaultBackend;
        use crate::backend::opendal::OpendalBackend;
        use crate::backend::{Backend, FileType};
        use crate::repo::InitOptions;
        use std::sync::Arc;

        let inner: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let faulty: Arc<dyn Backend> =
            Arc::new(FaultBackend::new(inner.clone()).fail_writes_of_after(FileType::Pack, 1));
        let opts = InitOptions {
            pack_size: 1 << 20,
            ..crate::repo::tests::cheap_options()
        };
        let r = Repository::init(faulty, b"pw", &opts).unwrap();
        let packer = Packer::new(&r).unwrap();
        for i in 0..6 {
            let data = crate::format::vectors::samples::pseudo_random(700_000, 100 + i);
            let id = r.blob_id(&data);
            let sealed = r.seal_blob(BlobType::Data, &id, &data).unwrap();
            let _ = packer.add(SealedBlob {
                blob_type: BlobType::Data,
                id,
                raw_len: data.len() as u32,
                sealed,
            });
        }
        let e = packer.finish().unwrap_err().to_string();
        assert!(e.contains("writes of Pack fail after 1"), "{e}");
        let stored = inner.list(FileType::Pack).unwrap();
        assert_eq!(stored.len(), 1);
        let index = r.load_index_files().unwrap();
        assert!(index.has_pack(&PackId(stored[0].0)));
        assert!(r.orphan_packs(&index).unwrap().is_empty());
    }

    #[test]
    fn assembled_pack_is_shuffled_padded_named_and_readable() {
        let r = repo();
        let input: Vec<BlobId> = blobs(&r, 32).iter().map(|b| b.id).collect();
        let mut orders = std::collections::HashSet::new();
        for _ in 0..4 {
            let bl = blobs(&r, 32);
            let body: usize = bl.iter().map(|b| b.sealed.len()).sum();
            let p = assemble(&r, bl).unwrap();
            let bytes = p.parts.concat();
            assert_eq!(p.len, bytes.len() as u64);
            assert_eq!(p.id.0, Id::of_stored(&bytes));
            assert!(
                bytes.len() > body + 8,
                "header and trailer follow the blobs"
            );
            let header = r.pack_header_from_bytes(&p.id, &bytes).unwrap();
            assert_eq!(header.entries, p.entries);
            let mut ids: Vec<BlobId> = p.entries.iter().map(|e| e.id).collect();
            orders.insert(ids.clone());
            for e in &p.entries {
                let sealed = &bytes[e.offset as usize..e.end() as usize];
                assert!(r.open_blob(e, sealed).is_ok());
            }
            ids.sort();
            let mut want = input.clone();
            want.sort();
            assert_eq!(ids, want);
        }
        // 32! orders: four identical shuffles would mean no shuffling.
        assert!(orders.len() > 1, "blob order is not randomised");
    }
}
