//! Building an [`Index`] from index files: files are added one at a time as they are
//! decoded (so a decoded file is dropped before the next is read, and memory holds one copy
//! of the index, not two), then `build` applies `supersedes` and the live / obsolete rules
//! of FORMAT §14, sorts the entries in place and builds the lookup tables.
//!
//! The entry vector grows by doubling; glibc moves large blocks with `mremap`, so growth does
//! not copy or double the resident size (measured in docs/DESIGN.md, "Index").

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::{BUCKETS, Entry, Index, MAX_PACKS, ObsoleteInfo, PackInfo, PackState};
use crate::format::index::{IndexFile, IndexPack};
use crate::id::{IndexId, PackId};

/// What one loaded file named, kept until `build` knows whether it is superseded.
#[derive(Debug)]
struct FileRecord {
    id: IndexId,
    supersedes: Vec<IndexId>,
    live: Vec<u32>,
    obsolete: Vec<(u32, ObsoleteInfo)>,
}

/// Collects index files, then builds the [`Index`].
#[derive(Debug, Default)]
pub(crate) struct IndexBuilder {
    entries: Vec<Entry>,
    packs: Vec<PackId>,
    pack_numbers: HashMap<PackId, u32>,
    files: Vec<FileRecord>,
    /// Packs indexed from their headers: live, named by no file.
    recovered: Vec<u32>,
    damaged: Vec<(IndexId, String)>,
    /// Set when more packs were seen than the pack number can hold: those are skipped.
    overflow: bool,
}

