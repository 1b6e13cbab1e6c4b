//! Golden vectors (docs/FORMAT.md, every section): checks that the committed bytes in
//! `tests/vectors/` still pin each encoding, the key schedule, the AEAD framing and the chunk
//! boundaries, and that every `fail_*` object is rejected for its named reason.
//!
//! The inputs and the generator live in [`samples`]; the files were written once by its
//! ignored `regenerate` test. The checks here only read the committed files: a change that
//! makes one fail changes the repository format, and needs a new format version and an entry
//! in docs/FORMAT.md, "Changes", not a regenerated file.
//!
//! Samples use patterned bytes (`id(seed)` has 32 distinct bytes), negative integers and a
//! non-UTF-8 name, so byte order, sign handling and byte-string handling are all pinned.

pub(crate) mod samples;

use std::collections::BTreeSet;

use samples::*;

use super::config::Config;
use super::index::{IndexFile, MAX_INDEX_LEN};
use super::key::KeyFile;
use super::lock::Lock;
use super::pack::{BlobType, PackEntry, PackHeader, blob_ad, header_range, pack_header_ad};
use super::snapshot::{MAX_SNAPSHOT_LEN, Snapshot};
use super::tree::{NodeKind, Tree};
use super::{FormatError, HEADER_LEN, ObjectKind, check_header, header, split_payload};
use crate::compress::{decompress_capped, decompress_exact};
use crate::crypto::{self, CryptoError, MASTER_KEY_LEN, kdf};
use crate::id::SnapshotId;
use crate::id::{BlobId, Id};

/// The bytes of one committed vector; `.hex` files are decoded, whitespace ignored.
macro_rules! vector {
    ($name:literal) => {
        unhex(include_bytes!(concat!("../../tests/vectors/", $name)))
    };
}

fn unhex(text: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(digits).expect("vector files hold hex digits")
}

// ---- Golden encodings: encode == committed bytes, and decode gives the sample back ----

#[test]
fn headers() {
    let golden = [
        vector!("header_config.hex"),
        vector!("header_key.hex"),
        vector!("header_pack.hex"),
        vector!("header_pack_header.hex"),
        vector!("header_blob.hex"),
        vector!("header_index.hex"),
        vector!("header_snapshot.hex"),
        vector!("header_lock.hex"),
    ];
    for ((kind, name), g) in KINDS.iter().zip(golden) {
        assert_eq!(header(*kind).to_vec(), g, "{name}");
        assert_eq!(g[..4], *b"CSTA");
        assert_eq!((g[4], g[5], g[6], g[7]), (*kind as u8, 1, 0, 0), "{name}");
        assert_eq!(check_header(&g, *kind).unwrap(), b"");
    }
}

#[test]
fn config() {
    let g = vector!("config.hex");
    assert_eq!(sample_config().encode(), g);
    assert_eq!(Config::decode(&g).unwrap(), sample_config());
    let g = vector!("config_v2.hex");
    assert_eq!(sample_config_v2().encode(), g);
    assert_eq!(Config::decode(&g).unwrap(), sample_config_v2());
    let g = vector!("config_v3.hex");
    assert_eq!(sample_config_v3().encode(), g);
    assert_eq!(Config::decode(&g).unwrap(), sample_config_v3());
}

#[test]
fn key_file() {
    let g = vector!("key_file.hex");
    assert_eq!(sample_key_file().encode(), g);
    let k = KeyFile::decode(&g).unwrap();
    assert_eq!(k, sample_key_file());
    assert_eq!(k.wrap_ad(), vector!("key_wrap_ad.hex"));
}

#[test]
fn key_file_opens_with_the_passphrase() {
    let k = KeyFile::decode(&vector!("key_file.hex")).unwrap();
    let wrapping = kdf::derive(PASSPHRASE, k.kdf, &k.salt).unwrap();
    assert_eq!(wrapping.to_vec(), vector!("kdf_output.hex"));
    let set = crypto::open(&wrapping, &k.wrap_ad(), &k.wrapped).unwrap();
    assert_eq!(set.len(), MASTER_KEY_LEN);
    assert_eq!(set, master_key().to_bytes().to_vec());
    // The KDF parameters and salt are bound: altering either fails the unwrap.
    let mut t = k.clone();
    t.kdf.t += 1;
    assert_eq!(
        crypto::open(&wrapping, &t.wrap_ad(), &t.wrapped),
        Err(CryptoError::AuthFailed)
    );
}

