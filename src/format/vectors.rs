//! Golden vectors (docs/FORMAT.md, every section): the committed bytes in `tests/vectors/`
//! that pin each encoding, the key schedule, the AEAD framing and the chunk boundaries, and
//! the `fail_*` objects every reader must reject, each for a named reason.
//!
//! The files were written once by [`regenerate`] (ignored; it runs only when asked for by
//! name). Every other test here compares against the committed files and never rewrites them:
//! a change that makes one fail changes the repository format, and needs a new format version
//! and an entry in docs/FORMAT.md, "Changes", not a regenerated file.
//!
//! Samples use patterned bytes (`id(seed)` has 32 distinct bytes), negative integers and a
//! non-UTF-8 name, so byte order, sign handling and byte-string handling are all pinned.

use std::collections::BTreeSet;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::config::{ChunkerParams, Config};
use super::index::{IndexFile, IndexPack, MAX_INDEX_LEN};
use super::key::{KdfParams, KeyFile};
use super::lock::Lock;
use super::pack::{BlobType, PackEntry, PackHeader, blob_ad, header_range, pack_header_ad};
use super::snapshot::{MAX_SNAPSHOT_LEN, Snapshot, Summary};
use super::tree::{Node, NodeKind, Tree, Xattr};
use super::{
    FormatError, HEADER_LEN, ObjectKind, PAYLOAD_RAW, PAYLOAD_ZSTD, check_header, header,
    split_payload,
};
use crate::chunker::Chunker;
use crate::compress::{decompress_capped, decompress_exact};
use crate::crypto::{self, CryptoError, MASTER_KEY_LEN, MasterKey, kdf};
use crate::id::{BlobId, Id, IndexId, PackId, SnapshotId};

/// Folder of the committed vectors, for [`regenerate`] and the coverage check.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

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

fn to_hex_lines(bytes: &[u8]) -> String {
    let mut out = String::new();
    for line in bytes.chunks(32) {
        out.push_str(&hex::encode(line));
        out.push('\n');
    }
    out
}

// ---- Fixed inputs (docs/FORMAT.md, "Test vectors" lists them) ----

/// Master key set: bytes 0, 1, ..., 95 (encryption key 0..32, id key 32..64, chunker key 64..96).
fn master_key() -> MasterKey {
    MasterKey::from_bytes(&std::array::from_fn(|i| i as u8))
}

fn enc_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&master_key().to_bytes()[..32]);
    k
}

/// 32 distinct bytes: `seed ^ i`.
fn id(seed: u8) -> Id {
    Id(std::array::from_fn(|i| seed ^ i as u8))
}

/// 24 distinct bytes: `seed + i`. Real writers use fresh random nonces; vectors need fixed ones.
fn nonce(seed: u8) -> [u8; 24] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8))
}

/// xorshift64 (13, 7, 17) from `seed | 1`, emitting the low byte of each state.
fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const PASSPHRASE: &[u8] = b"correct horse battery staple";
const KEY_KDF: KdfParams = KdfParams {
    m_kib: 256,
    t: 2,
    p: 2,
};
const KEY_SALT: [u8; 32] = [0x5a; 32];
const BLOB_ID_INPUT: &[u8] = b"cista golden vector";
const CHUNK_PARAMS: ChunkerParams = ChunkerParams {
    min: 256,
    avg: 1024,
    max: 4096,
};
const CHUNK_INPUT_LEN: usize = 65_536;
const CHUNK_INPUT_SEED: u64 = 0x0123_4567_89ab_cdef;
/// `blobs_end` passed to [`PackHeader::decode`] for `pack_header.hex` and its fail file.
const PACK_HEADER_BLOBS_END: u64 = 1000;

fn seal_with_nonce(nonce: [u8; 24], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_key_nonce(&enc_key(), nonce, ad, plaintext)
}

fn seal_key_nonce(key: &[u8; 32], nonce: [u8; 24], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut out = nonce.to_vec();
    out.extend_from_slice(plaintext);
    let n = XNonce::try_from(&nonce[..]).unwrap();
    let tag = cipher
        .encrypt_inout_detached(&n, ad, (&mut out[24..]).into())
        .unwrap();
    out.extend_from_slice(&tag);
    out
}

