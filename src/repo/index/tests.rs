//! Unit tests of the compact index: lookups against a plain map, every location kept, the
//! live / obsolete / superseded rules, used bits and per-pack batches.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::format::index::{IndexFile, ObsoletePack};
use crate::id::Id;

fn id_of(n: u64) -> [u8; 32] {
    // Uniform-looking ids, as keyed hashes are.
    *blake3::hash(&n.to_le_bytes()).as_bytes()
}

fn entry(b: [u8; 32], offset: u32) -> PackEntry {
    PackEntry {
        blob_type: if b[31] & 1 == 0 {
            BlobType::Data
        } else {
            BlobType::Tree
        },
        id: BlobId(Id(b)),
        offset,
        length: 50,
        raw_len: 10,
    }
}

fn pack(p: u8, blobs: &[[u8; 32]]) -> IndexPack {
    IndexPack {
        id: PackId(Id([p; 32])),
        blobs: blobs
            .iter()
            .enumerate()
            .map(|(i, b)| entry(*b, 8 + 50 * i as u32))
            .collect(),
    }
}

fn file(packs: Vec<IndexPack>) -> IndexFile {
    IndexFile {
        supersedes: Vec::new(),
        packs,
        obsolete: Vec::new(),
    }
}

fn obsolete(p: &IndexPack, armed: bool, waiting: &[u8]) -> ObsoletePack {
    ObsoletePack {
        id: p.id,
        marked_unix_ns: 100,
        armed,
        waiting_for: waiting.iter().map(|w| [*w; 16]).collect(),
        blobs: p.blobs.clone(),
    }
}

fn build(files: Vec<IndexFile>) -> Index {
    let mut b = IndexBuilder::new();
    for (i, f) in files.into_iter().enumerate() {
        b.add_file(IndexId(Id([i as u8 + 200; 32])), f);
    }
    b.build(Vec::new())
}

fn bid(b: [u8; 32]) -> BlobId {
    BlobId(Id(b))
}

#[test]
fn an_entry_is_46_bytes() {
    assert_eq!(std::mem::size_of::<Entry>(), 46);
    assert_eq!(std::mem::align_of::<Entry>(), 1);
}

#[test]
fn an_entry_keeps_every_field_at_the_format_caps() {
    use crate::format::pack::{MAX_BLOB_LEN, MAX_PACK_LEN, MAX_SEALED_BLOB_LEN};
    let cases = [
        (0, BlobType::Data, 8, 41, 0),
        (
            MAX_PACKS - 1,
            BlobType::Tree,
            8,
            MAX_SEALED_BLOB_LEN,
            MAX_BLOB_LEN,
        ),
        (
            12_345,
            BlobType::Data,
            (MAX_PACK_LEN as u32) - 41,
            41,
            MAX_BLOB_LEN,
        ),
        (
            MAX_PACKS - 1,
            BlobType::Data,
            (1 << 30) - 1,
            (1 << 27) - 1,
            1 << 26,
        ),
    ];
    for (pack, blob_type, offset, length, raw_len) in cases {
        let pe = PackEntry {
            blob_type,
            id: BlobId(Id(id_of(u64::from(offset)))),
            offset,
            length,
            raw_len,
        };
        assert!(pe.validate("t").is_ok() || offset + length > MAX_PACK_LEN as u32);
        let mut e = Entry::new(pack, &pe).unwrap();
        assert_eq!((e.pack_number(), e.pack_entry()), (pack, pe));
        e.set_pack_number(7);
        assert_eq!((e.pack_number(), e.pack_entry()), (7, pe));
    }
    let ok = entry(id_of(1), 8);
    assert!(Entry::new(MAX_PACKS, &ok).is_none());
    assert!(
        Entry::new(
            0,
            &PackEntry {
                offset: 1 << 30,
                ..ok
            }
        )
        .is_none()
    );
    assert!(
        Entry::new(
            0,
            &PackEntry {
                length: 1 << 27,
                ..ok
            }
        )
        .is_none()
    );
    assert!(
        Entry::new(
            0,
            &PackEntry {
                raw_len: MAX_BLOB_LEN + 1,
                ..ok
            }
        )
        .is_none()
    );
    // What does not fit is exactly what validation refuses.
    for bad in [
        PackEntry {
            length: MAX_SEALED_BLOB_LEN + 1,
            ..ok
        },
        PackEntry {
            offset: MAX_PACK_LEN as u32 - 40,
            ..ok
        },
        PackEntry {
            raw_len: MAX_BLOB_LEN + 1,
            ..ok
        },
    ] {
        assert!(bad.validate("t").is_err(), "{bad:?}");
    }
}

