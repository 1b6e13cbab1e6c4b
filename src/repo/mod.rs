//! A repository: storage, keys and format composed into typed operations.
//!
//! Owns opening and creating repositories, sealing and opening stored objects, reading blobs
//! through the index, and saving/loading snapshots and index files. The algorithms that use
//! these (backup, restore, check) live in [`crate::ops`].

pub mod index;
pub mod index_files;
pub mod keys;
pub mod lock;
pub mod packer;

use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::{Backend, ErrorKind, FileType};
use crate::chunker::Chunker;
use crate::compress;
use crate::crypto::{self, MasterKey};
use crate::error::{Error, Result};
use crate::format::config::{ChunkerParams, Config, MAX_CONFIG_LEN, REPO_FORMAT_VERSION};
use crate::format::key::KdfParams;
use crate::format::pack::{self, BlobType, MAX_BLOB_LEN, PackHeader};
use crate::format::snapshot::{MAX_SNAPSHOT_LEN, Snapshot};
use crate::format::{
    self as fmt, ObjectKind, PAYLOAD_RAW, PAYLOAD_ZSTD, check_header, header, split_payload,
};
use crate::id::{BlobId, Id, KeyId, PackId, SnapshotId};
pub use index::{BlobLocation, Index};
pub use index_files::{Adoption, IndexWriter};

/// Bytes read from a pack's end to find its header in one request (restic reads 15 KiB).
const TAIL_GUESS: u64 = 64 << 10;

/// Header, seal and payload flag around a sealed metadata object's content (FORMAT §8, §20).
pub const METADATA_OVERHEAD: u64 = 49;

/// Blobs per index file at most (48 bytes each encoded: about 3 MiB). Small files keep the
/// loader's transient memory small (each loading thread holds one file twice, decrypted and
/// decoded) at the price of more objects: 77 files for 5 million blobs. restic's are 50,000.
pub const INDEX_FILE_BLOBS: usize = 65_536;

/// Blobs per batch when the index is walked pack by pack (`Index::pack_batches`): each batch
/// is one pass over the whole index and one by-pack copy of its entries (about 19 MiB).
pub const PACK_BATCH_BLOBS: usize = 400_000;

/// Parameters fixed when a repository is created.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunk sizes.
    pub chunker: ChunkerParams,
    /// Pack target size in bytes.
    pub pack_size: u32,
    /// zstd level.
    pub compression_level: i32,
    /// Argon2id costs for the first key.
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            chunker: ChunkerParams::DEFAULT,
            pack_size: Config::DEFAULT_PACK_SIZE,
            compression_level: Config::DEFAULT_COMPRESSION_LEVEL,
            kdf: KdfParams::DEFAULT,
        }
    }
}

struct Inner {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    key_id: KeyId,
    config: Config,
    chunker: Chunker,
}

/// An open repository. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.inner.backend.location())
            .finish_non_exhaustive()
    }
}

fn not_found_as_repo_missing(e: Error, location: &str) -> Error {
    if e.is_not_found() {
        Error::RepoNotFound {
            location: location.to_owned(),
        }
    } else {
        e
    }
}

/// A repository's sealed config as stored, from [`Repository::locate`]: found and plausible,
/// not yet decrypted.
#[derive(Debug)]
pub struct Located {
    config: Vec<u8>,
}

impl Repository {
    /// Creates a repository: folders, a fresh master key wrapped under `passphrase`, then the
    /// config last (its presence is what makes the folder a repository).
    pub fn init(backend: Arc<dyn Backend>, passphrase: &[u8], opts: &InitOptions) -> Result<Self> {
        let key = MasterKey::generate()?;
        Self::init_with_key(backend, passphrase, opts, key)
    }

    /// [`Repository::init`] for a repository that shares `from`'s chunker parameters, id key
    /// and chunker key, with its own encryption key and repository id
    /// (`init --copy-chunker-params-from`, docs/FORMAT.md §9, §10): `copy` between the two
    /// then moves blobs under their ids without re-chunking. `opts.chunker` is ignored.
    pub fn init_sharing_keys(
        backend: Arc<dyn Backend>,
        passphrase: &[u8],
        opts: &InitOptions,
        from: &Repository,
    ) -> Result<Self> {
        let key = from.master_key().with_new_encryption_key()?;
        let opts = InitOptions {
            chunker: from.config().chunker,
            ..opts.clone()
        };
        Self::init_with_key(backend, passphrase, &opts, key)
    }

