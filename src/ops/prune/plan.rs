//! The prune plan: a pure decision over per-pack usage, printable (`--dry-run`) and testable
//! without a backend. It decides what happens to each live pack (keep, repack, retire) and to
//! each obsolete pack (wait, resurrect, delete); it does no I/O.
//!
//! The rules for live packs follow restic's `prune` (internal/repository/prune.go) so that its
//! flags mean the same: a pack with no used blob is removed; tree and mixed packs with unused
//! blobs are repacked whatever the budget; other partly used packs are repacked, most wasteful
//! first, until the unused bytes left are within `--max-unused`; `--max-repack-size` caps the
//! bytes read for repacking. cista differs in one deliberate way: "removed" means *retired*
//! (named obsolete, deleted once no process that could still read it is running; FORMAT §18),
//! so a backup running beside the prune never loses a blob it reused.

use std::collections::HashSet;

use crate::id::PackId;

/// What blobs a pack holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackKind {
    /// Only data blobs.
    Data,
    /// Only tree blobs.
    Tree,
    /// Both (written by another tool or an older cista); always repacked when partly used.
    Mixed,
}

/// Usage of one live pack, as measured from the index and the snapshots' trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackUse {
    /// The pack.
    pub id: PackId,
    /// Its stored size (from the listing).
    pub size: u64,
    /// Sealed bytes of its blobs that some snapshot needs (one copy of each blob counts).
    pub used_bytes: u64,
    /// Sealed bytes of its other blobs (unreferenced, or duplicates of a copy kept elsewhere).
    pub unused_bytes: u64,
    /// Blobs counted in `used_bytes`.
    pub used_blobs: u64,
    /// Blobs counted in `unused_bytes`.
    pub unused_blobs: u64,
    /// What it holds.
    pub kind: PackKind,
}

/// How much unused space may remain after pruning (restic's `--max-unused`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// At most this percentage of the repository's size after pruning (0 ..< 100).
    Percent(f64),
    /// At most this many bytes.
    Bytes(u64),
    /// Never repack for space (only unused packs are removed).
    Unlimited,
}

impl MaxUnused {
    /// The unused bytes tolerated when `used` bytes remain: `p%` of the repository after
    /// pruning means `unused / (used + unused) <= p`, i.e. `unused <= used * p / (100 - p)`.
    pub fn bytes_for(self, used: u64) -> u64 {
        match self {
            Self::Percent(p) if p <= 0.0 => 0,
            Self::Percent(p) if p >= 100.0 => u64::MAX,
            Self::Percent(p) => (used as f64 * p / (100.0 - p)) as u64,
            Self::Bytes(b) => b,
            Self::Unlimited => u64::MAX,
        }
    }

    /// Parses restic's syntax: `unlimited`, `N%`, or a size (`500m`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "unlimited" {
            return Ok(Self::Unlimited);
        }
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("--max-unused {s:?}: not a percentage"))?;
            if !(0.0..100.0).contains(&v) {
                return Err(format!(
                    "--max-unused {s:?}: a percentage must be at least 0% and below 100%"
                ));
            }
            return Ok(Self::Percent(v));
        }
        crate::ops::backup::parse_size(s)
            .map(Self::Bytes)
            .map_err(|_| {
                format!("--max-unused {s:?}: give `unlimited`, a percentage (5%) or a size (500m)")
            })
    }
}

/// Options of the plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Unused space tolerated after pruning.
    pub max_unused: MaxUnused,
    /// Stop choosing packs to repack once this many bytes would be read (None: no cap).
    pub max_repack_bytes: Option<u64>,
    /// Also repack fully used packs smaller than half the pack target (`--repack-small`),
    /// when there are at least [`SMALL_PACKS_WORTH_IT`] of them.
    pub repack_small: bool,
    /// Repack only tree packs (`--repack-cacheable-only`).
    pub repack_cacheable_only: bool,
    /// The repository's pack target size.
    pub pack_size: u64,
}

/// Fewer small packs than this are left alone: merging two or three gains nothing and would
/// repack the one small pack every run forever (restic's threshold too).
pub const SMALL_PACKS_WORTH_IT: usize = 10;

/// What happens to a live pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveAction {
    /// Stays as it is.
    Keep,
    /// Its used blobs are copied into new packs; then it is retired.
    Repack,
    /// Nothing in it is used: retired (obsolete, deleted when no reader can need it).
    Retire,
}