impl IndexBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn number(&mut self, id: PackId) -> Option<u32> {
        if let Some(&n) = self.pack_numbers.get(&id) {
            return Some(n);
        }
        let n = u32::try_from(self.packs.len())
            .ok()
            .filter(|n| *n < MAX_PACKS);
        let Some(n) = n else {
            self.overflow = true;
            return None;
        };
        self.packs.push(id);
        self.pack_numbers.insert(id, n);
        Some(n)
    }

    /// Adds a pack's entries. Every entry was validated on decoding, which bounds each value
    /// within its width; one that still did not fit would be dropped (its blob then missing).
    fn add_entries(&mut self, n: u32, blobs: &[crate::format::pack::PackEntry]) {
        self.entries
            .extend(blobs.iter().filter_map(|e| Entry::new(n, e)));
    }

    /// Adds one decoded index file (consumed: its memory is released here).
    pub(crate) fn add_file(&mut self, id: IndexId, file: IndexFile) {
        let mut rec = FileRecord {
            id,
            supersedes: file.supersedes,
            live: Vec::with_capacity(file.packs.len()),
            obsolete: Vec::with_capacity(file.obsolete.len()),
        };
        for p in file.packs {
            if let Some(n) = self.number(p.id) {
                self.add_entries(n, &p.blobs);
                rec.live.push(n);
            }
        }
        for o in file.obsolete {
            if let Some(n) = self.number(o.id) {
                self.add_entries(n, &o.blobs);
                let info = ObsoleteInfo {
                    marked_unix_ns: o.marked_unix_ns,
                    armed: o.armed,
                    waiting_for: o.waiting_for,
                };
                rec.obsolete.push((n, info));
            }
        }
        self.files.push(rec);
    }

    /// Adds a pack found from its own header (live, named by no file).
    pub(crate) fn add_recovered(&mut self, pack: &IndexPack) {
        if let Some(n) = self.number(pack.id) {
            self.add_entries(n, &pack.blobs);
            self.recovered.push(n);
        }
    }

    pub(crate) fn note_damaged(&mut self, id: IndexId, reason: String) {
        self.damaged.push((id, reason));
    }

    pub(crate) fn damaged(&self) -> &[(IndexId, String)] {
        &self.damaged
    }

    /// Whether a loaded file names `id` in its `supersedes`.
    pub(crate) fn is_superseded(&self, id: &IndexId) -> bool {
        self.files.iter().any(|f| f.supersedes.contains(id))
    }

    fn superseded(&self) -> HashSet<IndexId> {
        self.files
            .iter()
            .flat_map(|f| f.supersedes.iter().copied())
            .collect()
    }

    /// The packs a loaded, non-superseded file (or a header) names, live or obsolete.
    pub(crate) fn named_packs(&self) -> HashSet<PackId> {
        let superseded = self.superseded();
        let current = self.files.iter().filter(|f| !superseded.contains(&f.id));
        let numbers = current
            .flat_map(|f| f.live.iter().chain(f.obsolete.iter().map(|(n, _)| n)))
            .chain(&self.recovered);
        numbers
            .filter_map(|&n| self.packs.get(n as usize).copied())
            .collect()
    }

    /// Whether more packs were seen than an index can number (2^27); the excess is skipped.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The index: packs named only by superseded files dropped, live winning over obsolete,
    /// packs renumbered in id order, entries sorted and deduplicated in place.
    pub(crate) fn build(self, recovered_ids: Vec<PackId>) -> Index {
        let superseded = self.superseded();
        // 0 = named by no current file (dropped), 1 = obsolete, 2 = live.
        let mut state = vec![0u8; self.packs.len()];
        let mut records: HashMap<u32, ObsoleteInfo> = HashMap::new();
        for &n in &self.recovered {
            state[n as usize] = 2;
        }
        for f in self.files.iter().filter(|f| !superseded.contains(&f.id)) {
            for &n in &f.live {
                state[n as usize] = 2;
            }
            for (n, info) in &f.obsolete {
                let s = &mut state[*n as usize];
                *s = (*s).max(1);
                merge_obsolete(records.entry(*n), info);
            }
        }
        // Renumber the kept packs in id order.
        let mut kept: Vec<(PackId, u32)> = self
            .packs
            .iter()
            .enumerate()
            .filter(|(n, _)| state[*n] != 0)
            .filter_map(|(n, id)| Some((*id, u32::try_from(n).ok()?)))
            .collect();
        kept.sort_unstable();
        let mut renumber = vec![u32::MAX; self.packs.len()];
        for (new, (_, old)) in kept.iter().enumerate() {
            renumber[*old as usize] = new as u32;
        }
        let mut entries = self.entries;
        entries.retain_mut(|e| {
            let old = e.pack_number() as usize;
            match renumber.get(old) {
                Some(&new) if new != u32::MAX => {
                    e.set_pack_number(new);
                    true
                }
                _ => false,
            }
        });
        // The ids decide almost every comparison; the packed fields are unpacked only on a tie.
        entries.par_sort_unstable_by(|a, b| {
            a.id.cmp(&b.id)
                .then_with(|| a.pack_number().cmp(&b.pack_number()))
                .then_with(|| a.offset().cmp(&b.offset()))
        });
        entries.dedup();
        entries.shrink_to_fit();

        let mut packs: Vec<PackInfo> = kept
            .iter()
            .map(|(id, old)| PackInfo {
                id: *id,
                state: if state[*old as usize] == 2 {
                    PackState::Live
                } else {
                    PackState::Obsolete
                },
                blobs: 0,
                bytes: 0,
                // Cleared below by any data blob; a pack with no entries is not a tree pack.
                trees_only: true,
                has_trees: false,
            })
            .collect();
        let mut buckets = Vec::new();
        let mut distinct = 0;
        if !entries.is_empty() {
            buckets = vec![0u32; BUCKETS + 1];
            let mut last: Option<&[u8; 32]> = None;
            for e in &entries {
                buckets[Entry::bucket(&e.id) + 1] += 1;
                if last != Some(&e.id) {
                    distinct += 1;
                }
                last = Some(&e.id);
                if let Some(p) = packs.get_mut(e.pack_number() as usize) {
                    p.blobs += 1;
                    p.bytes += u64::from(e.length());
                    p.trees_only &= e.is_tree();
                    p.has_trees |= e.is_tree();
                }
            }
            for b in 1..=BUCKETS {
                buckets[b] += buckets[b - 1];
            }
        }
        for p in packs.iter_mut().filter(|p| p.blobs == 0) {
            p.trees_only = false;
        }
        let obsolete = records
            .into_iter()
            .filter(|(old, _)| state[*old as usize] == 1)
            .filter_map(|(old, info)| Some((*renumber.get(old as usize)?, info)))
            .collect();
        let packs_len = packs.len();
        Index {
            entries,
            buckets,
            used: OnceLock::new(),
            packs,
            sorted_packs: packs_len,
            added_packs: HashMap::new(),
            obsolete,
            overlay: HashMap::new(),
            distinct,
            damaged: self.damaged,
            recovered: recovered_ids,
        }
    }
}

/// Two current files naming the same pack obsolete (two prunes' files both left, which a
/// prune never does, but a reader must still decide): the conservative union. It is armed
/// only if both are, waits for every session either waits for, and keeps the earlier mark.
fn merge_obsolete(
    slot: std::collections::hash_map::Entry<'_, u32, ObsoleteInfo>,
    info: &ObsoleteInfo,
) {
    use std::collections::hash_map::Entry as Slot;
    match slot {
        Slot::Vacant(v) => {
            v.insert(info.clone());
        }
        Slot::Occupied(mut o) => {
            let o = o.get_mut();
            o.armed &= info.armed;
            o.marked_unix_ns = o.marked_unix_ns.min(info.marked_unix_ns);
            for s in &info.waiting_for {
                if !o.waiting_for.contains(s) {
                    o.waiting_for.push(*s);
                }
            }
        }
    }
}