// ---- Samples ----

fn sample_config() -> Config {
    Config {
        repo_id: id(0xc0).0,
        chunker: ChunkerParams::DEFAULT,
        pack_size: Config::DEFAULT_PACK_SIZE,
        compression_level: Config::DEFAULT_COMPRESSION_LEVEL,
    }
}

fn sample_key_file() -> KeyFile {
    let mut k = KeyFile {
        kdf: KEY_KDF,
        salt: KEY_SALT,
        created_unix_ns: 1_780_000_000_000_000_000,
        hostname: "db1".into(),
        username: "postgres".into(),
        wrapped: Vec::new(),
    };
    let wrapping = kdf::derive(PASSPHRASE, k.kdf, &k.salt).unwrap();
    k.wrapped = seal_key_nonce(
        &wrapping,
        nonce(0x24),
        &k.wrap_ad(),
        &master_key().to_bytes()[..],
    );
    k
}

fn entry(blob_type: BlobType, id_seed: u8, offset: u32, length: u32, raw_len: u32) -> PackEntry {
    PackEntry {
        blob_type,
        id: BlobId(id(id_seed)),
        offset,
        length,
        raw_len,
    }
}

fn sample_pack_header() -> PackHeader {
    PackHeader {
        entries: vec![
            entry(BlobType::Data, 0x01, 8, 100, 200),
            entry(BlobType::Tree, 0x02, 108, 60, 19),
        ],
    }
}

fn sample_index() -> IndexFile {
    IndexFile {
        supersedes: vec![IndexId(id(0x11))],
        packs: vec![
            IndexPack {
                id: PackId(id(0x22)),
                blobs: sample_pack_header().entries,
            },
            IndexPack {
                id: PackId(id(0x33)),
                blobs: vec![entry(BlobType::Data, 0x03, 8, 1_048_617, 1_048_576)],
            },
        ],
    }
}

fn node(name: &[u8], kind: NodeKind, mode: u32) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode,
        uid: 26,
        gid: 26,
        mtime_ns: 1_780_000_000_000_000_001,
        atime_ns: -1_000_000_000,
        ctime_ns: 1_780_000_000_000_000_003,
        inode: 0x0102_0304_0506_0708,
        device: 2049,
        links: 1,
        xattrs: Vec::new(),
    }
}

fn sample_tree() -> Tree {
    let mut file = node(
        b"data.db",
        NodeKind::File {
            size: 3_000_000,
            content: vec![BlobId(id(0x44)), BlobId(id(0x45))],
        },
        0o100_600,
    );
    file.xattrs = vec![Xattr {
        name: b"user.comment".to_vec(),
        value: b"golden".to_vec(),
    }];
    file.links = 2;
    Tree {
        nodes: vec![
            node(
                b"bin",
                NodeKind::Symlink {
                    target: b"usr/bin".to_vec(),
                },
                0o120_777,
            ),
            node(b"caf\xe9", NodeKind::Fifo, 0o010_644),
            file,
            node(
                b"srv",
                NodeKind::Dir {
                    subtree: BlobId(id(0x55)),
                },
                0o040_755,
            ),
        ],
    }
}

fn sample_snapshot() -> Snapshot {
    Snapshot {
        time_unix_ns: 1_780_000_000_123_456_789,
        tz_offset_s: -18_000,
        hostname: "db1".into(),
        username: "postgres".into(),
        uid: 26,
        gid: 26,
        paths: vec!["/etc".into(), "/srv/db".into()],
        tags: vec!["daily".into(), "pg".into()],
        tree: BlobId(id(0x66)),
        parent: Some(SnapshotId(id(0x77))),
        program_version: "cista 0.1.0".into(),
        incomplete: true,
        summary: Summary {
            files_new: 1,
            files_changed: 2,
            files_unmodified: 3,
            dirs_new: 4,
            dirs_changed: 5,
            dirs_unmodified: 6,
            blobs_added: 7,
            data_added: 8,
            data_added_packed: 9,
            total_files_processed: 10,
            total_bytes_processed: 11,
            backup_start_ns: 12,
            backup_end_ns: -13,
            errors: 14,
        },
    }
}