/// One obsolete pack as recorded in the index, with what the plan knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsoleteUse {
    /// The pack.
    pub id: PackId,
    /// Whether it is still in storage.
    pub present: bool,
    /// Whether its wait list was recorded (FORMAT §18: armed).
    pub armed: bool,
    /// Lock sessions that were live when it was retired.
    pub waiting_for: Vec<[u8; 16]>,
    /// Whether it holds a used blob that no live pack holds.
    pub holds_needed_blob: bool,
    /// Its size (0 when missing).
    pub size: u64,
}

/// What happens to an obsolete pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObsoleteAction {
    /// Not yet due (a session it waits for is still live, or it is not armed yet): left
    /// obsolete; armed this run if it was not.
    Wait,
    /// Holds a blob a snapshot needs and no live pack has: named live again.
    Resurrect,
    /// Due and needed by nothing: deleted, then dropped from the index.
    Delete,
    /// Already gone from storage: dropped from the index.
    Forget,
}

/// Totals of a plan, restic's categories (sealed bytes and blob counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanStats {
    /// Blobs and bytes some snapshot needs.
    pub used_blobs: u64,
    /// See `used_blobs`.
    pub used_bytes: u64,
    /// Blobs and bytes nothing needs (duplicates included).
    pub unused_blobs: u64,
    /// See `unused_blobs`.
    pub unused_bytes: u64,
    /// Packs kept as they are.
    pub packs_keep: u64,
    /// Packs repacked.
    pub packs_repack: u64,
    /// Packs retired whole.
    pub packs_retire: u64,
    /// Bytes read by repacking (used and unused blobs of repacked packs).
    pub repack_bytes: u64,
    /// Unused bytes freed by repacking.
    pub repack_freed_bytes: u64,
    /// Bytes of packs retired whole.
    pub retire_bytes: u64,
    /// Obsolete packs deleted this run and their bytes.
    pub obsolete_delete: u64,
    /// See `obsolete_delete`.
    pub obsolete_delete_bytes: u64,
    /// Obsolete packs still waiting.
    pub obsolete_wait: u64,
    /// Obsolete packs named live again.
    pub obsolete_resurrect: u64,
}

impl PlanStats {
    /// Unused bytes left after the plan is carried out.
    pub fn unused_after(&self) -> u64 {
        // A retired pack holds only unused blobs, so all its bytes count as unused.
        self.unused_bytes
            .saturating_sub(self.repack_freed_bytes)
            .saturating_sub(self.retire_bytes)
    }
}

/// The decision for every pack.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Live packs and their action, in the order given.
    pub live: Vec<(PackId, LiveAction)>,
    /// Obsolete packs and their action, in the order given.
    pub obsolete: Vec<(PackId, ObsoleteAction)>,
    /// Totals.
    pub stats: PlanStats,
}

impl Plan {
    /// Live packs with this action.
    pub fn live_with(&self, action: LiveAction) -> impl Iterator<Item = &PackId> {
        self.live
            .iter()
            .filter(move |(_, a)| *a == action)
            .map(|(id, _)| id)
    }

    /// Obsolete packs with this action.
    pub fn obsolete_with(&self, action: ObsoleteAction) -> impl Iterator<Item = &PackId> {
        self.obsolete
            .iter()
            .filter(move |(_, a)| *a == action)
            .map(|(id, _)| id)
    }

    /// Whether carrying it out changes nothing.
    pub fn is_empty(&self) -> bool {
        self.live.iter().all(|(_, a)| *a == LiveAction::Keep)
            && self
                .obsolete
                .iter()
                .all(|(_, a)| *a == ObsoleteAction::Wait)
    }
}

/// Decides what happens to each obsolete pack. `live_sessions` are the sessions of the locks
/// live now (listed before the snapshots were); a v2 lock of unknown session is passed as
/// `unknown_live = true`, which makes every sweep wait.
pub fn decide_obsolete(
    obsolete: &[ObsoleteUse],
    live_sessions: &HashSet<[u8; 16]>,
    unknown_live: bool,
) -> Vec<(PackId, ObsoleteAction)> {
    obsolete
        .iter()
        .map(|o| {
            let action = if !o.present {
                ObsoleteAction::Forget
            } else if o.holds_needed_blob {
                // Always safe: naming a pack live never loses data.
                ObsoleteAction::Resurrect
            } else if !o.armed
                || unknown_live
                || o.waiting_for.iter().any(|s| live_sessions.contains(s))
            {
                ObsoleteAction::Wait
            } else {
                ObsoleteAction::Delete
            };
            (o.id, action)
        })
        .collect()
}

