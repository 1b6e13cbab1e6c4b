//! Which source snapshots a copy writes and which it skips, decided without storage: a pure
//! function of the two repositories' snapshot lists, so it is unit-tested alone and printed
//! as it is by `--dry-run`.
//!
//! A source snapshot is already in the target when a target snapshot records it as its
//! `original` (restic's rule: the source's own `original` if it has one, else its id) and is
//! *similar* to it: every field but `parent`, `original` and, unless the two repositories
//! share their content keys, `tree` is equal. Comparing the summary too (restic does not)
//! keeps a rewritten source snapshot (same time, host and paths, `original` naming the same
//! first snapshot, fewer files) from passing for its copied predecessor when trees cannot be
//! compared. With shared keys a target snapshot with the same tree and time counts too, even
//! without `original` (it was backed up into the target from the same content).

use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;

/// What the copy does with one source snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copy it; the target gets [`target_snapshot`] of it.
    Copy,
    /// Already in the target, as this snapshot.
    Skip {
        /// The target snapshot that is its copy.
        copy: SnapshotId,
    },
}

/// One source snapshot and what happens to it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Its id in the source.
    pub id: SnapshotId,
    /// The source snapshot.
    pub snapshot: Snapshot,
    /// Copy or skip.
    pub action: Action,
}

/// The persistent identity restic gives a snapshot across copies and rewrites: its
/// `original` when set, else its own id.
pub fn identity(id: SnapshotId, s: &Snapshot) -> SnapshotId {
    s.original.unwrap_or(id)
}

/// The target's snapshot for source snapshot `id`: the same time, host, user, paths, tags,
/// summary and program version; no parent (it names a source snapshot, meaningless in the
/// target: restic clears it too); `original` = [`identity`]; `tree` is the root tree in the
/// target (the same id when the repositories share content keys).
pub fn target_snapshot(id: SnapshotId, s: &Snapshot, tree: crate::id::BlobId) -> Snapshot {
    let mut t = s.clone();
    t.parent = None;
    t.original = Some(identity(id, s));
    t.tree = tree;
    t
}

/// Whether target snapshot `t` is a copy of source snapshot `s` (see the module header).
fn similar(s: &Snapshot, t: &Snapshot, compare_trees: bool) -> bool {
    let strip = |x: &Snapshot| {
        let mut x = x.clone();
        x.parent = None;
        x.original = None;
        x.tree = crate::id::BlobId::default();
        x
    };
    (!compare_trees || s.tree == t.tree) && strip(s) == strip(t)
}