#[test]
fn pack_header() {
    let g = vector!("pack_header.hex");
    assert_eq!(sample_pack_header().encode(), g);
    assert_eq!(
        PackHeader::decode(&g, PACK_HEADER_BLOBS_END).unwrap(),
        sample_pack_header()
    );
}

#[test]
fn index() {
    let g = vector!("index.hex");
    assert_eq!(sample_index().encode(), g);
    assert_eq!(IndexFile::decode(&g).unwrap(), sample_index());
    let g = vector!("index_obsolete.hex");
    assert_eq!(sample_index_obsolete().encode(), g);
    assert_eq!(IndexFile::decode(&g).unwrap(), sample_index_obsolete());
}

#[test]
fn tree() {
    let g = vector!("tree.hex");
    assert_eq!(sample_tree().encode(), g);
    assert_eq!(Tree::decode(&g).unwrap(), sample_tree());
}

#[test]
fn tree_parts() {
    let g = vector!("tree_parts.hex");
    assert_eq!(sample_tree_parts().encode(), g);
    assert_eq!(Tree::decode(&g).unwrap(), sample_tree_parts());
}

#[test]
fn snapshot() {
    let g = vector!("snapshot.hex");
    assert_eq!(sample_snapshot().encode(), g);
    assert_eq!(Snapshot::decode(&g).unwrap(), sample_snapshot());
    // A snapshot with the 14-field summary reads with `tree_blobs` 0 (FORMAT §16).
    let mut older = sample_snapshot();
    older.summary.tree_blobs = 0;
    assert_eq!(
        Snapshot::decode(&vector!("snapshot_summary14.hex")).unwrap(),
        older
    );
    // Version 3: `original` and `lost` after the summary (FORMAT §16, "Tail fields").
    let v3 = vector!("snapshot_v3.hex");
    assert_eq!(sample_snapshot_v3().encode(), v3);
    assert_eq!(Snapshot::decode(&v3).unwrap(), sample_snapshot_v3());
    assert_eq!(&v3[..g.len()], &g[..], "the version 2 bytes come first");
    // With `original` set, its 32 bytes follow the summary (FORMAT §16, "Original").
    let mut tagged = sample_snapshot();
    tagged.original = Some(SnapshotId(id(0x99)));
    let g = vector!("snapshot_original.hex");
    assert_eq!(tagged.encode(), g);
    assert_eq!(Snapshot::decode(&g).unwrap(), tagged);
}

#[test]
fn lock() {
    let g = vector!("lock.hex");
    assert_eq!(sample_lock().encode().unwrap(), g);
    assert_eq!(Lock::decode(&g).unwrap(), sample_lock());
    let g = vector!("lock_v3.hex");
    assert_eq!(sample_lock_v3().encode().unwrap(), g);
    assert_eq!(Lock::decode(&g).unwrap(), sample_lock_v3());
}

#[test]
fn blob_associated_data() {
    let ad = vector!("blob_ad.hex");
    assert_eq!(blob_ad(BlobType::Tree, &BlobId(id(0x88))).to_vec(), ad);
    assert_eq!(ad.len(), HEADER_LEN + 1 + 32);
    assert_eq!((ad[4], ad[HEADER_LEN]), (b'B', 1));
}

// ---- The same layouts built by hand from docs/FORMAT.md's tables, without bincode ----