/// Decides what happens to each live pack, as restic does (module doc).
pub fn decide_live(packs: &[PackUse], opts: &PlanOptions) -> Vec<(PackId, LiveAction)> {
    let small_limit = opts.pack_size / 2;
    let used_total: u64 = packs.iter().map(|p| p.used_bytes).sum();
    let unused_total: u64 = packs.iter().map(|p| p.unused_bytes).sum();
    let mut actions: Vec<LiveAction> = vec![LiveAction::Keep; packs.len()];
    let mut candidates: Vec<usize> = Vec::new();
    let mut small: Vec<usize> = Vec::new();
    let mut freed = 0u64;
    for (i, p) in packs.iter().enumerate() {
        let bytes = p.used_bytes + p.unused_bytes;
        if p.used_blobs == 0 {
            actions[i] = LiveAction::Retire;
            freed += p.unused_bytes;
        } else if opts.repack_cacheable_only && p.kind != PackKind::Tree {
            // kept
        } else if p.unused_blobs == 0 && p.kind != PackKind::Mixed {
            if opts.repack_small && bytes < small_limit {
                small.push(i);
            }
        } else {
            candidates.push(i);
        }
    }
    if small.len() >= SMALL_PACKS_WORTH_IT {
        candidates.extend(small);
    }
    // Tree and mixed packs first, then packs below the target, then the most wasteful.
    let is_small = |p: &PackUse| p.used_bytes + p.unused_bytes < opts.pack_size;
    candidates.sort_by(|&a, &b| {
        let (pa, pb) = (&packs[a], &packs[b]);
        let data_a = pa.kind == PackKind::Data;
        let data_b = pb.kind == PackKind::Data;
        data_a
            .cmp(&data_b)
            .then_with(|| is_small(pb).cmp(&is_small(pa)))
            .then_with(|| {
                // unused/used descending, compared without division.
                let l = u128::from(pa.unused_bytes) * u128::from(pb.used_bytes);
                let r = u128::from(pb.unused_bytes) * u128::from(pa.used_bytes);
                r.cmp(&l)
            })
            .then_with(|| pa.id.0.0.cmp(&pb.id.0.0))
    });
    let max_unused_after = opts.max_unused.bytes_for(used_total);
    let mut repack_bytes = 0u64;
    for i in candidates {
        let p = &packs[i];
        let bytes = p.used_bytes + p.unused_bytes;
        let remaining_unused = unused_total.saturating_sub(freed);
        let within_budget = remaining_unused <= max_unused_after;
        let over_repack_cap = opts
            .max_repack_bytes
            .is_some_and(|cap| repack_bytes + bytes > cap);
        let repack = if over_repack_cap {
            false
        } else if p.kind != PackKind::Data {
            true
        } else {
            !(within_budget && bytes >= small_limit)
        };
        if repack {
            actions[i] = LiveAction::Repack;
            repack_bytes += bytes;
            freed += p.unused_bytes;
        }
    }
    packs.iter().map(|p| p.id).zip(actions).collect()
}