fn sample_lock() -> Lock {
    Lock {
        time_unix_ns: 1_780_000_000_000_000_000,
        exclusive: false,
        hostname: "db1".into(),
        username: "postgres".into(),
        pid: 4242,
    }
}

const KINDS: [(ObjectKind, &str); 8] = [
    (ObjectKind::Config, "header_config.hex"),
    (ObjectKind::Key, "header_key.hex"),
    (ObjectKind::Pack, "header_pack.hex"),
    (ObjectKind::PackHeader, "header_pack_header.hex"),
    (ObjectKind::Blob, "header_blob.hex"),
    (ObjectKind::Index, "header_index.hex"),
    (ObjectKind::Snapshot, "header_snapshot.hex"),
    (ObjectKind::Lock, "header_lock.hex"),
];

/// A blob of the sample pack: type, content, whether it is stored compressed.
fn pack_blobs() -> Vec<(BlobType, Vec<u8>, bool)> {
    vec![
        (BlobType::Data, b"hello, cista\n".to_vec(), false),
        (BlobType::Tree, sample_tree().encode(), false),
        (
            BlobType::Data,
            b"INSERT INTO t VALUES (1, 'abc');\n".repeat(64),
            true,
        ),
    ]
}

/// A whole pack: the blobs in the shuffled file order 2, 0, 1, then 37 bytes of padding.
fn sample_pack() -> Vec<u8> {
    let k = master_key();
    let blobs = pack_blobs();
    let mut pack = header(ObjectKind::Pack).to_vec();
    let mut entries = Vec::new();
    for (n, i) in [2usize, 0, 1].into_iter().enumerate() {
        let (t, content, zstd) = &blobs[i];
        let id = k.blob_id(content);
        let mut payload = Vec::new();
        if *zstd {
            payload.push(PAYLOAD_ZSTD);
            payload.extend_from_slice(&zstd::bulk::compress(content, 3).unwrap());
        } else {
            payload.push(PAYLOAD_RAW);
            payload.extend_from_slice(content);
        }
        let sealed = seal_with_nonce(nonce(0x40 + n as u8), &blob_ad(*t, &id), &payload);
        entries.push(PackEntry {
            blob_type: *t,
            id,
            offset: pack.len() as u32,
            length: sealed.len() as u32,
            raw_len: content.len() as u32,
        });
        pack.extend_from_slice(&sealed);
    }
    pack.extend_from_slice(&pseudo_random(37, 99));
    let sealed = seal_with_nonce(
        nonce(0x50),
        &pack_header_ad(),
        &PackHeader { entries }.encode(),
    );
    pack.extend_from_slice(&sealed);
    pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    pack
}

/// `header || nonce || ciphertext || tag` with the header as associated data.
fn sealed_object(kind: ObjectKind, nonce_seed: u8, plaintext: &[u8]) -> Vec<u8> {
    let h = header(kind);
    let mut out = h.to_vec();
    out.extend_from_slice(&seal_with_nonce(nonce(nonce_seed), &h, plaintext));
    out
}

fn framed(flag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(body);
    out
}

fn chunk_cuts() -> Vec<usize> {
    let c = Chunker::new(CHUNK_PARAMS, master_key().gear_table());
    c.cut_all(&pseudo_random(CHUNK_INPUT_LEN, CHUNK_INPUT_SEED))
}

fn gear_bytes() -> Vec<u8> {
    master_key()
        .gear_table()
        .iter()
        .flat_map(|g| g.to_le_bytes())
        .collect()
}