fn le<const N: usize>(out: &mut Vec<u8>, bytes: [u8; N]) {
    out.extend_from_slice(&bytes);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    le(out, (s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

/// A 48-byte pack entry: type (u32), id, offset, length, raw_len.
fn entry_bytes(out: &mut Vec<u8>, e: &PackEntry) {
    le(out, u32::from(e.blob_type.code()).to_le_bytes());
    out.extend_from_slice(e.id.as_bytes());
    for v in [e.offset, e.length, e.raw_len] {
        le(out, v.to_le_bytes());
    }
}

#[test]
fn spec_tables_match_the_encoding() {
    // Config: repo_id[32] min avg max pack_size (u32) compression_level (i32), 52 bytes.
    let c = sample_config();
    let mut b = c.repo_id.to_vec();
    for v in [c.chunker.min, c.chunker.avg, c.chunker.max, c.pack_size] {
        le(&mut b, v.to_le_bytes());
    }
    le(&mut b, c.compression_level.to_le_bytes());
    assert_eq!(b.len(), 52);
    assert_eq!(b, vector!("config.hex"));
    // Format 2: the same 52 bytes, format_version u32, features Vec<String>.
    let c2 = sample_config_v2();
    le(&mut b, c2.format_version.to_le_bytes());
    le(&mut b, (c2.features.len() as u64).to_le_bytes());
    for f in &c2.features {
        string(&mut b, f.as_bytes());
    }
    assert_eq!(b.len(), 52 + 4 + 8 + 8 + 10);
    assert_eq!(b, vector!("config_v2.hex"));
    // Format 3: the same bytes with format_version 3.
    b[52..56].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(b, vector!("config_v3.hex"));

    // Lock, version 2: time i64, exclusive bool, hostname, username, pid u32.
    let l = sample_lock();
    let mut b = Vec::new();
    le(&mut b, l.time_unix_ns.to_le_bytes());
    b.push(u8::from(l.mode == super::lock::LockMode::Exclusive));
    string(&mut b, l.hostname.as_bytes());
    string(&mut b, l.username.as_bytes());
    le(&mut b, l.pid.to_le_bytes());
    assert_eq!(b, vector!("lock.hex"));
    // Version 3: the same with a mode byte (2: maintenance), then session [16], started i64.
    let l = sample_lock_v3();
    let mut b = Vec::new();
    le(&mut b, l.time_unix_ns.to_le_bytes());
    b.push(2);
    string(&mut b, l.hostname.as_bytes());
    string(&mut b, l.username.as_bytes());
    le(&mut b, l.pid.to_le_bytes());
    let session = l.session.unwrap();
    b.extend_from_slice(&session.id);
    le(&mut b, session.started_unix_ns.to_le_bytes());
    assert_eq!(b, vector!("lock_v3.hex"));

    // Pack header: u64 count, then 48-byte entries (type u32, id, offset, length, raw_len).
    let h = sample_pack_header();
    let mut b = Vec::new();
    le(&mut b, (h.entries.len() as u64).to_le_bytes());
    for e in &h.entries {
        entry_bytes(&mut b, e);
    }
    assert_eq!(b.len(), 8 + 48 * h.entries.len());
    assert_eq!(b, vector!("pack_header.hex"));

    // Key file: header, kdf (3 x u32), salt, created i64, hostname, username, wrapped.
    let k = sample_key_file();
    let mut b = header(ObjectKind::Key).to_vec();
    for v in [k.kdf.m_kib, k.kdf.t, k.kdf.p] {
        le(&mut b, v.to_le_bytes());
    }
    b.extend_from_slice(&k.salt);
    le(&mut b, k.created_unix_ns.to_le_bytes());
    string(&mut b, k.hostname.as_bytes());
    string(&mut b, k.username.as_bytes());
    string(&mut b, &k.wrapped);
    assert_eq!(b, vector!("key_file.hex"));

    // Wrap AD: key-file header, m, t, p (u32 LE), salt.
    let mut ad = header(ObjectKind::Key).to_vec();
    for v in [k.kdf.m_kib, k.kdf.t, k.kdf.p] {
        le(&mut ad, v.to_le_bytes());
    }
    ad.extend_from_slice(&k.salt);
    assert_eq!(ad, vector!("key_wrap_ad.hex"));
}

#[test]
fn spec_tables_match_nested_encodings() {
    // Index: supersedes (u64 count, ids), packs (u64 count; id, u64 count, entries).
    let f = sample_index();
    let mut b = Vec::new();
    le(&mut b, (f.supersedes.len() as u64).to_le_bytes());
    for i in &f.supersedes {
        b.extend_from_slice(i.as_bytes());
    }
    le(&mut b, (f.packs.len() as u64).to_le_bytes());
    for p in &f.packs {
        b.extend_from_slice(p.id.as_bytes());
        le(&mut b, (p.blobs.len() as u64).to_le_bytes());
        for e in &p.blobs {
            entry_bytes(&mut b, e);
        }
    }
    assert_eq!(b, vector!("index.hex"));

    // Index, version 3: the same two fields, then obsolete (u64 count; id, i64 marked time,
    // bool armed, u64 count of 16-byte sessions, u64 count of entries).
    let f = sample_index_obsolete();
    le(&mut b, (f.obsolete.len() as u64).to_le_bytes());
    for o in &f.obsolete {
        b.extend_from_slice(o.id.as_bytes());
        le(&mut b, o.marked_unix_ns.to_le_bytes());
        b.push(u8::from(o.armed));
        le(&mut b, (o.waiting_for.len() as u64).to_le_bytes());
        for w in &o.waiting_for {
            b.extend_from_slice(w);
        }
        le(&mut b, (o.blobs.len() as u64).to_le_bytes());
        for e in &o.blobs {
            entry_bytes(&mut b, e);
        }
    }
    assert_eq!(b, vector!("index_obsolete.hex"));

    // Tree: u64 count, then each node's fields; the kind is a u32 variant index and fields.
    let tree_bytes = |t: &Tree| {
        let mut b = Vec::new();
        le(&mut b, (t.nodes.len() as u64).to_le_bytes());
        for n in &t.nodes {
            string(&mut b, &n.name);
            match &n.kind {
                NodeKind::File { size, content } => {
                    le(&mut b, 0u32.to_le_bytes());
                    le(&mut b, size.to_le_bytes());
                    le(&mut b, (content.len() as u64).to_le_bytes());
                    for c in content {
                        b.extend_from_slice(c.as_bytes());
                    }
                }
                NodeKind::Dir { subtree } => {
                    le(&mut b, 1u32.to_le_bytes());
                    b.extend_from_slice(subtree.as_bytes());
                }
                NodeKind::Symlink { target } => {
                    le(&mut b, 2u32.to_le_bytes());
                    string(&mut b, target);
                }
                NodeKind::Fifo => le(&mut b, 3u32.to_le_bytes()),
                NodeKind::DirParts { parts } => {
                    le(&mut b, 4u32.to_le_bytes());
                    le(&mut b, (parts.len() as u64).to_le_bytes());
                    for p in parts {
                        b.extend_from_slice(p.as_bytes());
                    }
                }
            }
            for v in [n.mode, n.uid, n.gid] {
                le(&mut b, v.to_le_bytes());
            }
            for v in [n.mtime_ns, n.atime_ns, n.ctime_ns] {
                le(&mut b, v.to_le_bytes());
            }
            for v in [n.inode, n.device, n.links] {
                le(&mut b, v.to_le_bytes());
            }
            le(&mut b, (n.xattrs.len() as u64).to_le_bytes());
            for x in &n.xattrs {
                string(&mut b, &x.name);
                string(&mut b, &x.value);
            }
        }
        b
    };
    assert_eq!(tree_bytes(&sample_tree()), vector!("tree.hex"));
    assert_eq!(tree_bytes(&sample_tree_parts()), vector!("tree_parts.hex"));

    // Snapshot: the Option tag is one byte; the summary is 15 fixed 8-byte fields.
    let s = sample_snapshot();
    let mut b = Vec::new();
    le(&mut b, s.time_unix_ns.to_le_bytes());
    le(&mut b, s.tz_offset_s.to_le_bytes());
    string(&mut b, s.hostname.as_bytes());
    string(&mut b, s.username.as_bytes());
    le(&mut b, s.uid.to_le_bytes());
    le(&mut b, s.gid.to_le_bytes());
    for list in [&s.paths, &s.tags] {
        le(&mut b, (list.len() as u64).to_le_bytes());
        for p in list {
            string(&mut b, p.as_bytes());
        }
    }
    b.extend_from_slice(s.tree.as_bytes());
    match &s.parent {
        Some(p) => {
            b.push(1);
            b.extend_from_slice(p.as_bytes());
        }
        None => b.push(0),
    }
    string(&mut b, s.program_version.as_bytes());
    b.push(u8::from(s.incomplete));
    let m = &s.summary;
    for v in [
        m.files_new,
        m.files_changed,
        m.files_unmodified,
        m.dirs_new,
        m.dirs_changed,
        m.dirs_unmodified,
        m.data_blobs,
        m.data_added,
        m.data_added_packed,
        m.total_files_processed,
        m.total_bytes_processed,
    ] {
        le(&mut b, v.to_le_bytes());
    }
    le(&mut b, m.backup_start_ns.to_le_bytes());
    le(&mut b, m.backup_end_ns.to_le_bytes());
    le(&mut b, m.errors.to_le_bytes());
    le(&mut b, m.tree_blobs.to_le_bytes());
    assert_eq!(b, vector!("snapshot.hex"));
    // Tail fields: `original` as 32 bytes, then `Lost` (u64, u64, Vec<String>).
    let v3 = sample_snapshot_v3();
    let (Some(original), Some(lost)) = (&v3.original, &v3.lost) else {
        panic!("the version 3 sample sets both tail fields");
    };
    b.extend_from_slice(original.as_bytes());
    le(&mut b, lost.files.to_le_bytes());
    le(&mut b, lost.dirs.to_le_bytes());
    le(&mut b, (lost.paths.len() as u64).to_le_bytes());
    for p in &lost.paths {
        string(&mut b, p.as_bytes());
    }
    assert_eq!(b, vector!("snapshot_v3.hex"));
}

// ---- Keys, ids and chunking ----

#[test]
fn object_names_are_unkeyed_blake3() {
    // BLAKE3's published hash of the empty input: names need no key to check.
    assert_eq!(
        Id::of_stored(b"").to_hex(),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    );
}

#[test]
fn keyed_blob_id() {
    let g = vector!("blob_id.hex");
    let got = master_key().blob_id(BLOB_ID_INPUT);
    assert_eq!(got.as_bytes().to_vec(), g);
    // The id key is bytes 32..64 of the key set.
    let id_key: [u8; 32] = std::array::from_fn(|i| (32 + i) as u8);
    assert_eq!(
        blake3::keyed_hash(&id_key, BLOB_ID_INPUT)
            .as_bytes()
            .to_vec(),
        g
    );
}

#[test]
fn gear_table() {
    let g = vector!("gear_table.hex");
    assert_eq!(gear_bytes(), g);
    let gear = master_key().gear_table();
    assert_eq!(
        gear[..4],
        [
            0x7d15_0035_528e_833a,
            0x9126_325b_cb6e_a1de,
            0xaddf_353b_29a6_b1d7,
            0xe75e_75b9_26c3_3e33
        ]
    );
    // The chunker key is bytes 64..96; the table is the derive-key XOF read little-endian.
    let chunker_key: [u8; 32] = std::array::from_fn(|i| (64 + i) as u8);
    let mut h = blake3::Hasher::new_derive_key("cista 2026 chunker gear table v1");
    h.update(&chunker_key);
    let mut xof = vec![0u8; 2048];
    h.finalize_xof().fill(&mut xof);
    assert_eq!(xof, g);
}

#[test]
fn fastcdc_masks() {
    use fastcdc::v2020::{Normalization, select_masks};
    assert_eq!(
        select_masks(1024, Normalization::Level1),
        (0x0000_d900_0353_0000, 0x0000_0190_0035_3000)
    );
    assert_eq!(
        select_masks(1 << 20, Normalization::Level1),
        (0x0000_d917_6753_7000, 0x0000_d917_0753_7000)
    );
}

#[test]
fn chunk_boundaries() {
    let golden: Vec<usize> = include_str!("../../tests/vectors/chunk_cuts.txt")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(golden.iter().sum::<usize>(), CHUNK_INPUT_LEN);
    assert_eq!(chunk_cuts(), golden);
}

// ---- Sealed objects: a reader following docs/FORMAT.md opens the committed bytes ----

/// Why a vector was rejected.
#[derive(Debug)]
enum Rejection {
    Format(FormatError),
    Crypto(CryptoError),
}

impl From<FormatError> for Rejection {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl From<CryptoError> for Rejection {
    fn from(e: CryptoError) -> Self {
        Self::Crypto(e)
    }
}

/// Header check, then open with the header as associated data.
fn open_object(bytes: &[u8], kind: ObjectKind) -> Result<Vec<u8>, Rejection> {
    let sealed = check_header(bytes, kind)?;
    Ok(master_key().open(&header(kind), sealed)?)
}

/// [`open_object`], then the payload flag and a capped decompression.
fn open_framed(bytes: &[u8], kind: ObjectKind, max: u64) -> Result<Vec<u8>, Rejection> {
    let plain = open_object(bytes, kind)?;
    let (compressed, body) = split_payload(&plain, kind.name())?;
    if compressed {
        Ok(decompress_capped(body, max, kind.name())?)
    } else {
        Ok(body.to_vec())
    }
}

#[test]
fn sealed_metadata_objects() {
    let c = open_object(&vector!("config_object.hex"), ObjectKind::Config).unwrap();
    assert_eq!(Config::decode(&c).unwrap(), sample_config());
    let c = open_object(&vector!("config_v2_object.hex"), ObjectKind::Config).unwrap();
    assert_eq!(Config::decode(&c).unwrap(), sample_config_v2());
    let i = open_framed(
        &vector!("index_object.hex"),
        ObjectKind::Index,
        MAX_INDEX_LEN,
    )
    .unwrap();
    assert_eq!(IndexFile::decode(&i).unwrap(), sample_index());
    let s = open_framed(
        &vector!("snapshot_object.hex"),
        ObjectKind::Snapshot,
        MAX_SNAPSHOT_LEN,
    )
    .unwrap();
    assert_eq!(Snapshot::decode(&s).unwrap(), sample_snapshot());
    let l = open_object(&vector!("lock_object.hex"), ObjectKind::Lock).unwrap();
    assert_eq!(Lock::decode(&l).unwrap(), sample_lock());
    let l = open_object(&vector!("lock_v3_object.hex"), ObjectKind::Lock).unwrap();
    assert_eq!(Lock::decode(&l).unwrap(), sample_lock_v3());
}

#[test]
fn pack_opens_blob_by_blob() {
    let pack = vector!("pack.hex");
    let k = master_key();
    assert_eq!(
        check_header(&pack, ObjectKind::Pack).unwrap().len(),
        pack.len() - 8
    );
    let mut trailer = [0u8; 4];
    trailer.copy_from_slice(&pack[pack.len() - 4..]);
    let (start, end) = header_range(pack.len() as u64, trailer).unwrap();
    let (start, end) = (start as usize, end as usize);
    let plain = k.open(&pack_header_ad(), &pack[start..end]).unwrap();
    let h = PackHeader::decode(&plain, start as u64).unwrap();
    let blobs = pack_blobs();
    // File order is shuffled: entries follow the file, not the order blobs were added.
    let order = [2usize, 0, 1];
    assert_eq!(h.entries.len(), order.len());
    for (e, i) in h.entries.iter().zip(order) {
        let (t, content, zstd) = &blobs[i];
        assert_eq!(e.blob_type, *t);
        let sealed = &pack[e.offset as usize..e.end() as usize];
        let payload = k.open(&blob_ad(e.blob_type, &e.id), sealed).unwrap();
        let (compressed, body) = split_payload(&payload, "blob").unwrap();
        assert_eq!(compressed, *zstd);
        let got = if compressed {
            decompress_exact(body, e.raw_len as usize, "blob").unwrap()
        } else {
            body.to_vec()
        };
        assert_eq!(got.len(), e.raw_len as usize);
        assert_eq!(&got, content);
        assert_eq!(k.blob_id(&got), e.id);
        // A blob read under another id or type fails authentication.
        let other = if *t == BlobType::Data {
            BlobType::Tree
        } else {
            BlobType::Data
        };
        assert!(k.open(&blob_ad(other, &e.id), sealed).is_err());
    }
    assert_eq!(Tree::decode(&blobs[1].1).unwrap(), sample_tree());
    // Padding lies between the last blob and the sealed header.
    let last = h.entries.iter().map(PackEntry::end).max().unwrap() as usize;
    assert_eq!(start - last, 37);
}

// ---- Rejected objects: each fail_* file, its reader, and the reason it must give ----

#[derive(Debug, Clone, Copy)]
enum Expect {
    BadMagic,
    WrongKind,
    NewerVersion,
    /// The config names a repository version or feature this build does not know.
    NewerRepository,
    Truncated,
    /// `Malformed` whose reason contains this text.
    Malformed(&'static str),
    AuthFailed,
}

type Reader = fn(&[u8]) -> Result<(), Rejection>;

fn read_key(b: &[u8]) -> Result<(), Rejection> {
    KeyFile::decode(b).map(drop).map_err(Into::into)
}
fn read_config(b: &[u8]) -> Result<(), Rejection> {
    Config::decode(b).map(drop).map_err(Into::into)
}
fn read_tree(b: &[u8]) -> Result<(), Rejection> {
    Tree::decode(b).map(drop).map_err(Into::into)
}
fn read_lock(b: &[u8]) -> Result<(), Rejection> {
    Lock::decode(b).map(drop).map_err(Into::into)
}
fn read_snapshot(b: &[u8]) -> Result<(), Rejection> {
    Snapshot::decode(b).map(drop).map_err(Into::into)
}
fn read_index(b: &[u8]) -> Result<(), Rejection> {
    IndexFile::decode(b).map(drop).map_err(Into::into)
}
fn read_pack_header(b: &[u8]) -> Result<(), Rejection> {
    PackHeader::decode(b, PACK_HEADER_BLOBS_END)
        .map(drop)
        .map_err(Into::into)
}
fn read_pack_trailer(b: &[u8]) -> Result<(), Rejection> {
    let mut t = [0u8; 4];
    t.copy_from_slice(&b[b.len() - 4..]);
    check_header(b, ObjectKind::Pack)?;
    header_range(b.len() as u64, t)
        .map(drop)
        .map_err(Into::into)
}
fn read_index_object(b: &[u8]) -> Result<(), Rejection> {
    let plain = open_framed(b, ObjectKind::Index, MAX_INDEX_LEN)?;
    read_index(&plain)
}
fn read_snapshot_object(b: &[u8]) -> Result<(), Rejection> {
    let plain = open_framed(b, ObjectKind::Snapshot, MAX_SNAPSHOT_LEN)?;
    read_snapshot(&plain)
}
/// The file is a data blob sealed for the id of [`BLOB_ID_INPUT`]; read it as a tree blob.
fn read_as_tree_blob(b: &[u8]) -> Result<(), Rejection> {
    let id = master_key().blob_id(BLOB_ID_INPUT);
    master_key().open(&blob_ad(BlobType::Tree, &id), b)?;
    Ok(())
}
/// The file is a zstd frame stored for a blob whose index entry says `raw_len` = 1000.
fn read_blob_frame(b: &[u8]) -> Result<(), Rejection> {
    decompress_exact(b, 1000, "blob")
        .map(drop)
        .map_err(Into::into)
}

/// One rejected vector: its file, the reader that must refuse it, and how.
macro_rules! fail {
    ($name:literal, $read:expr, $expect:expr) => {
        ($name, vector!($name), $read as Reader, $expect)
    };
}

fn fail_cases() -> Vec<(&'static str, Vec<u8>, Reader, Expect)> {
    use Expect::*;
    let reserved = Malformed("invalid version or reserved bytes");
    vec![
        fail!("fail_bad_magic.hex", read_key, BadMagic),
        fail!("fail_wrong_kind.hex", read_key, WrongKind),
        fail!("fail_newer_version.hex", read_key, NewerVersion),
        fail!("fail_zero_version.hex", read_key, reserved),
        fail!("fail_reserved_byte.hex", read_key, reserved),
        fail!("fail_truncated_header.hex", read_key, Truncated),
        fail!(
            "fail_truncated_key_file.hex",
            read_key,
            Malformed("UnexpectedEnd")
        ),
        fail!(
            "fail_trailing_bytes.hex",
            read_config,
            Malformed("1 trailing bytes")
        ),
        fail!(
            "fail_kdf_over_cap.hex",
            read_key,
            Malformed("exceed the cap")
        ),
        fail!(
            "fail_config_newer_version.hex",
            read_config,
            NewerRepository
        ),
        fail!(
            "fail_config_unknown_feature.hex",
            read_config,
            NewerRepository
        ),
        fail!(
            "fail_config_odd_chunk.hex",
            read_config,
            Malformed("chunker sizes")
        ),
        fail!("fail_tree_unsorted.hex", read_tree, Malformed("not sorted")),
        fail!(
            "fail_tree_duplicate.hex",
            read_tree,
            Malformed("not unique")
        ),
        fail!(
            "fail_tree_name_dotdot.hex",
            read_tree,
            Malformed("unsafe entry name")
        ),
        fail!(
            "fail_tree_name_slash.hex",
            read_tree,
            Malformed("unsafe entry name")
        ),
        fail!("fail_bad_enum.hex", read_tree, Malformed("variant index")),
        fail!(
            "fail_bad_bool.hex",
            read_lock,
            Malformed("InvalidBooleanValue(2)")
        ),
        fail!("fail_bad_utf8.hex", read_lock, Malformed("Utf8")),
        fail!(
            "fail_lock_unknown_mode.hex",
            read_lock,
            Malformed("unknown lock mode 3")
        ),
        fail!(
            "fail_bad_option.hex",
            read_snapshot,
            Malformed("UnexpectedVariant")
        ),
        fail!(
            "fail_huge_length.hex",
            read_index,
            Malformed("UnexpectedEnd")
        ),
        fail!(
            "fail_index_blob_too_short.hex",
            read_index,
            Malformed("shorter than its seal")
        ),
        fail!(
            "fail_index_blob_too_long.hex",
            read_index,
            Malformed("length or offset out of range")
        ),
        fail!(
            "fail_index_empty_obsolete.hex",
            read_index,
            Malformed("empty obsolete list")
        ),
        fail!(
            "fail_pack_header_overlap.hex",
            read_pack_header,
            Malformed("overlaps")
        ),
        fail!(
            "fail_pack_header_length.hex",
            read_pack_trailer,
            Malformed("exceeds pack")
        ),
        fail!(
            "fail_unknown_payload_flag.hex",
            read_index_object,
            Malformed("payload flag 2")
        ),
        fail!(
            "fail_lock_as_snapshot.hex",
            read_snapshot_object,
            AuthFailed
        ),
        fail!("fail_blob_wrong_type.hex", read_as_tree_blob, AuthFailed),
        fail!(
            "fail_zstd_bomb.hex",
            read_blob_frame,
            Malformed("bad zstd frame")
        ),
    ]
}

#[test]
fn fail_files_are_rejected_for_their_reason() {
    for (name, bytes, read, expect) in fail_cases() {
        let err = match read(&bytes) {
            Ok(()) => panic!("{name} was accepted"),
            Err(e) => e,
        };
        let ok = match (&err, expect) {
            (Rejection::Format(FormatError::BadMagic { .. }), Expect::BadMagic) => true,
            (Rejection::Format(FormatError::WrongKind { .. }), Expect::WrongKind) => true,
            (Rejection::Format(e @ FormatError::NewerVersion { .. }), Expect::NewerVersion) => e
                .to_string()
                .contains("written by a newer version of cista"),
            (
                Rejection::Format(e @ FormatError::NewerRepository { .. }),
                Expect::NewerRepository,
            ) => e.to_string().contains("upgrade cista"),
            (Rejection::Format(FormatError::Truncated { .. }), Expect::Truncated) => true,
            (Rejection::Format(FormatError::Malformed { reason, .. }), Expect::Malformed(s)) => {
                reason.contains(s)
            }
            (Rejection::Crypto(CryptoError::AuthFailed), Expect::AuthFailed) => true,
            _ => false,
        };
        assert!(ok, "{name}: expected {expect:?}, got {err:?}");
    }
}

#[test]
fn every_committed_file_is_checked() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README.md")
        .collect();
    let mut known: BTreeSet<String> = all_files().into_iter().map(|(n, _)| n.to_owned()).collect();
    known.insert("chunk_cuts.txt".into());
    assert_eq!(on_disk, known);
    let failing: BTreeSet<String> = fail_cases()
        .into_iter()
        .map(|(n, ..)| n.to_owned())
        .collect();
    let fail_on_disk: BTreeSet<String> = on_disk
        .into_iter()
        .filter(|n| n.starts_with("fail_"))
        .collect();
    assert_eq!(failing, fail_on_disk);
}

#[test]
fn committed_files_are_what_the_generator_writes() {
    // Fail files do not depend on zstd's output except the bomb, which only has to decode.
    for (name, bytes) in all_files() {
        let deterministic = !matches!(
            name,
            "pack.hex" | "snapshot_object.hex" | "fail_zstd_bomb.hex"
        );
        if deterministic {
            let committed = std::fs::read(format!("{DIR}/{name}")).unwrap();
            assert_eq!(unhex(&committed), bytes, "{name}");
        }
    }
}
