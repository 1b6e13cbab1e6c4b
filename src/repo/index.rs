//! The in-memory index: every location of every blob, the state of every pack (live or
//! obsolete, FORMAT §14), and a `used` bit per location for check and prune.
//!
//! Compact by design (docs/DESIGN.md, "Index"): one `Vec` of 48-byte entries (32-byte id,
//! pack number with the blob type in its top bit, offset, sealed length, raw length) sorted
//! by (id, pack number), found through a radix table on the id's first 16 bits (ids are
//! uniform keyed hashes, so buckets are even) and a binary search inside the bucket. Pack ids
//! and states live once in a pack table; packs are numbered in `PackId` order, so which copy
//! of a duplicated blob is preferred does not depend on the order files were read. The `used`
//! bits cost 1/8 byte per location, allocated only when a walk first marks one. Blobs added after loading (adopted packs) go to a small
//! hash-map overlay. Building is `index/build.rs`; loading from storage is
//! `repo::index_files`.

mod build;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use build::IndexBuilder;

use crate::format::index::{IndexPack, LockSession};
use crate::format::pack::{BlobType, PackEntry};
use crate::id::{BlobId, IndexId, PackId};

/// Where one blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding the blob.
    pub pack: PackId,
    /// The blob's entry in that pack.
    pub entry: PackEntry,
}

/// A pack's state over the loaded index files (FORMAT §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackState {
    /// Named in some file's `packs`: its blobs are usable by every command.
    Live,
    /// Named only in `obsolete` lists: pending deletion; read only when no live copy exists,
    /// never deduplicated against.
    Obsolete,
}

/// One pack of the pack table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// The pack.
    pub id: PackId,
    /// Live or obsolete.
    pub state: PackState,
    /// Entries (locations) it holds.
    pub blobs: u32,
    /// Sum of its entries' sealed lengths.
    pub bytes: u64,
    /// Whether every entry is a tree blob (a tree pack, FORMAT §13: what a metadata cache
    /// keeps whole). Fits in the struct's padding: the pack table does not grow.
    pub trees_only: bool,
    /// Whether any entry is a tree blob (with `trees_only`, the pack's kind for prune's
    /// repacking rules, without a pass over the entries). Also in the padding.
    pub has_trees: bool,
}

/// What an obsolete pack's record says besides its blobs (FORMAT §14, `ObsoletePack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsoleteInfo {
    /// When a prune retired it (that prune's clock).
    pub marked_unix_ns: i64,
    /// Whether `waiting_for` is filled in.
    pub armed: bool,
    /// Lock sessions it waits for.
    pub waiting_for: Vec<LockSession>,
}

/// Used and unused bytes of one pack, from the `used` bits ([`Index::mark_used`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackUsage {
    /// The pack.
    pub id: PackId,
    /// Live or obsolete.
    pub state: PackState,
    /// Entries marked used.
    pub used_blobs: u32,
    /// Their sealed bytes.
    pub used_bytes: u64,
    /// Entries not marked (unreferenced, or a duplicate of a copy kept elsewhere).
    pub unused_blobs: u32,
    /// Their sealed bytes.
    pub unused_bytes: u64,
}

/// One pack's entries, in pack-header (offset) order, with their used bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackBlobs {
    /// The pack.
    pub id: PackId,
    /// Live or obsolete.
    pub state: PackState,
    /// Its entries, in offset order.
    pub entries: Vec<PackEntry>,
    /// Whether each entry (same position) is marked used.
    pub used: Vec<bool>,
}

/// Packs one index can number: 2^27 (134 million; 1 PiB of the default 8 MiB packs).
pub(crate) const MAX_PACKS: u32 = 1 << 27;
/// Radix buckets: the first 16 bits of an id.
const BUCKETS: usize = 1 << 16;

// The location is 112 bits, low to high: pack number (27), tree flag (1), offset (30),
// sealed length (27), raw length (27). The widths follow from the format's caps, which every
// entry is checked against before it reaches the index (`PackEntry::validate`): a pack is at
// most 1 GiB, so an offset is below 2^30; a sealed blob is below 2^27 bytes; content is at
// most 64 MiB = 2^26.
const PACK_BITS: u32 = 27;
const OFFSET_SHIFT: u32 = PACK_BITS + 1;
const LENGTH_SHIFT: u32 = OFFSET_SHIFT + 30;
const RAW_SHIFT: u32 = LENGTH_SHIFT + 27;
const _: () = {
    assert!(MAX_PACKS == 1 << PACK_BITS);
    assert!(crate::format::pack::MAX_PACK_LEN <= 1 << 30);
    assert!(crate::format::pack::MAX_SEALED_BLOB_LEN < 1 << 27);
    assert!(crate::format::pack::MAX_BLOB_LEN <= 1 << 26);
    assert!(RAW_SHIFT + 27 == 14 * 8);
};