    fn init_with_key(
        backend: Arc<dyn Backend>,
        passphrase: &[u8],
        opts: &InitOptions,
        key: MasterKey,
    ) -> Result<Self> {
        let location = backend.location();
        match backend.size(FileType::Config, &Id::default()) {
            Ok(_) => return Err(Error::RepoExists { location }),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        opts.chunker.validate()?;
        // Key files without a config: an earlier init stopped before writing the config, or
        // the config was removed. A second key (another master key) would make the folder
        // ambiguous, so refuse and say how to recover.
        match backend.list(FileType::Key) {
            Ok(k) if !k.is_empty() => return Err(Error::KeysWithoutConfig { location }),
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        backend.create().map_err(|e| {
            if e.kind == ErrorKind::AlreadyExists {
                Error::RepoExists {
                    location: location.clone(),
                }
            } else {
                e.into()
            }
        })?;
        let key_id = keys::add_key(
            &*backend,
            &key,
            passphrase,
            opts.kdf,
            &crate::host::hostname(),
            &crate::host::username(),
        )?;
        let mut repo_id = [0u8; 32];
        crypto::random_bytes(&mut repo_id)?;
        let config = Config::new(
            repo_id,
            opts.chunker,
            opts.pack_size,
            opts.compression_level,
        );
        // Round-trip through the decoder so init never writes a config open() would refuse.
        let plain = config.encode();
        Config::decode(&plain)?;
        let h = header(ObjectKind::Config);
        let mut bytes = h.to_vec();
        bytes.extend_from_slice(&key.seal(&h, &plain)?);
        backend.write(FileType::Config, &Id::default(), bytes)?;
        Ok(Self::assemble(backend, key, key_id, config))
    }

    /// Opens a repository with any of its passphrases: [`Repository::locate`], then
    /// [`Repository::open_located`].
    pub fn open(backend: Arc<dyn Backend>, passphrase: &[u8]) -> Result<Self> {
        let located = Self::locate(&*backend)?;
        Self::open_located(backend, located, passphrase)
    }

    /// The half of opening that needs no passphrase: the config, found, within its cap and
    /// of a format this build reads. A command calls it before asking for a passphrase, so
    /// a mistyped location or a newer repository says so at once, not after a prompt and
    /// the KDF (and the config is stat'ed and read once per run, not once per check).
    pub fn locate(backend: &dyn Backend) -> Result<Located> {
        let location = backend.location();
        let size = backend
            .size(FileType::Config, &Id::default())
            .map_err(|e| not_found_as_repo_missing(e.into(), &location))?;
        let cap = MAX_CONFIG_LEN + METADATA_OVERHEAD;
        if size > cap {
            return Err(Error::corrupt(
                "config",
                "config",
                format!("{size} bytes stored, more than the {cap}-byte cap"),
            ));
        }
        // A ranged read of the size just stat'ed: a short read is an error (which the retry
        // layer retries), where a whole-object read could only hand the truncated bytes on
        // (the config is not named by its hash, so nothing else would catch them).
        let config = backend
            .read_range(FileType::Config, &Id::default(), 0, size)
            .map_err(|e| not_found_as_repo_missing(e.into(), &location))?;
        check_header(&config, ObjectKind::Config)?;
        Ok(Located { config })
    }

    /// Opens the repository [`Repository::locate`] found, through `backend` (the same
    /// storage, possibly behind a cache), with any of its passphrases. Every key the
    /// passphrase unwraps is tried against the config, so a stray key file (another master
    /// key) cannot shadow the right one.
    pub fn open_located(
        backend: Arc<dyn Backend>,
        located: Located,
        passphrase: &[u8],
    ) -> Result<Self> {
        let body = check_header(&located.config, ObjectKind::Config)?;
        let open_config = |key: &MasterKey| key.open(&header(ObjectKind::Config), body);
        let (key, key_id) = keys::open_master(&*backend, passphrase, &|k| open_config(k).is_ok())?;
        let plain = open_config(&key).map_err(|e| Error::corrupt("repository", "config", e))?;
        let config = Config::decode(&plain).map_err(|e| match e {
            // A newer repository version or feature: refuse it as such, never as damage.
            e @ fmt::FormatError::NewerRepository { .. } => Error::Format(e),
            e => Error::corrupt("repository", "config", e),
        })?;
        Ok(Self::assemble(backend, key, key_id, config))
    }

    /// Raises a repository of format 1 or 2 to [`REPO_FORMAT_VERSION`] (3), for operations
    /// that write what only version-3 readers understand (pending-deletion packs in index
    /// files, maintenance locks): the config is re-sealed with the new `format_version`, its
    /// features unchanged, and replaced atomically, the only object ever replaced
    /// (docs/FORMAT.md §10, §18). From then on older cista versions refuse the repository as
    /// newer rather than misread it. Read back and checked before it is trusted. Returns the
    /// repository with the new config (`self` unchanged when it is already at version 3).
    pub fn upgrade_format(&self) -> Result<Self> {
        if self.config().format_version >= REPO_FORMAT_VERSION {
            return Ok(self.clone());
        }
        let config = Config {
            format_version: REPO_FORMAT_VERSION,
            ..self.config().clone()
        };
        let plain = config.encode();
        if Config::decode(&plain)? != config {
            return Err(Error::corrupt(
                "config",
                "config",
                "the upgraded config does not decode to itself",
            ));
        }
        let bytes = self.seal_object(ObjectKind::Config, &plain)?;
        self.backend().replace_config(bytes)?;
        // Verify after write: what is stored now is what we meant.
        let stored = self.backend().read(FileType::Config, &Id::default())?;
        let body = check_header(&stored, ObjectKind::Config)?;
        let reread = self
            .inner
            .key
            .open(&header(ObjectKind::Config), body)
            .map_err(|e| Error::corrupt("config", "config", e))
            .and_then(|p| Ok(Config::decode(&p)?))?;
        if reread != config {
            return Err(Error::corrupt(
                "config",
                "config",
                "the config read back after the upgrade differs from the one written (another process replaced it?)",
            ));
        }
        Ok(Self::assemble(
            self.backend_arc(),
            self.inner.key.clone(),
            self.inner.key_id,
            config,
        ))
    }

    fn assemble(backend: Arc<dyn Backend>, key: MasterKey, key_id: KeyId, config: Config) -> Self {
        let chunker = Chunker::new(config.chunker, key.gear_table());
        Self {
            inner: Arc::new(Inner {
                backend,
                key,
                key_id,
                config,
                chunker,
            }),
        }
    }

    /// The storage.
    pub fn backend(&self) -> &dyn Backend {
        &*self.inner.backend
    }

    /// This open repository over another stack of the same storage: the CLI adds the
    /// metadata cache ([`crate::backend::cache`]) once the config has named the repository,
    /// without opening a key again.
    pub fn with_backend(&self, backend: Arc<dyn Backend>) -> Self {
        Self::assemble(
            backend,
            self.inner.key.clone(),
            self.inner.key_id,
            self.inner.config.clone(),
        )
    }

    /// The storage, shareable.
    pub fn backend_arc(&self) -> Arc<dyn Backend> {
        self.inner.backend.clone()
    }

    /// The repository parameters.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The repository id in hex.
    pub fn id_hex(&self) -> String {
        hex::encode(self.inner.config.repo_id)
    }

    /// The key file this session was opened with.
    pub fn key_id(&self) -> KeyId {
        self.inner.key_id
    }

    /// The master key (for adding key files).
    pub fn master_key(&self) -> &MasterKey {
        &self.inner.key
    }

    /// The chunker with this repository's secret gear table.
    pub fn chunker(&self) -> &Chunker {
        &self.inner.chunker
    }

    /// Whether `other` cuts and names content exactly as this repository does: the same
    /// chunker parameters, id key and chunker key (`init --copy-chunker-params-from`). Then a
    /// blob has the same id in both and trees can be copied unchanged.
    pub fn shares_content_keys(&self, other: &Repository) -> bool {
        self.config().chunker == other.config().chunker
            && self.inner.key.shares_content_keys(&other.inner.key)
    }

    /// Keyed id of a blob plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        self.inner.key.blob_id(plaintext)
    }

    /// `header || seal(header, plaintext)`: the stored form of config, index, snapshot, lock.
    pub fn seal_object(&self, kind: ObjectKind, plaintext: &[u8]) -> Result<Vec<u8>> {
        let h = header(kind);
        let sealed = self.inner.key.seal(&h, plaintext)?;
        let mut out = Vec::with_capacity(h.len() + sealed.len());
        out.extend_from_slice(&h);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Checks a stored object's name and header and opens it. `id` is its storage name.
    pub fn open_object(&self, kind: ObjectKind, id: &Id, bytes: &[u8]) -> Result<Vec<u8>> {
        let body = sealed_body(kind, id, bytes)?;
        self.inner
            .key
            .open(&header(kind), body)
            .map_err(|e| Error::corrupt(kind.name(), id, e))
    }

    /// [`Repository::open_object`] decrypting in place: returns `bytes` and where the
    /// plaintext lies in it, so a large object (an index file) is never held twice.
    pub(crate) fn open_object_in_place(
        &self,
        kind: ObjectKind,
        id: &Id,
        bytes: &mut [u8],
    ) -> Result<std::ops::Range<usize>> {
        let start = bytes.len() - sealed_body(kind, id, bytes)?.len();
        let plain = self
            .inner
            .key
            .open_in_place(&header(kind), &mut bytes[start..])
            .map_err(|e| Error::corrupt(kind.name(), id, e))?;
        Ok(start + plain.start..start + plain.end)
    }

    /// Reads a sealed metadata object whole after checking its stored size (from a listing
    /// when given, else from a stat) against `content_cap` plus [`METADATA_OVERHEAD`], as
    /// FORMAT §8 step 1 requires: an oversized object is reported damaged unread.
    pub(crate) fn read_metadata_object(
        &self,
        t: FileType,
        id: &Id,
        listed: Option<u64>,
        content_cap: u64,
    ) -> Result<Vec<u8>> {
        let size = match listed {
            Some(n) => n,
            None => self.backend().size(t, id)?,
        };
        let max = content_cap + METADATA_OVERHEAD;
        let what = match t {
            FileType::Index => "index file",
            FileType::Snapshot => "snapshot",
            FileType::Lock => "lock",
            FileType::Key => "key file",
            FileType::Config => "config",
            FileType::Pack => "pack",
        };
        if size > max {
            return Err(Error::corrupt(
                what,
                id,
                format!("{size} bytes stored, more than the {max}-byte cap"),
            ));
        }
        let bytes = self.backend().read(t, id)?;
        // The object may have been replaced between the stat and the read.
        if bytes.len() as u64 > max {
            return Err(Error::corrupt(what, id, "larger than its cap"));
        }
        Ok(bytes)
    }

    /// A payload-framed plaintext: flag byte, then the body, zstd-compressed when that helps.
    pub(crate) fn frame_payload(&self, body: &[u8]) -> Vec<u8> {
        match compress::compress(body, self.inner.config.compression_level) {
            Some(c) => [&[PAYLOAD_ZSTD][..], &c].concat(),
            None => [&[PAYLOAD_RAW][..], body].concat(),
        }
    }

    fn unframe_payload(
        plain: &[u8],
        max: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, fmt::FormatError> {
        let (compressed, body) = split_payload(plain, what)?;
        if compressed {
            compress::decompress_capped(body, max, what)
        } else {
            Ok(body.to_vec())
        }
    }

    /// Compresses (when it helps) and seals a blob for a pack: one allocation, the sealed
    /// output; compression uses the calling thread's reusable context and buffer.
    pub fn seal_blob(&self, blob_type: BlobType, id: &BlobId, plaintext: &[u8]) -> Result<Vec<u8>> {
        let ad = pack::blob_ad(blob_type, id);
        let level = self.inner.config.compression_level;
        let sealed = compress::with_compressed(plaintext, level, |c| match c {
            Some(c) => self.inner.key.seal_parts(&ad, &[&[PAYLOAD_ZSTD], c]),
            None => self.inner.key.seal_parts(&ad, &[&[PAYLOAD_RAW], plaintext]),
        })?;
        Ok(sealed)
    }

    /// Opens a sealed blob and checks its plaintext against its id.
    pub fn open_blob(&self, entry: &pack::PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
        self.open_blob_owned(entry, sealed.to_vec())
    }

    /// [`Repository::open_blob`] on a buffer it may reuse: decrypted in place, and a raw
    /// payload is returned in the same allocation.
    pub fn open_blob_owned(&self, entry: &pack::PackEntry, mut sealed: Vec<u8>) -> Result<Vec<u8>> {
        let what = "blob";
        let plain = self
            .inner
            .key
            .open_in_place(&pack::blob_ad(entry.blob_type, &entry.id), &mut sealed)
            .map_err(|e| Error::corrupt(what, entry.id, e))?;
        let (compressed, body) = split_payload(&sealed[plain.clone()], what)
            .map_err(|e| Error::corrupt(what, entry.id, e))?;
        let data = if compressed {
            compress::decompress_exact(body, entry.raw_len as usize, what)
                .map_err(|e| Error::corrupt(what, entry.id, e))?
        } else {
            // Keep the allocation: drop the tag, then the nonce and flag (one move).
            sealed.truncate(plain.end);
            sealed.drain(..plain.start + 1);
            sealed
        };
        if data.len() != entry.raw_len as usize {
            return Err(Error::corrupt(
                what,
                entry.id,
                "length differs from the index",
            ));
        }
        if self.blob_id(&data) != entry.id {
            return Err(Error::corrupt(
                what,
                entry.id,
                "contents do not match the id",
            ));
        }
        Ok(data)
    }

    /// Re-seals one of this repository's sealed blobs for `target`, which must share its
    /// content keys ([`Repository::shares_content_keys`]) so the blob keeps its id and
    /// associated data. The blob is opened and verified here (authentication, length, id),
    /// then the same payload-framed plaintext, compressed or raw as it was stored, is sealed
    /// with the target's encryption key: `copy` moves a blob without recompressing it.
    pub fn reseal_blob_for(
        &self,
        target: &Repository,
        entry: &pack::PackEntry,
        sealed: &mut [u8],
    ) -> Result<Vec<u8>> {
        let what = "blob";
        if entry.raw_len > MAX_BLOB_LEN {
            return Err(Error::corrupt(what, entry.id, "larger than the blob cap"));
        }
        let ad = pack::blob_ad(entry.blob_type, &entry.id);
        let plain = self
            .inner
            .key
            .open_in_place(&ad, sealed)
            .map_err(|e| Error::corrupt(what, entry.id, e))?;
        let framed = &sealed[plain];
        let (compressed, body) =
            split_payload(framed, what).map_err(|e| Error::corrupt(what, entry.id, e))?;
        let raw_len = entry.raw_len as usize;
        let matches = if compressed {
            let data = compress::decompress_exact(body, raw_len, what)
                .map_err(|e| Error::corrupt(what, entry.id, e))?;
            data.len() == raw_len && self.blob_id(&data) == entry.id
        } else {
            body.len() == raw_len && self.blob_id(body) == entry.id
        };
        if !matches {
            return Err(Error::corrupt(
                what,
                entry.id,
                "contents do not match the id",
            ));
        }
        Ok(target.inner.key.seal(&ad, framed)?)
    }

    /// [`Repository::open_blob`] without allocating: opens `sealed` in place (its bytes are
    /// plaintext, or garbage, afterwards) and returns the verified content: inside `sealed`
    /// for a raw payload (incompressible data is never copied), else decompressed into
    /// `out`, whose allocation is reused from call to call (the restore and check read paths
    /// keep one per worker).
    pub fn open_blob_into<'a>(
        &self,
        entry: &pack::PackEntry,
        sealed: &'a mut [u8],
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        let what = "blob";
        let plain = self
            .inner
            .key
            .open_in_place(&pack::blob_ad(entry.blob_type, &entry.id), sealed)
            .map_err(|e| Error::corrupt(what, entry.id, e))?;
        let sealed: &'a [u8] = sealed;
        let (compressed, body) =
            split_payload(&sealed[plain], what).map_err(|e| Error::corrupt(what, entry.id, e))?;
        let data: &'a [u8] = if compressed {
            compress::decompress_exact_into(body, entry.raw_len as usize, out, what)
                .map_err(|e| Error::corrupt(what, entry.id, e))?;
            out
        } else {
            body
        };
        if data.len() != entry.raw_len as usize {
            return Err(Error::corrupt(
                what,
                entry.id,
                "length differs from the index",
            ));
        }
        if self.blob_id(data) != entry.id {
            return Err(Error::corrupt(
                what,
                entry.id,
                "contents do not match the id",
            ));
        }
        Ok(data)
    }

    /// Reads, opens and verifies one blob: from its preferred location ([`Index::get`]: a
    /// live pack if one holds it), and when that fails (a damaged copy, or an obsolete pack a
    /// prune has deleted), from each other location in turn. The first failure is returned
    /// when none succeeds.
    pub fn read_blob(&self, index: &Index, id: &BlobId) -> Result<Vec<u8>> {
        let loc = index
            .get(id)
            .ok_or_else(|| Error::corrupt("blob", id, "not in any index"))?;
        let first = match self.read_blob_at(&loc) {
            Ok(b) => return Ok(b),
            Err(e) => e,
        };
        for other in index.locations(id).iter().filter(|l| **l != loc) {
            if let Ok(b) = self.read_blob_at(other) {
                return Ok(b);
            }
        }
        Err(first)
    }

    fn read_blob_at(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        let id = &loc.entry.id;
        let e = loc.entry;
        // Both lengths before reading: the sealed length decides the allocation, and no
        // valid blob seals to more than its raw content plus the flag and the seal.
        if e.raw_len > MAX_BLOB_LEN || e.length > MAX_BLOB_LEN + pack::SEAL_OVERHEAD + 1 {
            return Err(Error::corrupt("blob", id, "larger than the blob cap"));
        }
        let sealed = self.backend().read_range(
            FileType::Pack,
            &loc.pack.0,
            u64::from(e.offset),
            u64::from(e.length),
        )?;
        self.open_blob_owned(&e, sealed)
    }

    /// Loads a tree blob.
    pub fn read_tree(&self, index: &Index, id: &BlobId) -> Result<crate::format::tree::Tree> {
        let bytes = self.read_blob(index, id)?;
        crate::format::tree::Tree::decode(&bytes).map_err(|e| Error::corrupt("tree", id, e))
    }

    /// Reads and verifies a pack's header (the trailer, then the sealed header).
    pub fn read_pack_header(&self, id: &PackId, pack_len: u64) -> Result<PackHeader> {
        // One ranged read of the tail usually holds trailer and header together.
        let guess = pack_len.min(TAIL_GUESS);
        let tail = self
            .backend()
            .read_range(FileType::Pack, &id.0, pack_len - guess, guess)?;
        match self.pack_header_in_tail(id, pack_len, &tail) {
            Ok(h) => Ok(h),
            Err(None) => {
                let (start, end) = self.header_range_of(id, pack_len, &tail)?;
                let sealed =
                    self.backend()
                        .read_range(FileType::Pack, &id.0, start, end - start)?;
                self.open_pack_header(id, start, &sealed)
            }
            Err(Some(e)) => Err(e),
        }
    }

    /// Parses the header of a pack held whole in memory.
    pub fn pack_header_from_bytes(&self, id: &PackId, bytes: &[u8]) -> Result<PackHeader> {
        self.pack_header_in_tail(id, bytes.len() as u64, bytes)
            .map_err(|e| e.unwrap_or_else(|| Error::corrupt("pack", id, "header outside the pack")))
    }

    fn header_range_of(&self, id: &PackId, pack_len: u64, tail: &[u8]) -> Result<(u64, u64)> {
        let t: [u8; pack::TRAILER_LEN] = tail
            .last_chunk::<{ pack::TRAILER_LEN }>()
            .copied()
            .ok_or_else(|| Error::corrupt("pack", id, "shorter than its trailer"))?;
        pack::header_range(pack_len, t).map_err(|e| Error::corrupt("pack", id, e))
    }

    /// The header, if `tail` (the last bytes of the pack) contains it; `Err(None)` if more
    /// bytes are needed.
    fn pack_header_in_tail(
        &self,
        id: &PackId,
        pack_len: u64,
        tail: &[u8],
    ) -> Result<PackHeader, Option<Error>> {
        let (start, end) = self.header_range_of(id, pack_len, tail).map_err(Some)?;
        let tail_start = pack_len - tail.len() as u64;
        if start < tail_start {
            return Err(None);
        }
        let sealed = &tail[(start - tail_start) as usize..(end - tail_start) as usize];
        self.open_pack_header(id, start, sealed).map_err(Some)
    }

    fn open_pack_header(&self, id: &PackId, start: u64, sealed: &[u8]) -> Result<PackHeader> {
        let plain = self
            .inner
            .key
            .open(&pack::pack_header_ad(), sealed)
            .map_err(|e| Error::corrupt("pack", id, e))?;
        PackHeader::decode(&plain, start).map_err(|e| Error::corrupt("pack", id, e))
    }

    /// Stores a snapshot; returns its id.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        let bytes = self.seal_object(ObjectKind::Snapshot, &self.frame_payload(&snap.encode()))?;
        let id = Id::of_stored(&bytes);
        self.backend().write(FileType::Snapshot, &id, bytes)?;
        Ok(SnapshotId(id))
    }