#[test]
fn lookups_agree_with_a_map_over_many_packs() {
    let mut files = Vec::new();
    let mut want: HashMap<[u8; 32], (PackId, u32)> = HashMap::new();
    for p in 0..40u8 {
        let ids: Vec<[u8; 32]> = (0..500).map(|i| id_of(u64::from(p) * 1000 + i)).collect();
        let ip = pack(p, &ids);
        for e in &ip.blobs {
            want.insert(e.id.0.0, (ip.id, e.offset));
        }
        files.push(file(vec![ip]));
    }
    let ix = build(files);
    assert_eq!(ix.len(), want.len());
    assert_eq!(ix.locations_len(), want.len());
    for (id, (p, off)) in &want {
        let loc = ix.get(&bid(*id)).unwrap();
        assert_eq!((loc.pack, loc.entry.offset), (*p, *off));
        assert_eq!(loc.entry.id.0.0, *id);
        assert_eq!(
            loc.entry.blob_type == BlobType::Tree,
            id[31] & 1 == 1,
            "type bit"
        );
        assert!(ix.contains(&bid(*id)));
    }
    for n in 100_000..101_000 {
        assert!(ix.get(&bid(id_of(n))).is_none());
        assert!(!ix.contains_any(&bid(id_of(n))));
    }
    // Ids sharing the first two bytes and neighbours of the extremes.
    assert!(ix.get(&bid([0; 32])).is_none() && ix.get(&bid([0xff; 32])).is_none());
}

#[test]
fn every_location_is_kept_and_the_first_live_one_preferred() {
    let shared = id_of(1);
    let a = pack(1, &[shared, id_of(2)]);
    let b = pack(2, &[id_of(3), shared]);
    let ix = build(vec![file(vec![b.clone()]), file(vec![a.clone()])]);
    let locs = ix.locations(&bid(shared));
    assert_eq!(locs.len(), 2);
    // Packs are numbered in id order, whatever the order files were read.
    assert_eq!(ix.get(&bid(shared)).unwrap().pack, a.id);
    let ix2 = build(vec![file(vec![a.clone()]), file(vec![b.clone()])]);
    assert_eq!(ix2.get(&bid(shared)).unwrap().pack, a.id);
    assert_eq!(ix.len(), 3);
    assert_eq!(ix.locations_len(), 4);
    assert_eq!(ix.iter().count(), 4);
}

#[test]
fn obsolete_blobs_are_readable_but_not_for_dedup_and_live_wins() {
    let only_obsolete = id_of(10);
    let both = id_of(11);
    let live = pack(1, &[both]);
    let old = pack(2, &[only_obsolete, both]);
    let mut f = file(vec![live.clone()]);
    f.obsolete = vec![obsolete(&old, true, &[7])];
    let ix = build(vec![f]);
    assert!(ix.is_obsolete(&old.id) && ix.is_live(&live.id));
    assert!(!ix.contains(&bid(only_obsolete)));
    assert!(ix.contains_any(&bid(only_obsolete)));
    assert_eq!(ix.get(&bid(only_obsolete)).unwrap().pack, old.id);
    assert!(ix.get_live(&bid(only_obsolete)).is_none());
    // A live copy is preferred even when the obsolete pack sorts first.
    assert_eq!(ix.get(&bid(both)).unwrap().pack, live.id);
    assert_eq!(ix.locations(&bid(both))[0].pack, live.id);
    let info = ix.obsolete_info(&old.id).unwrap();
    assert!(info.armed && info.waiting_for == vec![[7; 16]]);
    assert_eq!(ix.obsolete_packs().count(), 1);

    // Named live by another file: live wins, no obsolete record.
    let ix = build(vec![
        {
            let mut f = file(vec![]);
            f.obsolete = vec![obsolete(&old, true, &[])];
            f
        },
        file(vec![old.clone()]),
    ]);
    assert!(ix.is_live(&old.id) && ix.obsolete_info(&old.id).is_none());
    assert!(ix.contains(&bid(only_obsolete)));
    // Its entries, named twice, are one location each.
    assert_eq!(ix.locations(&bid(only_obsolete)).len(), 1);
}

