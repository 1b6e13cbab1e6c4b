//! The fixed inputs and samples behind tests/vectors/, and the generator that wrote the files.
//!
//! Owns what the vectors contain; [`super`] owns the checks, which compare against the
//! committed files. Only the ignored `regenerate` test writes them, so a change here that
//! alters bytes shows up as a failing comparison, never as silently rewritten vectors.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::chunker::Chunker;
use crate::crypto::{MasterKey, kdf};
use crate::format::config::{ChunkerParams, Config};
use crate::format::index::{IndexFile, IndexPack, ObsoletePack};
use crate::format::key::{KdfParams, KeyFile};
use crate::format::lock::{Lock, LockMode, LockSession};
use crate::format::pack::{BlobType, PackEntry, PackHeader, blob_ad, pack_header_ad};
use crate::format::snapshot::{Lost, Snapshot, Summary};
use crate::format::tree::{Node, NodeKind, Tree, Xattr};
use crate::format::{ObjectKind, PAYLOAD_RAW, PAYLOAD_ZSTD, header};
use crate::id::{BlobId, Id, IndexId, PackId, SnapshotId};

/// Folder of the committed vectors.
pub(super) const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

fn to_hex_lines(bytes: &[u8]) -> String {
    let mut out = String::new();
    for line in bytes.chunks(32) {
        out.push_str(&hex::encode(line));
        out.push('\n');
    }
    out
}

/// Master key set: bytes 0, 1, ..., 95 (encryption key 0..32, id key 32..64, chunker key 64..96).
pub(super) fn master_key() -> MasterKey {
    MasterKey::from_bytes(&std::array::from_fn(|i| i as u8))
}

pub(super) fn enc_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&master_key().to_bytes()[..32]);
    k
}

/// 32 distinct bytes: `seed ^ i`.
pub(super) fn id(seed: u8) -> Id {
    Id(std::array::from_fn(|i| seed ^ i as u8))
}

/// 24 distinct bytes: `seed + i`. Real writers use fresh random nonces; vectors need fixed ones.
pub(super) fn nonce(seed: u8) -> [u8; 24] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8))
}

/// xorshift64 (13, 7, 17) from `seed | 1`, emitting the low byte of each state.
pub(crate) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
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

pub(super) const PASSPHRASE: &[u8] = b"correct horse battery staple";
pub(super) const KEY_KDF: KdfParams = KdfParams {
    m_kib: 256,
    t: 2,
    p: 2,
};
pub(super) const KEY_SALT: [u8; 32] = [0x5a; 32];
pub(super) const BLOB_ID_INPUT: &[u8] = b"cista golden vector";
pub(super) const CHUNK_PARAMS: ChunkerParams = ChunkerParams {
    min: 256,
    avg: 1024,
    max: 4096,
};
pub(super) const CHUNK_INPUT_LEN: usize = 65_536;
pub(super) const CHUNK_INPUT_SEED: u64 = 0x0123_4567_89ab_cdef;
/// `blobs_end` passed to [`PackHeader::decode`] for `pack_header.hex` and its fail file.
pub(super) const PACK_HEADER_BLOBS_END: u64 = 1000;

pub(super) fn seal_with_nonce(nonce: [u8; 24], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_key_nonce(&enc_key(), nonce, ad, plaintext)
}