/// The whole plan with its totals.
pub fn plan(
    packs: &[PackUse],
    obsolete: &[ObsoleteUse],
    live_sessions: &HashSet<[u8; 16]>,
    unknown_live: bool,
    opts: &PlanOptions,
) -> Plan {
    let live = decide_live(packs, opts);
    let obsolete_actions = decide_obsolete(obsolete, live_sessions, unknown_live);
    let mut s = PlanStats::default();
    for (p, (_, a)) in packs.iter().zip(&live) {
        s.used_blobs += p.used_blobs;
        s.used_bytes += p.used_bytes;
        s.unused_blobs += p.unused_blobs;
        s.unused_bytes += p.unused_bytes;
        match a {
            LiveAction::Keep => s.packs_keep += 1,
            LiveAction::Repack => {
                s.packs_repack += 1;
                s.repack_bytes += p.used_bytes + p.unused_bytes;
                s.repack_freed_bytes += p.unused_bytes;
            }
            LiveAction::Retire => {
                s.packs_retire += 1;
                s.retire_bytes += p.unused_bytes;
            }
        }
    }
    for (o, (_, a)) in obsolete.iter().zip(&obsolete_actions) {
        match a {
            ObsoleteAction::Delete => {
                s.obsolete_delete += 1;
                s.obsolete_delete_bytes += o.size;
            }
            ObsoleteAction::Wait => s.obsolete_wait += 1,
            ObsoleteAction::Resurrect => s.obsolete_resurrect += 1,
            ObsoleteAction::Forget => {}
        }
    }
    Plan {
        live,
        obsolete: obsolete_actions,
        stats: s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    const MIB: u64 = 1 << 20;

    fn pack(n: u8, used: u64, unused: u64, kind: PackKind) -> PackUse {
        PackUse {
            id: PackId(Id([n; 32])),
            size: used + unused + 100,
            used_bytes: used,
            unused_bytes: unused,
            used_blobs: used.div_ceil(MIB),
            unused_blobs: unused.div_ceil(MIB),
            kind,
        }
    }

    fn opts(max_unused: MaxUnused) -> PlanOptions {
        PlanOptions {
            max_unused,
            max_repack_bytes: None,
            repack_small: false,
            repack_cacheable_only: false,
            pack_size: 8 * MIB,
        }
    }

    fn actions(packs: &[PackUse], o: &PlanOptions) -> Vec<LiveAction> {
        decide_live(packs, o).into_iter().map(|(_, a)| a).collect()
    }

    use LiveAction::*;

    #[test]
    fn unused_packs_are_retired_and_full_ones_kept() {
        let p = [
            pack(1, 0, 8 * MIB, PackKind::Data),
            pack(2, 8 * MIB, 0, PackKind::Data),
        ];
        assert_eq!(actions(&p, &opts(MaxUnused::Percent(5.0))), [Retire, Keep]);
    }

    #[test]
    fn partly_used_packs_are_repacked_most_wasteful_first_until_within_budget() {
        // 30 MiB used; 5% tolerates 30*5/95 = 1.58 MiB unused. Unused: 4 + 2 + 1 = 7 MiB.
        let p = [
            pack(1, 7 * MIB, MIB, PackKind::Data),     // ratio 1/7
            pack(2, 4 * MIB, 4 * MIB, PackKind::Data), // ratio 1
            pack(3, 6 * MIB, 2 * MIB, PackKind::Data), // ratio 1/3
            pack(4, 8 * MIB, 0, PackKind::Data),
            pack(5, 5 * MIB, 0, PackKind::Data),
        ];
        // Pack 2 frees 4 (3 left > 1.58), pack 3 frees 2 (1 left <= 1.58): pack 1 is kept.
        assert_eq!(
            actions(&p, &opts(MaxUnused::Percent(5.0))),
            [Keep, Repack, Repack, Keep, Keep]
        );
        // Unlimited never repacks data packs for space.
        assert_eq!(
            actions(&p, &opts(MaxUnused::Unlimited)),
            [Keep, Keep, Keep, Keep, Keep]
        );
        // 0% repacks every partly used pack.
        assert_eq!(
            actions(&p, &opts(MaxUnused::Percent(0.0))),
            [Repack, Repack, Repack, Keep, Keep]
        );
    }

    #[test]
    fn tree_and_mixed_packs_with_unused_blobs_are_always_repacked() {
        let p = [
            pack(1, 7 * MIB, MIB / 4, PackKind::Tree),
            pack(2, 7 * MIB, MIB / 4, PackKind::Mixed),
            pack(3, 7 * MIB, MIB / 4, PackKind::Data),
        ];
        assert_eq!(
            actions(&p, &opts(MaxUnused::Unlimited)),
            [Repack, Repack, Keep]
        );
    }

    #[test]
    fn max_repack_size_caps_the_bytes_read() {
        let p = [
            pack(1, 4 * MIB, 4 * MIB, PackKind::Data),
            pack(2, 4 * MIB, 4 * MIB, PackKind::Data),
        ];
        let mut o = opts(MaxUnused::Percent(0.0));
        o.max_repack_bytes = Some(10 * MIB);
        assert_eq!(actions(&p, &o), [Repack, Keep]);
        o.max_repack_bytes = Some(0);
        assert_eq!(actions(&p, &o), [Keep, Keep]);
    }

    #[test]
    fn small_packs_are_merged_only_with_repack_small_and_enough_of_them() {
        let few: Vec<PackUse> = (0..3).map(|i| pack(i, MIB, 0, PackKind::Data)).collect();
        let many: Vec<PackUse> = (0..12).map(|i| pack(i, MIB, 0, PackKind::Data)).collect();
        let mut o = opts(MaxUnused::Percent(5.0));
        assert!(actions(&many, &o).iter().all(|a| *a == Keep));
        o.repack_small = true;
        assert!(actions(&few, &o).iter().all(|a| *a == Keep));
        assert!(actions(&many, &o).iter().all(|a| *a == Repack));
    }

    #[test]
    fn repack_cacheable_only_leaves_data_packs() {
        let p = [
            pack(1, 4 * MIB, 4 * MIB, PackKind::Data),
            pack(2, 4 * MIB, 4 * MIB, PackKind::Tree),
            pack(3, 0, 4 * MIB, PackKind::Data),
        ];
        let mut o = opts(MaxUnused::Percent(0.0));
        o.repack_cacheable_only = true;
        assert_eq!(actions(&p, &o), [Keep, Repack, Retire]);
    }

    fn obs(n: u8, present: bool, armed: bool, waits: &[u8], needed: bool) -> ObsoleteUse {
        ObsoleteUse {
            id: PackId(Id([n; 32])),
            present,
            armed,
            waiting_for: waits.iter().map(|w| [*w; 16]).collect(),
            holds_needed_blob: needed,
            size: 10,
        }
    }

    #[test]
    fn obsolete_packs_wait_for_their_sessions_and_are_resurrected_when_needed() {
        use ObsoleteAction as O;
        let live: HashSet<[u8; 16]> = [[7u8; 16]].into();
        let o = [
            obs(1, true, true, &[], false),  // armed, waits for nobody: delete
            obs(2, true, true, &[7], false), // session 7 still live: wait
            obs(3, true, true, &[8], false), // session 8 ended: delete
            obs(4, true, false, &[], false), // not armed yet: wait (armed this run)
            obs(5, true, true, &[7], true),  // a snapshot needs it: resurrect at once
            obs(6, false, true, &[], false), // already deleted: forget
        ];
        let got: Vec<O> = decide_obsolete(&o, &live, false)
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        assert_eq!(
            got,
            [
                O::Delete,
                O::Wait,
                O::Delete,
                O::Wait,
                O::Resurrect,
                O::Forget
            ]
        );
        // A live lock of unknown session (an older cista) holds every deletion back.
        let got: Vec<O> = decide_obsolete(&o, &HashSet::new(), true)
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        assert_eq!(
            got,
            [O::Wait, O::Wait, O::Wait, O::Wait, O::Resurrect, O::Forget]
        );
    }

    #[test]
    fn max_unused_parses_restic_syntax_and_computes_the_budget() {
        assert_eq!(MaxUnused::parse("unlimited"), Ok(MaxUnused::Unlimited));
        assert_eq!(MaxUnused::parse("5%"), Ok(MaxUnused::Percent(5.0)));
        assert_eq!(MaxUnused::parse("2m"), Ok(MaxUnused::Bytes(2 * MIB)));
        assert!(MaxUnused::parse("100%").is_err());
        assert!(MaxUnused::parse("-1%").is_err());
        assert!(MaxUnused::parse("lots").is_err());
        assert_eq!(MaxUnused::Percent(5.0).bytes_for(95), 5);
        assert_eq!(MaxUnused::Percent(50.0).bytes_for(10), 10);
        assert_eq!(MaxUnused::Percent(0.0).bytes_for(10), 0);
    }

    #[test]
    fn plan_totals_add_up() {
        let p = [
            pack(1, 0, 8 * MIB, PackKind::Data),
            pack(2, 4 * MIB, 4 * MIB, PackKind::Data),
            pack(3, 8 * MIB, 0, PackKind::Data),
        ];
        let o = [obs(9, true, true, &[], false)];
        let pl = plan(
            &p,
            &o,
            &HashSet::new(),
            false,
            &opts(MaxUnused::Percent(0.0)),
        );
        let s = &pl.stats;
        assert_eq!(s.used_bytes, 12 * MIB);
        assert_eq!(s.unused_bytes, 12 * MIB);
        assert_eq!((s.packs_keep, s.packs_repack, s.packs_retire), (1, 1, 1));
        assert_eq!(s.repack_bytes, 8 * MIB);
        assert_eq!(s.unused_after(), 0);
        assert_eq!(s.obsolete_delete, 1);
        assert!(!pl.is_empty());
        assert_eq!(pl.live_with(LiveAction::Retire).count(), 1);
    }
}