/// One location: 46 bytes, byte-aligned, no padding (pinned by a test): the blob id and a
/// bit-packed location (see the widths above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: [u8; 32],
    loc: [u8; 14],
}

impl Entry {
    /// The entry for `e` in pack number `pack`, or `None` if a value exceeds its width
    /// (never for a validated entry in a pack below [`MAX_PACKS`]).
    fn new(pack: u32, e: &PackEntry) -> Option<Self> {
        let fits = pack < MAX_PACKS
            && e.offset < 1 << 30
            && e.length < 1 << 27
            && e.raw_len <= crate::format::pack::MAX_BLOB_LEN;
        if !fits {
            return None;
        }
        let tree = u128::from(e.blob_type == BlobType::Tree);
        let bits = u128::from(pack)
            | tree << PACK_BITS
            | u128::from(e.offset) << OFFSET_SHIFT
            | u128::from(e.length) << LENGTH_SHIFT
            | u128::from(e.raw_len) << RAW_SHIFT;
        let mut loc = [0u8; 14];
        loc.copy_from_slice(&bits.to_le_bytes()[..14]);
        Some(Self { id: e.id.0.0, loc })
    }

    fn bits(&self) -> u128 {
        let mut b = [0u8; 16];
        b[..14].copy_from_slice(&self.loc);
        u128::from_le_bytes(b)
    }

    fn field(&self, shift: u32, width: u32) -> u32 {
        // Truncation is the point: every field is at most 30 bits wide.
        ((self.bits() >> shift) & ((1u128 << width) - 1)) as u32
    }

    fn pack_number(&self) -> u32 {
        // The low 27 bits of the first four bytes (the hottest field: read on every lookup).
        let [a, b, c, d, ..] = self.loc;
        u32::from_le_bytes([a, b, c, d]) & (MAX_PACKS - 1)
    }

    /// Gives the entry another pack number (below [`MAX_PACKS`], as every number is).
    fn set_pack_number(&mut self, pack: u32) {
        let bits = self.bits() & !u128::from(MAX_PACKS - 1) | u128::from(pack & (MAX_PACKS - 1));
        self.loc.copy_from_slice(&bits.to_le_bytes()[..14]);
    }

    fn is_tree(&self) -> bool {
        self.loc[3] & 1 << (PACK_BITS - 24) != 0
    }

    fn offset(&self) -> u32 {
        self.field(OFFSET_SHIFT, 30)
    }

    fn length(&self) -> u32 {
        self.field(LENGTH_SHIFT, 27)
    }

    fn raw_len(&self) -> u32 {
        self.field(RAW_SHIFT, 27)
    }

    fn pack_entry(&self) -> PackEntry {
        PackEntry {
            blob_type: if self.is_tree() {
                BlobType::Tree
            } else {
                BlobType::Data
            },
            id: BlobId(crate::id::Id(self.id)),
            offset: self.offset(),
            length: self.length(),
            raw_len: self.raw_len(),
        }
    }

    fn bucket(id: &[u8; 32]) -> usize {
        usize::from(u16::from_be_bytes([id[0], id[1]]))
    }
}