/// Decides every source snapshot, in the order given (callers pass them oldest first).
/// `shared` says whether the repositories share content keys, so trees can be compared.
/// A source snapshot given twice is planned once.
pub fn plan(
    sources: Vec<(SnapshotId, Snapshot)>,
    targets: &[(SnapshotId, Snapshot)],
    shared: bool,
) -> Vec<Planned> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(sources.len());
    for (id, snapshot) in sources {
        if !seen.insert(id) {
            continue;
        }
        let ident = identity(id, &snapshot);
        let by_original = targets.iter().find(|(tid, t)| {
            (t.original == Some(ident) || *tid == ident) && similar(&snapshot, t, shared)
        });
        let by_content = || {
            targets.iter().find(|(_, t)| {
                shared && t.tree == snapshot.tree && t.time_unix_ns == snapshot.time_unix_ns
            })
        };
        let action = match by_original.or_else(by_content) {
            Some((copy, _)) => Action::Skip { copy: *copy },
            None => Action::Copy,
        };
        out.push(Planned {
            id,
            snapshot,
            action,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Summary;
    use crate::id::{BlobId, Id};

    fn sid(n: u8) -> SnapshotId {
        SnapshotId(Id([n; 32]))
    }

    fn snap(time: i64, tree: u8) -> Snapshot {
        Snapshot {
            time_unix_ns: time,
            tz_offset_s: 3600,
            hostname: "db1".into(),
            username: "backup".into(),
            uid: 1000,
            gid: 1000,
            paths: vec!["/srv".into()],
            tags: vec!["nightly".into()],
            tree: BlobId(Id([tree; 32])),
            parent: None,
            program_version: "cista 0.1.0".into(),
            incomplete: false,
            summary: Summary {
                total_files_processed: 3,
                ..Summary::default()
            },
            original: None,
            lost: None,
        }
    }

    #[test]
    fn a_snapshot_copied_before_is_skipped_by_its_original() {
        let src = snap(10, 1);
        // Copied without shared keys: another tree in the target.
        let copied = target_snapshot(sid(1), &src, BlobId(Id([9; 32])));
        let p = plan(vec![(sid(1), src)], &[(sid(50), copied)], false);
        assert_eq!(p[0].action, Action::Skip { copy: sid(50) });
    }

    #[test]
    fn new_snapshots_are_copied_and_the_target_keeps_everything_but_parent() {
        let mut src = snap(10, 1);
        src.parent = Some(sid(7));
        let p = plan(vec![(sid(1), src.clone())], &[], true);
        assert_eq!(p[0].action, Action::Copy);
        let t = target_snapshot(sid(1), &src, src.tree);
        assert_eq!(t.original, Some(sid(1)));
        assert_eq!(t.parent, None);
        assert_eq!(
            (t.time_unix_ns, &t.hostname, &t.paths, &t.tags),
            (10, &src.hostname, &src.paths, &src.tags)
        );
        assert_eq!(t.summary, src.summary);
    }

    /// A rewritten source snapshot keeps time, host and paths and names the same first
    /// snapshot as its `original`: it is not its predecessor's copy.
    #[test]
    fn a_rewrite_of_a_copied_snapshot_is_copied_again() {
        let first = snap(10, 1);
        let copied = target_snapshot(sid(1), &first, BlobId(Id([9; 32])));
        let mut rewritten = snap(10, 2);
        rewritten.original = Some(sid(1));
        rewritten.summary.total_files_processed += 1;
        for shared in [false, true] {
            let p = plan(
                vec![(sid(2), rewritten.clone())],
                &[(sid(50), copied.clone())],
                shared,
            );
            assert_eq!(p[0].action, Action::Copy, "shared {shared}");
        }
        // Same summary, other tree: only shared keys can tell.
        let mut same_counts = rewritten.clone();
        same_counts.summary = first.summary.clone();
        let p = plan(
            vec![(sid(2), same_counts.clone())],
            &[(sid(50), copied.clone())],
            true,
        );
        assert_eq!(p[0].action, Action::Copy);
        let p = plan(vec![(sid(2), same_counts)], &[(sid(50), copied)], false);
        assert_eq!(p[0].action, Action::Skip { copy: sid(50) });
    }

    #[test]
    fn with_shared_keys_the_same_tree_and_time_is_the_same_snapshot() {
        let src = snap(10, 1);
        let mut other = snap(10, 1);
        other.hostname = "elsewhere".into();
        assert_eq!(
            plan(
                vec![(sid(1), src.clone())],
                &[(sid(60), other.clone())],
                true
            )[0]
            .action,
            Action::Skip { copy: sid(60) }
        );
        assert_eq!(
            plan(
                vec![(sid(1), src.clone())],
                &[(sid(60), other.clone())],
                false
            )[0]
            .action,
            Action::Copy
        );
        let later = snap(11, 1);
        assert_eq!(
            plan(vec![(sid(1), src)], &[(sid(60), later)], true)[0].action,
            Action::Copy
        );
    }

    #[test]
    fn a_snapshot_named_twice_is_planned_once_and_a_changed_tag_is_not_a_copy() {
        let src = snap(10, 1);
        let p = plan(
            vec![(sid(1), src.clone()), (sid(1), src.clone())],
            &[],
            false,
        );
        assert_eq!(p.len(), 1);
        let mut copied = target_snapshot(sid(1), &src, src.tree);
        copied.tags.push("zzz".into());
        let p = plan(vec![(sid(1), src)], &[(sid(50), copied)], false);
        assert_eq!(p[0].action, Action::Copy);
    }
}