pub(super) fn seal_key_nonce(
    key: &[u8; 32],
    nonce: [u8; 24],
    ad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
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

// ---- Samples: tests/vectors/README.md names each file they produce ----

pub(super) fn sample_config() -> Config {
    Config {
        repo_id: id(0xc0).0,
        // Literal values, not the defaults: golden bytes must not move when a default does.
        chunker: ChunkerParams {
            min: 512 << 10,
            avg: 1 << 20,
            max: 8 << 20,
        },
        pack_size: 16 << 20,
        compression_level: 3,
        // Repository format 1: the 52-byte config, which readers must still read.
        format_version: 1,
        features: Vec::new(),
    }
}

/// The same config at repository format 2, declaring the `tree-parts` feature.
pub(super) fn sample_config_v2() -> Config {
    Config {
        format_version: 2,
        features: vec!["tree-parts".into()],
        ..sample_config()
    }
}

pub(super) fn sample_key_file() -> KeyFile {
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

pub(super) fn entry(
    blob_type: BlobType,
    id_seed: u8,
    offset: u32,
    length: u32,
    raw_len: u32,
) -> PackEntry {
    PackEntry {
        blob_type,
        id: BlobId(id(id_seed)),
        offset,
        length,
        raw_len,
    }
}

pub(super) fn sample_pack_header() -> PackHeader {
    PackHeader {
        entries: vec![
            entry(BlobType::Data, 0x01, 8, 100, 200),
            entry(BlobType::Tree, 0x02, 108, 60, 19),
        ],
    }
}

pub(super) fn sample_index() -> IndexFile {
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
        obsolete: Vec::new(),
    }
}

/// Format version 3: the same index with two packs pending deletion, one armed (waiting for
/// two lock sessions) and one not.
pub(super) fn sample_index_obsolete() -> IndexFile {
    IndexFile {
        obsolete: vec![
            ObsoletePack {
                id: PackId(id(0x44)),
                marked_unix_ns: 1_780_000_000_123_456_789,
                armed: true,
                waiting_for: vec![session(0xa0), session(0xb0)],
                blobs: vec![entry(BlobType::Tree, 0x04, 8, 61, 20)],
            },
            ObsoletePack {
                id: PackId(id(0x55)),
                marked_unix_ns: -1,
                armed: false,
                waiting_for: Vec::new(),
                blobs: sample_pack_header().entries,
            },
        ],
        ..sample_index()
    }
}

/// A 16-byte lock session: byte *i* is `s XOR i`.
pub(super) fn session(s: u8) -> [u8; 16] {
    std::array::from_fn(|i| s ^ i as u8)
}

pub(super) fn node(name: &[u8], kind: NodeKind, mode: u32) -> Node {
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

pub(super) fn sample_tree() -> Tree {
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

/// A tree holding a split directory (`NodeKind::DirParts`, format version 2).
pub(super) fn sample_tree_parts() -> Tree {
    Tree {
        nodes: vec![node(
            b"maildir",
            NodeKind::DirParts {
                parts: vec![BlobId(id(0x56)), BlobId(id(0x57))],
            },
            0o040_700,
        )],
    }
}

pub(super) fn sample_snapshot() -> Snapshot {
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
        original: None,
        summary: Summary {
            files_new: 1,
            files_changed: 2,
            files_unmodified: 3,
            dirs_new: 4,
            dirs_changed: 5,
            dirs_unmodified: 6,
            data_blobs: 7,
            data_added: 8,
            data_added_packed: 9,
            total_files_processed: 10,
            total_bytes_processed: 11,
            backup_start_ns: 12,
            backup_end_ns: -13,
            errors: 14,
            tree_blobs: 15,
        },
        lost: None,
    }
}

/// The sample snapshot as `repair snapshots` rewrites it: format version 3's tail fields
/// `original` and `lost` after the summary.
pub(super) fn sample_snapshot_v3() -> Snapshot {
    Snapshot {
        original: Some(SnapshotId(id(0x99))),
        lost: Some(Lost {
            files: 2,
            dirs: 1,
            paths: vec!["/srv/db/a".into(), "/srv/db/b".into()],
        }),
        ..sample_snapshot()
    }
}

/// A shared lock in the version-2 layout (no session), as repositories of formats 1 and 2
/// hold.
pub(super) fn sample_lock() -> Lock {
    Lock {
        time_unix_ns: 1_780_000_000_000_000_000,
        mode: LockMode::Shared,
        hostname: "db1".into(),
        username: "postgres".into(),
        pid: 4242,
        session: None,
    }
}

/// A maintenance lock in the version-3 layout, with its session.
pub(super) fn sample_lock_v3() -> Lock {
    Lock {
        mode: LockMode::Maintenance,
        session: Some(LockSession {
            id: *b"\x51\x52\x53\x54\x55\x56\x57\x58\x59\x5a\x5b\x5c\x5d\x5e\x5f\x60",
            started_unix_ns: 1_779_999_000_000_000_000,
        }),
        ..sample_lock()
    }
}

/// The same config at repository format 3 (pending-deletion packs, maintenance locks).
pub(super) fn sample_config_v3() -> Config {
    Config {
        format_version: 3,
        ..sample_config_v2()
    }
}

pub(super) const KINDS: [(ObjectKind, &str); 8] = [
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
pub(super) fn pack_blobs() -> Vec<(BlobType, Vec<u8>, bool)> {
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
pub(super) fn sample_pack() -> Vec<u8> {
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
pub(super) fn sealed_object(kind: ObjectKind, nonce_seed: u8, plaintext: &[u8]) -> Vec<u8> {
    let h = header(kind);
    let mut out = h.to_vec();
    out.extend_from_slice(&seal_with_nonce(nonce(nonce_seed), &h, plaintext));
    out
}

pub(super) fn framed(flag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(body);
    out
}

pub(super) fn chunk_cuts() -> Vec<usize> {
    let c = Chunker::new(CHUNK_PARAMS, master_key().gear_table());
    c.cut_all(&pseudo_random(CHUNK_INPUT_LEN, CHUNK_INPUT_SEED))
}

pub(super) fn gear_bytes() -> Vec<u8> {
    master_key()
        .gear_table()
        .iter()
        .flat_map(|g| g.to_le_bytes())
        .collect()
}

/// Every committed file and how to produce it. Fail files are mutations of the samples.
pub(super) fn all_files() -> Vec<(&'static str, Vec<u8>)> {
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
    let lock = sample_lock().encode().unwrap();
    let lock_v3 = sample_lock_v3().encode().unwrap();
    let tree_with = |nodes: Vec<Node>| Tree { nodes }.encode();
    let fifo = |name: &[u8]| node(name, NodeKind::Fifo, 0o010_644);
    let mut over_cap = sample_key_file();
    over_cap.kdf.m_kib = KdfParams::MAX.m_kib + 1;
    let mut odd_chunk = sample_config();
    odd_chunk.chunker.avg += 1;
    let mut short_blob = sample_index();
    short_blob.packs[0].blobs[0].length = 40;
    let mut long_blob = sample_index();
    long_blob.packs[0].blobs[0].length = 128 << 20;
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
    let parent_tag = snap.len() - 120 - 1 - (8 + 11) - 32 - 1;
    // Tree: the first node's kind (variant index) follows the node count and its name.
    let bad_enum = with(&sample_tree().encode(), 8 + 8 + 3, 5);
    let mut utf8 = lock.clone();
    utf8[9 + 8] = 0xff;
    let mut huge = sample_index().encode();
    huge[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let idx = sample_index().encode();
    let data_blob = master_key().blob_id(BLOB_ID_INPUT);

    files.extend([
        ("config.hex", sample_config().encode()),
        ("config_v2.hex", sample_config_v2().encode()),
        ("config_v3.hex", sample_config_v3().encode()),
        ("key_file.hex", key.clone()),
        ("key_wrap_ad.hex", sample_key_file().wrap_ad()),
        ("kdf_output.hex", {
            let k = kdf::derive(PASSPHRASE, KEY_KDF, &KEY_SALT).unwrap();
            k.to_vec()
        }),
        ("pack_header.hex", sample_pack_header().encode()),
        ("index.hex", idx.clone()),
        ("index_obsolete.hex", sample_index_obsolete().encode()),
        ("tree.hex", sample_tree().encode()),
        ("tree_parts.hex", sample_tree_parts().encode()),
        ("snapshot.hex", snap.clone()),
        // The same snapshot as written before `tree_blobs` was appended to the summary.
        ("snapshot_summary14.hex", snap[..snap.len() - 8].to_vec()),
        ("snapshot_v3.hex", sample_snapshot_v3().encode()),
        // The same snapshot rewritten by `tag`: `original` appended.
        ("snapshot_original.hex", {
            let mut s = sample_snapshot();
            s.original = Some(SnapshotId(id(0x99)));
            s.encode()
        }),
        ("lock.hex", lock.clone()),
        ("lock_v3.hex", lock_v3.clone()),
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
            "config_v2_object.hex",
            sealed_object(ObjectKind::Config, 0x64, &sample_config_v2().encode()),
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
        (
            "lock_v3_object.hex",
            sealed_object(ObjectKind::Lock, 0x65, &lock_v3),
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
            let mut c = sample_config_v2().encode();
            c.push(0);
            c
        }),
        (
            "fail_config_newer_version.hex",
            Config {
                format_version: 4,
                ..sample_config_v2()
            }
            .encode(),
        ),
        (
            "fail_config_unknown_feature.hex",
            Config {
                features: vec!["tree-parts".into(), "zz-unknown".into()],
                ..sample_config_v2()
            }
            .encode(),
        ),
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
        ("fail_lock_unknown_mode.hex", with(&lock_v3, 8, 3)),
        ("fail_bad_option.hex", with(&snap, parent_tag, 2)),
        ("fail_huge_length.hex", huge),
        ("fail_index_blob_too_short.hex", short_blob.encode()),
        ("fail_index_blob_too_long.hex", long_blob.encode()),
        ("fail_index_empty_obsolete.hex", {
            // A third field holding an empty list: no writer writes it.
            let mut b = idx.clone();
            b.extend_from_slice(&0u64.to_le_bytes());
            b
        }),
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
/// `cargo test --lib format::vectors::samples::regenerate -- --ignored`.
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