/// Blob id -> every location, for every pack named by a loaded, non-superseded index file.
#[derive(Debug, Default)]
pub struct Index {
    /// Sorted by (id, pack number); duplicates of the same location removed.
    entries: Vec<Entry>,
    /// `entries[buckets[b]..buckets[b + 1]]` hold the ids starting with `b`; empty when
    /// `entries` is.
    buckets: Vec<u32>,
    /// One bit per entry of `entries`, allocated by the first [`Index::mark_used`] (backups
    /// never mark, so they never pay for it).
    used: OnceLock<Vec<AtomicU64>>,
    /// Loaded packs sorted by id (found by binary search), then packs added after loading.
    packs: Vec<PackInfo>,
    /// How many of `packs` were loaded (the sorted prefix).
    sorted_packs: usize,
    /// Packs added after loading, by id.
    added_packs: HashMap<PackId, u32>,
    obsolete: HashMap<u32, ObsoleteInfo>,
    /// Locations added after loading ([`Index::add_pack`]): live, without used bits.
    overlay: HashMap<BlobId, Vec<Entry>>,
    /// Distinct blob ids.
    distinct: usize,
    /// Index files that could not be read, with why (skipped; see `repo::index_files`).
    damaged: Vec<(IndexId, String)>,
    /// Packs indexed from their own headers because no readable index file names them.
    recovered: Vec<PackId>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a live pack's blobs after loading (an adopted or newly written pack). A pack
    /// already known is not added again; one known as obsolete becomes live (live wins).
    pub fn add_pack(&mut self, pack: &IndexPack) {
        if let Some(n) = self.pack_number(&pack.id) {
            if let Some(p) = self.packs.get_mut(n as usize) {
                p.state = PackState::Live;
            }
            self.obsolete.remove(&n);
            return;
        }
        let Ok(n) = u32::try_from(self.packs.len()) else {
            return;
        };
        if n >= MAX_PACKS {
            // 2^27 packs (1 PiB at the default size) is out of reach; refuse quietly rather
            // than corrupt another pack's entries.
            return;
        }
        let mut info = PackInfo {
            id: pack.id,
            state: PackState::Live,
            blobs: 0,
            bytes: 0,
            trees_only: !pack.blobs.is_empty(),
            has_trees: false,
        };
        for e in &pack.blobs {
            // A writer's own entries always fit; one that did not would only be stored again.
            let Some(entry) = Entry::new(n, e) else {
                continue;
            };
            if self.main_range(&e.id).is_empty() && !self.overlay.contains_key(&e.id) {
                self.distinct += 1;
            }
            self.overlay.entry(e.id).or_default().push(entry);
            info.blobs += 1;
            info.bytes += u64::from(e.length);
            info.trees_only &= e.blob_type == BlobType::Tree;
            info.has_trees |= e.blob_type == BlobType::Tree;
        }
        self.packs.push(info);
        self.added_packs.insert(pack.id, n);
    }

    /// The pack's number: its place in the table.
    fn pack_number(&self, id: &PackId) -> Option<u32> {
        let sorted = self.packs.get(..self.sorted_packs).unwrap_or(&[]);
        match sorted.binary_search_by(|p| p.id.cmp(id)) {
            Ok(n) => u32::try_from(n).ok(),
            Err(_) => self.added_packs.get(id).copied(),
        }
    }

    /// The span of `entries` holding `id`, as (start, end).
    fn main_span(&self, id: &BlobId) -> (usize, usize) {
        let key = &id.0.0;
        let b = Entry::bucket(key);
        let (Some(&lo), Some(&hi)) = (self.buckets.get(b), self.buckets.get(b + 1)) else {
            return (0, 0);
        };
        let (lo, hi) = (lo as usize, hi as usize);
        let bucket = self.entries.get(lo..hi).unwrap_or(&[]);
        let start = bucket.partition_point(|e| e.id < *key);
        let len = bucket
            .get(start..)
            .map_or(0, |rest| rest.partition_point(|e| e.id == *key));
        (lo + start, lo + start + len)
    }

    /// The sorted entries holding `id`.
    fn main_range(&self, id: &BlobId) -> &[Entry] {
        let (s, e) = self.main_span(id);
        self.entries.get(s..e).unwrap_or(&[])
    }

    fn entry_is_live(&self, e: &Entry) -> bool {
        self.packs
            .get(e.pack_number() as usize)
            .is_some_and(|p| p.state == PackState::Live)
    }

    fn overlay_entries(&self, id: &BlobId) -> &[Entry] {
        if self.overlay.is_empty() {
            return &[];
        }
        self.overlay.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    fn location(&self, e: &Entry) -> BlobLocation {
        BlobLocation {
            pack: self
                .packs
                .get(e.pack_number() as usize)
                .map(|p| p.id)
                .unwrap_or_default(),
            entry: e.pack_entry(),
        }
    }

    /// The preferred location: the first live one (lowest pack number), else the first
    /// obsolete one. Readers use it; a reader that fails on it may try [`Index::locations`].
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        let main = self.main_range(id);
        let over = self.overlay_entries(id);
        main.iter()
            .chain(over)
            .find(|e| self.entry_is_live(e))
            .or_else(|| main.first().or(over.first()))
            .map(|e| self.location(e))
    }

    /// A live location, if any: what backups deduplicate against (never an obsolete pack).
    pub fn get_live(&self, id: &BlobId) -> Option<BlobLocation> {
        self.main_range(id)
            .iter()
            .chain(self.overlay_entries(id))
            .find(|e| self.entry_is_live(e))
            .map(|e| self.location(e))
    }

    /// Whether a live pack holds the blob: the dedup test of backups, which MUST NOT reuse
    /// a blob only an obsolete pack holds (FORMAT §14).
    pub fn contains(&self, id: &BlobId) -> bool {
        self.main_range(id)
            .iter()
            .chain(self.overlay_entries(id))
            .any(|e| self.entry_is_live(e))
    }