/// Every committed file and how to produce it. Fail files are mutations of the samples.
fn all_files() -> Vec<(&'static str, Vec<u8>)> {
    let key = sample_key_file().encode();
    let with = |bytes: &[u8], at: usize, b: u8| {
        let mut v = bytes.to_vec();
        v[at] = b;
        v
    };
    let mut files: Vec<(&'static str, Vec<u8>)> = KINDS
        .iter()
        .map(|(k, name)| (*name, header(*k).to_vec()))
        .collect();
    let lock = sample_lock().encode();
    let tree_with = |nodes: Vec<Node>| Tree { nodes }.encode();
    let fifo = |name: &[u8]| node(name, NodeKind::Fifo, 0o010_644);
    let mut over_cap = sample_key_file();
    over_cap.kdf.m_kib = KdfParams::MAX.m_kib + 1;
    let mut odd_chunk = sample_config();
    odd_chunk.chunker.avg += 1;
    let mut short_blob = sample_index();
    short_blob.packs[0].blobs[0].length = 40;
    let overlap = PackHeader {
        entries: vec![
            entry(BlobType::Data, 0x01, 8, 100, 200),
            entry(BlobType::Data, 0x02, 107, 60, 19),
        ],
    };
    let mut bad_pack = header(ObjectKind::Pack).to_vec();
    bad_pack.extend_from_slice(&[0; 40]);
    bad_pack.extend_from_slice(&45u32.to_le_bytes());
    // Snapshot: the parent's Option tag sits after the root tree id.
    let snap = sample_snapshot().encode();
    let parent_tag = snap.len() - 112 - 1 - (8 + 11) - 32 - 1;
    // Tree: the first node's kind (variant index) follows the node count and its name.
    let bad_enum = with(&sample_tree().encode(), 8 + 8 + 3, 4);
    let mut utf8 = lock.clone();
    utf8[9 + 8] = 0xff;
    let mut huge = sample_index().encode();
    huge[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let idx = sample_index().encode();
    let data_blob = master_key().blob_id(BLOB_ID_INPUT);

    files.extend([
        ("config.hex", sample_config().encode()),
        ("key_file.hex", key.clone()),
        ("key_wrap_ad.hex", sample_key_file().wrap_ad()),
        ("kdf_output.hex", {
            let k = kdf::derive(PASSPHRASE, KEY_KDF, &KEY_SALT).unwrap();
            k.to_vec()
        }),
        ("pack_header.hex", sample_pack_header().encode()),
        ("index.hex", idx.clone()),
        ("tree.hex", sample_tree().encode()),
        ("snapshot.hex", snap.clone()),
        ("lock.hex", lock.clone()),
        (
            "blob_ad.hex",
            blob_ad(BlobType::Tree, &BlobId(id(0x88))).to_vec(),
        ),
        ("blob_id.hex", data_blob.as_bytes().to_vec()),
        ("gear_table.hex", gear_bytes()),
        ("pack.hex", sample_pack()),
        (
            "config_object.hex",
            sealed_object(ObjectKind::Config, 0x60, &sample_config().encode()),
        ),
        (
            "index_object.hex",
            sealed_object(ObjectKind::Index, 0x61, &framed(PAYLOAD_RAW, &idx)),
        ),
        (
            "snapshot_object.hex",
            sealed_object(
                ObjectKind::Snapshot,
                0x62,
                &framed(PAYLOAD_ZSTD, &zstd::bulk::compress(&snap, 3).unwrap()),
            ),
        ),
        (
            "lock_object.hex",
            sealed_object(ObjectKind::Lock, 0x63, &lock),
        ),
        // Rejected objects.
        ("fail_bad_magic.hex", with(&key, 3, b'B')),
        ("fail_wrong_kind.hex", with(&key, 4, b'S')),
        ("fail_newer_version.hex", with(&key, 5, 2)),
        ("fail_zero_version.hex", with(&key, 5, 0)),
        ("fail_reserved_byte.hex", with(&key, 7, 1)),
        ("fail_truncated_header.hex", key[..6].to_vec()),
        ("fail_truncated_key_file.hex", key[..key.len() - 1].to_vec()),
        ("fail_trailing_bytes.hex", {
            let mut c = sample_config().encode();
            c.push(0);
            c
        }),
        ("fail_kdf_over_cap.hex", over_cap.encode()),
        ("fail_config_odd_chunk.hex", odd_chunk.encode()),
        (
            "fail_tree_unsorted.hex",
            tree_with(vec![fifo(b"b"), fifo(b"a")]),
        ),
        (
            "fail_tree_duplicate.hex",
            tree_with(vec![fifo(b"a"), fifo(b"a")]),
        ),
        ("fail_tree_name_dotdot.hex", tree_with(vec![fifo(b"..")])),
        ("fail_tree_name_slash.hex", tree_with(vec![fifo(b"a/b")])),
        ("fail_bad_enum.hex", bad_enum),
        ("fail_bad_bool.hex", with(&lock, 8, 2)),
        ("fail_bad_utf8.hex", utf8),
        ("fail_bad_option.hex", with(&snap, parent_tag, 2)),
        ("fail_huge_length.hex", huge),
        ("fail_index_blob_too_short.hex", short_blob.encode()),
        ("fail_pack_header_overlap.hex", overlap.encode()),
        ("fail_pack_header_length.hex", bad_pack),
        (
            "fail_unknown_payload_flag.hex",
            sealed_object(ObjectKind::Index, 0x64, &framed(2, &idx)),
        ),
        ("fail_lock_as_snapshot.hex", {
            let mut l = sealed_object(ObjectKind::Lock, 0x63, &lock);
            l[4] = b'S';
            l
        }),
        ("fail_blob_wrong_type.hex", {
            let ad = blob_ad(BlobType::Data, &data_blob);
            seal_with_nonce(nonce(0x70), &ad, &framed(PAYLOAD_RAW, BLOB_ID_INPUT))
        }),
        ("fail_zstd_bomb.hex", {
            zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap()
        }),
    ]);
    files
}

/// Writes every vector. Run only to create the files, or for a deliberate format change:
/// `cargo test --lib format::vectors::regenerate -- --ignored`.
#[test]
#[ignore = "writes tests/vectors/; run by name only"]
fn regenerate() {
    std::fs::create_dir_all(DIR).unwrap();
    for (name, bytes) in all_files() {
        std::fs::write(format!("{DIR}/{name}"), to_hex_lines(&bytes)).unwrap();
    }
    let cuts: String = chunk_cuts().iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(format!("{DIR}/chunk_cuts.txt"), cuts).unwrap();
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
}

#[test]
fn tree() {
    let g = vector!("tree.hex");
    assert_eq!(sample_tree().encode(), g);
    assert_eq!(Tree::decode(&g).unwrap(), sample_tree());
}

#[test]
fn snapshot() {
    let g = vector!("snapshot.hex");
    assert_eq!(sample_snapshot().encode(), g);
    assert_eq!(Snapshot::decode(&g).unwrap(), sample_snapshot());
}

#[test]
fn lock() {
    let g = vector!("lock.hex");
    assert_eq!(sample_lock().encode(), g);
    assert_eq!(Lock::decode(&g).unwrap(), sample_lock());
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

    // Lock: time i64, exclusive bool, hostname, username, pid u32.
    let l = sample_lock();
    let mut b = Vec::new();
    le(&mut b, l.time_unix_ns.to_le_bytes());
    b.push(u8::from(l.exclusive));
    string(&mut b, l.hostname.as_bytes());
    string(&mut b, l.username.as_bytes());
    le(&mut b, l.pid.to_le_bytes());
    assert_eq!(b, vector!("lock.hex"));

    // Pack header: u64 count, then 48-byte entries (type u32, id, offset, length, raw_len).
    let h = sample_pack_header();
    let mut b = Vec::new();
    le(&mut b, (h.entries.len() as u64).to_le_bytes());
    for e in &h.entries {
        le(&mut b, u32::from(e.blob_type.code()).to_le_bytes());
        b.extend_from_slice(e.id.as_bytes());
        for v in [e.offset, e.length, e.raw_len] {
            le(&mut b, v.to_le_bytes());
        }
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

fn fail_cases() -> Vec<(&'static str, Vec<u8>, Reader, Expect)> {
    use Expect::*;
    vec![
        (
            "fail_bad_magic.hex",
            vector!("fail_bad_magic.hex"),
            read_key,
            BadMagic,
        ),
        (
            "fail_wrong_kind.hex",
            vector!("fail_wrong_kind.hex"),
            read_key,
            WrongKind,
        ),
        (
            "fail_newer_version.hex",
            vector!("fail_newer_version.hex"),
            read_key,
            NewerVersion,
        ),
        (
            "fail_zero_version.hex",
            vector!("fail_zero_version.hex"),
            read_key,
            Malformed("invalid version or reserved bytes"),
        ),
        (
            "fail_reserved_byte.hex",
            vector!("fail_reserved_byte.hex"),
            read_key,
            Malformed("invalid version or reserved bytes"),
        ),
        (
            "fail_truncated_header.hex",
            vector!("fail_truncated_header.hex"),
            read_key,
            Truncated,
        ),
        (
            "fail_truncated_key_file.hex",
            vector!("fail_truncated_key_file.hex"),
            read_key,
            Malformed("UnexpectedEnd"),
        ),
        (
            "fail_trailing_bytes.hex",
            vector!("fail_trailing_bytes.hex"),
            read_config,
            Malformed("1 trailing bytes"),
        ),
        (
            "fail_kdf_over_cap.hex",
            vector!("fail_kdf_over_cap.hex"),
            read_key,
            Malformed("exceed the cap"),
        ),
        (
            "fail_config_odd_chunk.hex",
            vector!("fail_config_odd_chunk.hex"),
            read_config,
            Malformed("chunker sizes"),
        ),
        (
            "fail_tree_unsorted.hex",
            vector!("fail_tree_unsorted.hex"),
            read_tree,
            Malformed("not sorted"),
        ),
        (
            "fail_tree_duplicate.hex",
            vector!("fail_tree_duplicate.hex"),
            read_tree,
            Malformed("not unique"),
        ),
        (
            "fail_tree_name_dotdot.hex",
            vector!("fail_tree_name_dotdot.hex"),
            read_tree,
            Malformed("unsafe entry name"),
        ),
        (
            "fail_tree_name_slash.hex",
            vector!("fail_tree_name_slash.hex"),
            read_tree,
            Malformed("unsafe entry name"),
        ),
        (
            "fail_bad_enum.hex",
            vector!("fail_bad_enum.hex"),
            read_tree,
            Malformed("variant index"),
        ),
        (
            "fail_bad_bool.hex",
            vector!("fail_bad_bool.hex"),
            read_lock,
            Malformed("InvalidBooleanValue(2)"),
        ),
        (
            "fail_bad_utf8.hex",
            vector!("fail_bad_utf8.hex"),
            read_lock,
            Malformed("Utf8"),
        ),
        (
            "fail_bad_option.hex",
            vector!("fail_bad_option.hex"),
            read_snapshot,
            Malformed("UnexpectedVariant"),
        ),
        (
            "fail_huge_length.hex",
            vector!("fail_huge_length.hex"),
            read_index,
            Malformed("UnexpectedEnd"),
        ),
        (
            "fail_index_blob_too_short.hex",
            vector!("fail_index_blob_too_short.hex"),
            read_index,
            Malformed("shorter than its seal"),
        ),
        (
            "fail_pack_header_overlap.hex",
            vector!("fail_pack_header_overlap.hex"),
            read_pack_header,
            Malformed("overlaps"),
        ),
        (
            "fail_pack_header_length.hex",
            vector!("fail_pack_header_length.hex"),
            read_pack_trailer,
            Malformed("header length exceeds pack"),
        ),
        (
            "fail_unknown_payload_flag.hex",
            vector!("fail_unknown_payload_flag.hex"),
            read_index_object,
            Malformed("unknown payload flag 2"),
        ),
        (
            "fail_lock_as_snapshot.hex",
            vector!("fail_lock_as_snapshot.hex"),
            read_snapshot_object,
            AuthFailed,
        ),
        (
            "fail_blob_wrong_type.hex",
            vector!("fail_blob_wrong_type.hex"),
            read_as_tree_blob,
            AuthFailed,
        ),
        (
            "fail_zstd_bomb.hex",
            vector!("fail_zstd_bomb.hex"),
            read_blob_frame,
            Malformed("bad zstd frame"),
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