#[test]
fn two_records_of_one_obsolete_pack_merge_conservatively() {
    let old = pack(2, &[id_of(1)]);
    let mk = |armed, w: &[u8], t| {
        let mut f = file(vec![]);
        let mut o = obsolete(&old, armed, w);
        o.marked_unix_ns = t;
        f.obsolete = vec![o];
        f
    };
    let ix = build(vec![mk(true, &[1, 2], 50), mk(false, &[2, 3], 40)]);
    let info = ix.obsolete_info(&old.id).unwrap();
    assert!(!info.armed);
    assert_eq!(info.marked_unix_ns, 40);
    let w: HashSet<_> = info.waiting_for.iter().copied().collect();
    assert_eq!(w, [[1; 16], [2; 16], [3; 16]].into_iter().collect());
}

#[test]
fn superseded_files_are_ignored() {
    let a = pack(1, &[id_of(1)]);
    let b = pack(2, &[id_of(2)]);
    let mut b_builder = IndexBuilder::new();
    let old = IndexId(Id([9; 32]));
    b_builder.add_file(old, file(vec![a.clone(), b.clone()]));
    // The new file keeps b and retires a.
    let mut new = file(vec![b.clone()]);
    new.supersedes = vec![old];
    new.obsolete = vec![obsolete(&a, false, &[])];
    b_builder.add_file(IndexId(Id([8; 32])), new);
    assert!(b_builder.is_superseded(&old));
    let ix = b_builder.build(Vec::new());
    assert!(
        ix.is_obsolete(&a.id),
        "the superseded file's live entry does not count"
    );
    assert!(ix.is_live(&b.id));

    // A pack named only by a superseded file is gone from the index.
    let mut bb = IndexBuilder::new();
    bb.add_file(old, file(vec![a.clone()]));
    let mut new = file(vec![b.clone()]);
    new.supersedes = vec![old];
    bb.add_file(IndexId(Id([8; 32])), new);
    assert!(!bb.named_packs().contains(&a.id));
    let ix = bb.build(Vec::new());
    assert!(!ix.has_pack(&a.id) && !ix.contains_any(&bid(id_of(1))));
    assert_eq!(ix.packs().len(), 1);
    assert_eq!(ix.locations_len(), 1);
}

#[test]
fn used_bits_give_per_pack_usage_and_duplicates_count_once() {
    let dup = id_of(1);
    let a = pack(1, &[dup, id_of(2), id_of(3)]);
    let b = pack(2, &[dup, id_of(4)]);
    let ix = build(vec![file(vec![a.clone(), b.clone()])]);
    assert!(ix.mark_used(&bid(dup)));
    assert!(ix.mark_used(&bid(id_of(4))));
    assert!(!ix.mark_used(&bid(id_of(99))));
    assert!(ix.is_used(&bid(dup)) && !ix.is_used(&bid(id_of(2))));
    let usage: HashMap<PackId, PackUsage> = ix.usage().into_iter().map(|u| (u.id, u)).collect();
    let ua = &usage[&a.id];
    let ub = &usage[&b.id];
    // The duplicate is used in pack a (preferred: lower id), unused in pack b.
    assert_eq!((ua.used_blobs, ua.unused_blobs), (1, 2));
    assert_eq!((ub.used_blobs, ub.unused_blobs), (1, 1));
    assert_eq!((ua.used_bytes, ua.unused_bytes), (50, 100));
    ix.clear_used();
    assert!(!ix.is_used(&bid(dup)));
}