    /// Whether any pack, live or obsolete, holds the blob.
    pub fn contains_any(&self, id: &BlobId) -> bool {
        !self.main_range(id).is_empty() || !self.overlay_entries(id).is_empty()
    }

    /// Every location of a blob: live ones first, each group in pack-number order.
    pub fn locations(&self, id: &BlobId) -> Vec<BlobLocation> {
        let all = self.main_range(id).iter().chain(self.overlay_entries(id));
        let (mut live, obsolete): (Vec<&Entry>, Vec<&Entry>) =
            all.partition(|e| self.entry_is_live(e));
        live.extend(obsolete);
        live.into_iter().map(|e| self.location(e)).collect()
    }

    /// Marks the blob used (its preferred location, as [`Index::get`] chooses it: a live copy
    /// if there is one, so duplicates elsewhere count as unused). Returns whether the blob is
    /// indexed at all. Safe to call from several threads at once. Locations added after
    /// loading have no used bit: they count as found, and are never reported unused.
    pub fn mark_used(&self, id: &BlobId) -> bool {
        let (start, end) = self.main_span(id);
        if start < end {
            let main = self.entries.get(start..end).unwrap_or(&[]);
            let pos = main.iter().position(|e| self.entry_is_live(e)).unwrap_or(0);
            let i = start + pos;
            let used = self.used.get_or_init(|| {
                (0..self.entries.len().div_ceil(64))
                    .map(|_| AtomicU64::new(0))
                    .collect()
            });
            if let Some(word) = used.get(i / 64) {
                word.fetch_or(1 << (i % 64), Ordering::Relaxed);
            }
            return true;
        }
        !self.overlay_entries(id).is_empty()
    }

    /// Whether [`Index::mark_used`] was called for the blob.
    pub fn is_used(&self, id: &BlobId) -> bool {
        let (start, end) = self.main_span(id);
        (start..end).any(|i| self.bit(i))
    }