    /// Loads one snapshot.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        self.load_snapshot_listed(id, None)
    }

    /// [`Repository::load_snapshot`] with the stored size from a listing, if known.
    pub(crate) fn load_snapshot_listed(
        &self,
        id: &SnapshotId,
        listed: Option<u64>,
    ) -> Result<Snapshot> {
        let bytes =
            self.read_metadata_object(FileType::Snapshot, &id.0, listed, MAX_SNAPSHOT_LEN)?;
        let plain = self.open_object(ObjectKind::Snapshot, &id.0, &bytes)?;
        let body = Self::unframe_payload(&plain, MAX_SNAPSHOT_LEN, "snapshot")
            .map_err(|e| Error::corrupt("snapshot", id, e))?;
        Snapshot::decode(&body).map_err(|e| Error::corrupt("snapshot", id, e))
    }

    /// Every readable snapshot, oldest first. Damaged snapshots are skipped here (one bad
    /// object must not hide the rest); [`Repository::scan_snapshots`] reports them and
    /// `check` counts them as errors.
    pub fn list_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        Ok(self.scan_snapshots()?.0)
    }

    /// Every snapshot, oldest first, and the ones that could not be read with why. A snapshot
    /// removed between the listing and the read is left out; storage errors other than
    /// damage (a failing listing) are still errors.
    #[allow(clippy::type_complexity)]
    pub fn scan_snapshots(
        &self,
    ) -> Result<(Vec<(SnapshotId, Snapshot)>, Vec<(SnapshotId, Error)>)> {
        let ids = self.backend().list(FileType::Snapshot)?;
        let loaded: Vec<(SnapshotId, Result<Snapshot>)> = ids
            .par_iter()
            .map(|(id, len)| {
                let id = SnapshotId(*id);
                (id, self.load_snapshot_listed(&id, Some(*len)))
            })
            .collect();
        let (mut ok, mut damaged) = (Vec::new(), Vec::new());
        for (id, r) in loaded {
            match r {
                Ok(s) => ok.push((id, s)),
                Err(e @ Error::Corrupt { .. }) => damaged.push((id, e)),
                // Removed since the listing (a forget running beside): it is not there.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        ok.sort_by(|a, b| a.1.time_unix_ns.cmp(&b.1.time_unix_ns).then(a.0.cmp(&b.0)));
        Ok((ok, damaged))
    }

    /// Removes a key file, refusing the last one and the one this session was opened with.
    /// The caller holds the exclusive lock (FORMAT §17; [`crate::ops::session`]).
    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        if *id == self.key_id() {
            return Err(Error::InvalidInput(
                "refusing to remove the key you opened the repository with; open it with another key first".into(),
            ));
        }
        keys::remove_key(self.backend(), id)
    }

    /// Replaces the key this session was opened with by a new one for `passphrase`: the new
    /// key file is durable before the old one is removed. The caller holds the exclusive
    /// lock (FORMAT §17; [`crate::ops::session`]).
    pub fn change_passphrase(&self, passphrase: &[u8], kdf: KdfParams) -> Result<KeyId> {
        let new = self.add_key(passphrase, kdf)?;
        keys::remove_key(self.backend(), &self.key_id())?;
        Ok(new)
    }

    /// Adds another passphrase.
    pub fn add_key(&self, passphrase: &[u8], kdf: KdfParams) -> Result<KeyId> {
        keys::add_key(
            self.backend(),
            &self.inner.key,
            passphrase,
            kdf,
            &crate::host::hostname(),
            &crate::host::username(),
        )
    }
}