#[test]
fn pack_batches_hold_whole_packs_in_offset_order() {
    let packs: Vec<IndexPack> = (0..10u8)
        .map(|p| {
            let ids: Vec<[u8; 32]> = (0..7).map(|i| id_of(u64::from(p) * 100 + i)).collect();
            pack(p, &ids)
        })
        .collect();
    let ix = build(vec![file(packs.clone())]);
    ix.mark_used(&packs[3].blobs[2].id);
    let batches: Vec<Vec<PackBlobs>> = ix.pack_batches(20).collect();
    assert!(
        batches
            .iter()
            .all(|b| b.iter().map(|p| p.entries.len()).sum::<usize>() <= 20)
    );
    let got: Vec<PackBlobs> = batches.into_iter().flatten().collect();
    assert_eq!(got.len(), 10);
    for p in &packs {
        let g = got.iter().find(|g| g.id == p.id).unwrap();
        assert_eq!(g.entries, p.blobs, "header order");
        assert_eq!(
            g.used.iter().filter(|u| **u).count(),
            usize::from(p.id == packs[3].id)
        );
    }
    // One pack larger than the limit is a batch of its own.
    assert_eq!(ix.pack_batches(1).count(), 10);
    assert_eq!(ix.pack_entries(&packs[5].id), packs[5].blobs);
    let set: HashSet<PackId> = [packs[1].id, packs[8].id].into_iter().collect();
    assert_eq!(ix.entries_of(&set).len(), 2);
}

#[test]
fn packs_added_after_loading_are_live_and_found() {
    let a = pack(1, &[id_of(1)]);
    let mut ix = build(vec![file(vec![a.clone()])]);
    let b = pack(2, &[id_of(1), id_of(2)]);
    ix.add_pack(&b);
    ix.add_pack(&b);
    assert_eq!(ix.len(), 2);
    assert_eq!(ix.locations(&bid(id_of(1))).len(), 2);
    assert_eq!(ix.get(&bid(id_of(2))).unwrap().pack, b.id);
    assert!(ix.mark_used(&bid(id_of(2))));
    assert_eq!(ix.pack_entries(&b.id), b.blobs);
    assert_eq!(ix.pack(&b.id).unwrap().blobs, 2);
    // An empty index takes packs too.
    let mut e = Index::new();
    assert!(e.is_empty() && e.get(&bid(id_of(1))).is_none());
    e.add_pack(&a);
    assert!(e.contains(&bid(id_of(1))));
}

#[test]
fn a_pack_table_row_stays_48_bytes() {
    // `trees_only` and `has_trees` live in the padding: the flags cost no memory.
    assert_eq!(std::mem::size_of::<PackInfo>(), 48);
}

#[test]
fn tree_packs_are_those_holding_trees_only() {
    // `entry` makes a blob a tree when the last byte of its id is odd.
    let tree = |n: u8| {
        let mut b = [n; 32];
        b[31] = 1;
        b
    };
    let data = |n: u8| {
        let mut b = [n; 32];
        b[31] = 0;
        b
    };
    let trees = pack(1, &[tree(1), tree(2)]);
    let mixed = pack(2, &[tree(3), data(4)]);
    let datas = pack(3, &[data(5)]);
    let retired = pack(4, &[tree(6)]);
    let mut f = file(vec![trees.clone(), mixed, datas]);
    f.obsolete.push(obsolete(&retired, false, &[]));
    let mut index = build(vec![f]);
    assert_eq!(index.tree_packs(), vec![trees.id, retired.id]);
    // Added after loading (a backup's own packs): the same rule.
    index.add_pack(&pack(5, &[tree(7)]));
    index.add_pack(&pack(6, &[data(8), tree(9)]));
    assert_eq!(
        index.tree_packs(),
        vec![trees.id, retired.id, PackId(Id([5; 32]))]
    );
}