    fn bit(&self, i: usize) -> bool {
        self.used
            .get()
            .and_then(|u| u.get(i / 64))
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    /// Clears every used bit (a second walk).
    pub fn clear_used(&self) {
        if let Some(u) = self.used.get() {
            u.iter().for_each(|w| w.store(0, Ordering::Relaxed));
        }
    }

    /// Used and unused blobs and bytes of every pack, in pack-table order.
    pub fn usage(&self) -> Vec<PackUsage> {
        let mut out: Vec<PackUsage> = self
            .packs
            .iter()
            .map(|p| PackUsage {
                id: p.id,
                state: p.state,
                used_blobs: 0,
                used_bytes: 0,
                unused_blobs: 0,
                unused_bytes: 0,
            })
            .collect();
        let overlay = self.overlay.values().flatten().map(|e| (e, true));
        let main = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e, self.bit(i)));
        for (e, used) in main.chain(overlay) {
            if let Some(u) = out.get_mut(e.pack_number() as usize) {
                let len = u64::from(e.length());
                if used {
                    u.used_blobs += 1;
                    u.used_bytes += len;
                } else {
                    u.unused_blobs += 1;
                    u.unused_bytes += len;
                }
            }
        }
        out
    }

    /// The pack's state, if some loaded index file names it.
    pub fn pack_state(&self, id: &PackId) -> Option<PackState> {
        self.pack(id).map(|p| p.state)
    }

    /// The pack's table entry.
    pub fn pack(&self, id: &PackId) -> Option<&PackInfo> {
        self.pack_number(id)
            .and_then(|n| self.packs.get(n as usize))
    }

    /// Whether a loaded index file names the pack, live or obsolete: a pack that is not
    /// named is an orphan.
    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_number(id).is_some()
    }

    /// Whether the pack is live.
    pub fn is_live(&self, id: &PackId) -> bool {
        self.pack_state(id) == Some(PackState::Live)
    }

    /// Whether the pack is obsolete (pending deletion).
    pub fn is_obsolete(&self, id: &PackId) -> bool {
        self.pack_state(id) == Some(PackState::Obsolete)
    }

    /// An obsolete pack's record.
    pub fn obsolete_info(&self, id: &PackId) -> Option<&ObsoleteInfo> {
        self.pack_number(id).and_then(|n| self.obsolete.get(&n))
    }

    /// Every obsolete pack with its record, in pack-table order.
    pub fn obsolete_packs(&self) -> impl Iterator<Item = (&PackInfo, &ObsoleteInfo)> + '_ {
        self.packs.iter().enumerate().filter_map(|(n, p)| {
            let n = u32::try_from(n).ok()?;
            self.obsolete.get(&n).map(|o| (p, o))
        })
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.distinct
    }

    /// Number of locations (a blob stored twice counts twice).
    pub fn locations_len(&self) -> usize {
        self.entries.len() + self.overlay.values().map(Vec::len).sum::<usize>()
    }

    /// Whether no blob is known.
    pub fn is_empty(&self) -> bool {
        self.distinct == 0
    }

    /// Every pack known, live and obsolete, in pack-table order.
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// The packs holding tree blobs only (live and obsolete).
    pub fn tree_packs(&self) -> Vec<PackId> {
        self.packs
            .iter()
            .filter(|p| p.trees_only)
            .map(|p| p.id)
            .collect()
    }

    /// Every pack's entries, grouped in batches of whole packs holding at most `max_blobs`
    /// entries each (a single larger pack is a batch of its own). Each batch costs one pass
    /// over the index and memory for its own entries only: this is how prune writes index
    /// files and how `check --read-data` compares packs, without a second copy of the index.
    pub fn pack_batches(&self, max_blobs: usize) -> PackBatches<'_> {
        PackBatches {
            index: self,
            next: 0,
            max_blobs: max_blobs.max(1),
        }
    }

    /// One pack's entries (one pass over the index; for many packs use
    /// [`Index::pack_batches`] or [`Index::entries_of`]).
    pub fn pack_entries(&self, id: &PackId) -> Vec<PackEntry> {
        let mut set = HashSet::new();
        set.insert(*id);
        self.entries_of(&set)
            .into_iter()
            .next()
            .map(|p| p.entries)
            .unwrap_or_default()
    }

    /// The entries of the given packs (one pass over the index), in pack-table order.
    pub fn entries_of(&self, packs: &HashSet<PackId>) -> Vec<PackBlobs> {
        let mut numbers: Vec<u32> = packs.iter().filter_map(|p| self.pack_number(p)).collect();
        numbers.sort_unstable();
        self.collect_packs(&numbers)
    }

    /// Entries of the packs numbered in `numbers` (sorted), in that order.
    fn collect_packs(&self, numbers: &[u32]) -> Vec<PackBlobs> {
        let slot: HashMap<u32, usize> = numbers.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut out: Vec<(Vec<(PackEntry, bool)>, u32)> =
            numbers.iter().map(|&n| (Vec::new(), n)).collect();
        let main = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e, self.bit(i)));
        let overlay = self.overlay.values().flatten().map(|e| (e, false));
        for (e, used) in main.chain(overlay) {
            if let Some(&i) = slot.get(&e.pack_number())
                && let Some((v, _)) = out.get_mut(i)
            {
                v.push((e.pack_entry(), used));
            }
        }
        out.into_iter()
            .filter_map(|(mut v, n)| {
                let p = self.packs.get(n as usize)?;
                v.sort_unstable_by_key(|(e, _)| e.offset);
                let (entries, used) = v.into_iter().unzip();
                Some(PackBlobs {
                    id: p.id,
                    state: p.state,
                    entries,
                    used,
                })
            })
            .collect()
    }

    /// Index files skipped as damaged while loading, with the reason.
    pub fn damaged(&self) -> &[(IndexId, String)] {
        &self.damaged
    }

    /// Packs indexed from their headers (no readable index file names them).
    pub fn recovered(&self) -> &[PackId] {
        &self.recovered
    }

    /// Every location (a blob stored twice is listed twice).
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.entries
            .iter()
            .chain(self.overlay.values().flatten())
            .map(|e| self.location(e))
    }
}

/// Iterator of [`Index::pack_batches`].
#[derive(Debug)]
pub struct PackBatches<'a> {
    index: &'a Index,
    next: usize,
    max_blobs: usize,
}

impl Iterator for PackBatches<'_> {
    type Item = Vec<PackBlobs>;

    fn next(&mut self) -> Option<Vec<PackBlobs>> {
        let packs = &self.index.packs;
        if self.next >= packs.len() {
            return None;
        }
        let mut numbers = Vec::new();
        let mut blobs = 0usize;
        while let Some(p) = packs.get(self.next) {
            let n = p.blobs as usize;
            if !numbers.is_empty() && blobs + n > self.max_blobs {
                break;
            }
            numbers.push(u32::try_from(self.next).ok()?);
            blobs += n;
            self.next += 1;
        }
        Some(self.index.collect_packs(&numbers))
    }
}

#[cfg(test)]
mod tests;