/// The sealed part of a stored metadata object, once its name matches its bytes and its
/// header is this kind's.
fn sealed_body<'a>(kind: ObjectKind, id: &Id, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let what = kind.name();
    if Id::of_stored(bytes) != *id {
        return Err(Error::corrupt(
            what,
            id,
            "contents do not match the name (bit rot or tampering)",
        ));
    }
    check_header(bytes, kind).map_err(|e| match e {
        // Not damage: a newer cista wrote it, and the answer is to upgrade, not delete.
        e @ fmt::FormatError::NewerVersion { .. } => Error::Format(e),
        e => Error::corrupt(what, id, e),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::opendal::OpendalBackend;
    use crate::format::pack::PackEntry;
    use proptest::prelude::*;

    /// Argon2id costs low enough for unit tests.
    pub(crate) const CHEAP_KDF: KdfParams = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    /// Default repository parameters with [`CHEAP_KDF`].
    pub(crate) fn cheap_options() -> InitOptions {
        InitOptions {
            kdf: CHEAP_KDF,
            ..InitOptions::default()
        }
    }

    /// A repository with a cheap KDF and the passphrase `pw` on `backend`.
    pub(crate) fn repo_on(backend: Arc<dyn Backend>) -> Repository {
        Repository::init(backend, b"pw", &cheap_options()).unwrap()
    }

    /// An in-memory repository with a cheap KDF, for unit tests of the layers above.
    pub(crate) fn repo() -> Repository {
        repo_on(Arc::new(OpendalBackend::memory().unwrap()))
    }

    #[test]
    fn blob_round_trip_and_swap_detection() {
        let r = &repo();
        let data = b"hello hello hello hello hello hello hello hello hello hello hello".repeat(20);
        let id = r.blob_id(&data);
        let sealed = r.seal_blob(BlobType::Data, &id, &data).unwrap();
        let entry = PackEntry {
            blob_type: BlobType::Data,
            id,
            offset: 8,
            length: sealed.len() as u32,
            raw_len: data.len() as u32,
        };
        assert_eq!(r.open_blob(&entry, &sealed).unwrap(), data);
        // The same bytes presented as another blob, or as a tree, must not open.
        let other = PackEntry {
            id: r.blob_id(b"other"),
            ..entry
        };
        assert!(r.open_blob(&other, &sealed).is_err());
        let as_tree = PackEntry {
            blob_type: BlobType::Tree,
            ..entry
        };
        assert!(r.open_blob(&as_tree, &sealed).is_err());
        let wrong_len = PackEntry {
            raw_len: entry.raw_len - 1,
            ..entry
        };
        assert!(r.open_blob(&wrong_len, &sealed).is_err());
    }

    #[test]
    fn a_blob_resealed_for_a_repository_sharing_keys_opens_there_only() {
        let src = &repo();
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let dst = &Repository::init_sharing_keys(mem, b"pw2", &cheap_options(), src).unwrap();
        let other = &repo();
        assert!(src.shares_content_keys(dst) && dst.shares_content_keys(src));
        assert!(!src.shares_content_keys(other));
        assert_ne!(src.id_hex(), dst.id_hex());
        for data in [b"tiny".to_vec(), b"compressible ".repeat(500)] {
            let id = src.blob_id(&data);
            assert_eq!(dst.blob_id(&data), id);
            let mut sealed = src.seal_blob(BlobType::Data, &id, &data).unwrap();
            let entry = PackEntry {
                blob_type: BlobType::Data,
                id,
                offset: 8,
                length: sealed.len() as u32,
                raw_len: data.len() as u32,
            };
            let resealed = src
                .reseal_blob_for(dst, &entry, &mut sealed.clone())
                .unwrap();
            // Same framed payload, so the same length: compression is kept, not redone.
            assert_eq!(resealed.len(), sealed.len());
            assert_eq!(dst.open_blob(&entry, &resealed).unwrap(), data);
            assert!(src.open_blob(&entry, &resealed).is_err());
            // A blob under the wrong id, or damaged, is refused rather than copied.
            let wrong = PackEntry {
                id: src.blob_id(b"other"),
                ..entry
            };
            assert!(
                src.reseal_blob_for(dst, &wrong, &mut sealed.clone())
                    .is_err()
            );
            sealed[30] ^= 1;
            assert!(matches!(
                src.reseal_blob_for(dst, &entry, &mut sealed),
                Err(Error::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn sealed_object_kind_is_bound() {
        let r = &repo();
        let bytes = r.seal_object(ObjectKind::Lock, b"x").unwrap();
        let id = Id::of_stored(&bytes);
        assert!(r.open_object(ObjectKind::Lock, &id, &bytes).is_ok());
        // Relabelled as a snapshot: the header check or the AEAD must refuse it.
        let mut relabelled = bytes.clone();
        relabelled[4] = ObjectKind::Snapshot as u8;
        let rid = Id::of_stored(&relabelled);
        assert!(
            r.open_object(ObjectKind::Snapshot, &rid, &relabelled)
                .is_err()
        );
        // Wrong name: bit rot is reported before decryption.
        assert!(
            r.open_object(ObjectKind::Lock, &Id::default(), &bytes)
                .is_err()
        );
    }

    /// Regression: caps were applied after reading whole objects; an object over its cap
    /// must be refused from its listed or stat'ed size, unread.
    #[test]
    fn oversized_objects_are_refused_before_reading() {
        use crate::backend::fault::{FaultBackend, Op};
        use crate::format::lock::MAX_LOCK_LEN;
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let fault = Arc::new(FaultBackend::new(mem));
        let r = repo_on(fault.clone());
        let big = vec![7u8; (MAX_LOCK_LEN + METADATA_OVERHEAD + 1) as usize];
        let id = Id::of_stored(&big);
        r.backend().write(FileType::Lock, &id, big.clone()).unwrap();
        r.backend()
            .write(FileType::Snapshot, &id, big.clone())
            .unwrap();
        let reads = fault.calls(Op::Read);
        let e = r
            .read_metadata_object(FileType::Lock, &id, None, MAX_LOCK_LEN)
            .unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("cap"), "{e}");
        // Locks over the cap are not locks: taking one is not blocked, and nothing was read.
        let me = crate::host::Host::this_process();
        drop(
            r.lock(crate::format::lock::LockMode::Exclusive, &me)
                .unwrap(),
        );
        assert_eq!(fault.calls(Op::Read), reads);
        // A small snapshot object within its cap is read (and found damaged by its contents).
        assert!(matches!(
            r.load_snapshot(&SnapshotId(id)),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn a_truncated_config_read_is_retried_not_taken_for_damage() {
        use crate::backend::fault::FaultBackend;
        use crate::backend::retry::{RetryBackend, RetryPolicy};
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let r = repo_on(mem.clone());
        // The next ranged read (the config's) comes back one byte short, as a connection
        // cut mid-body does; the config is not named by its hash, so only its length shows it.
        let cut = Arc::new(FaultBackend::new(mem).truncate_reads(1));
        let retrying = Arc::new(RetryBackend::with_policy(
            cut.clone(),
            RetryPolicy {
                base_delay: std::time::Duration::from_millis(1),
                ..RetryPolicy::default()
            },
        ));
        let again = Repository::open(retrying, b"pw").unwrap();
        assert_eq!(again.config(), r.config());
        assert_eq!(cut.injected(), 1);
    }

    /// A repository at format 2, as cista wrote them before version 3: the config is
    /// replaced by hand with a version-2 one.
    pub(crate) fn repo_at_version_2(backend: Arc<dyn Backend>) -> Repository {
        let r = repo_on(backend);
        let v2 = Config {
            format_version: 2,
            ..r.config().clone()
        };
        let bytes = r.seal_object(ObjectKind::Config, &v2.encode()).unwrap();
        r.backend().replace_config(bytes).unwrap();
        Repository::open(r.backend_arc(), b"pw").unwrap()
    }

    #[test]
    fn upgrade_raises_version_2_to_3_and_keeps_everything_else() {
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let r = repo_at_version_2(mem.clone());
        assert_eq!(r.config().format_version, 2);
        let up = r.upgrade_format().unwrap();
        assert_eq!(up.config().format_version, 3);
        assert_eq!(up.config().features, r.config().features);
        assert_eq!(up.config().repo_id, r.config().repo_id);
        // Opens again as version 3, with its data.
        let again = Repository::open(mem, b"pw").unwrap();
        assert_eq!(again.config(), up.config());
        assert!(again.list_snapshots().unwrap().is_empty());
        // Idempotent.
        assert_eq!(again.upgrade_format().unwrap().config(), up.config());
    }

    #[test]
    fn a_failed_upgrade_leaves_the_version_2_config() {
        use crate::backend::fault::FaultBackend;
        let mem: Arc<dyn Backend> = Arc::new(OpendalBackend::memory().unwrap());
        let r = repo_at_version_2(mem.clone());
        let failing = Arc::new(FaultBackend::new(mem.clone()).fail_writes_of(FileType::Config));
        let r2 = Repository::open(failing, b"pw").unwrap();
        assert!(r2.upgrade_format().is_err());
        assert_eq!(Repository::open(mem, b"pw").unwrap().config(), r.config());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn hostile_pack_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let r = &repo();
            let id = PackId(Id::of_stored(&bytes));
            prop_assert!(r.pack_header_from_bytes(&id, &bytes).is_err());
        }

        #[test]
        fn hostile_objects_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), kind in 0usize..4) {
            let r = &repo();
            let kind = [ObjectKind::Index, ObjectKind::Snapshot, ObjectKind::Lock, ObjectKind::Config][kind];
            prop_assert!(r.open_object(kind, &Id::of_stored(&bytes), &bytes).is_err());
        }

        #[test]
        fn hostile_blob_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), raw_len in any::<u32>()) {
            let r = &repo();
            let entry = PackEntry { blob_type: BlobType::Data, id: BlobId::default(), offset: 8, length: bytes.len() as u32, raw_len };
            prop_assert!(r.open_blob(&entry, &bytes).is_err());
        }
    }
}
