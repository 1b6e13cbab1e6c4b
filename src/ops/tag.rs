//! `tag`: change the tags of snapshots (restic's `tag`). A snapshot is immutable and named by
//! its bytes, so a changed snapshot is written anew (new id) and the old one deleted after
//! the new one is stored: a crash in between leaves both, never neither. The rewritten
//! snapshot records the id it was first written as (`original`) where the repository format
//! has that field ([`ORIGINAL_SINCE`]).

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::ops::find::{self, SnapshotFilter};
use crate::ops::session::Session;
use crate::repo::Repository;

/// The repository format version from which snapshots may carry `original` (FORMAT §16):
/// older readers would take the extra bytes for damage.
pub const ORIGINAL_SINCE: u32 = 3;

/// The change to make (restic's `--set`, `--add`, `--remove`; tags already split at commas,
/// empty ones dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    /// Replace the tags (an empty list clears them). Like restic, every selected snapshot
    /// is rewritten, even one that already has exactly these tags.
    Set(Vec<String>),
    /// Add and remove tags; a snapshot is rewritten only if its tags change.
    Edit {
        add: Vec<String>,
        remove: Vec<String>,
    },
}

impl TagChange {
    /// Checks the combination as restic does.
    pub fn new(set: Option<Vec<String>>, add: Vec<String>, remove: Vec<String>) -> Result<Self> {
        match set {
            Some(_) if !add.is_empty() || !remove.is_empty() => Err(Error::InvalidInput(
                "--set and --add/--remove cannot be given at the same time".into(),
            )),
            Some(tags) => Ok(Self::Set(tags)),
            None if add.is_empty() && remove.is_empty() => Err(Error::InvalidInput(
                "nothing to do: give --set, --add or --remove".into(),
            )),
            None => Ok(Self::Edit { add, remove }),
        }
    }

    /// The new tags (sorted, without duplicates, as FORMAT §16 requires), or `None` when
    /// the snapshot stays as it is.
    pub fn apply(&self, current: &[String]) -> Option<Vec<String>> {
        let mut tags = match self {
            Self::Set(t) => t.clone(),
            Self::Edit { add, remove } => {
                let mut t: Vec<String> = current.to_vec();
                t.extend(add.iter().cloned());
                t.retain(|x| !remove.contains(x));
                t
            }
        };
        tags.sort();
        tags.dedup();
        match self {
            Self::Set(_) => Some(tags),
            Self::Edit { .. } => (tags != current).then_some(tags),
        }
    }
}

/// One rewritten snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub old: SnapshotId,
    pub new: SnapshotId,
}

/// What a tag run did.
#[derive(Debug, Default)]
pub struct TagOutcome {
    pub changed: Vec<Changed>,
    /// Snapshots that could not be rewritten, with why (restic reports and goes on).
    pub failed: Vec<(SnapshotId, Error)>,
}

/// Applies `change` to the snapshots named by `specs` (ids or `latest`), or to every snapshot
/// passing `filter` when none are named, in `session`, which holds the maintenance lock.
pub fn run(
    session: &Session,
    specs: &[String],
    filter: &SnapshotFilter,
    change: &TagChange,
) -> Result<TagOutcome> {
    let repo = session.repo();
    let mut selected: Vec<(SnapshotId, Snapshot)> = Vec::new();
    if specs.is_empty() {
        selected = find::snapshots(repo, filter)?;
    } else {
        for spec in specs {
            let found = find::snapshot(repo, spec, filter)?;
            if !selected.iter().any(|(id, _)| *id == found.0) {
                selected.push(found);
            }
        }
    }
    let with_original = repo.config().format_version >= ORIGINAL_SINCE;
    let mut out = TagOutcome::default();
    for (old, snap) in selected {
        let Some(tags) = change.apply(&snap.tags) else {
            continue;
        };
        match session
            .ensure_fresh()
            .and_then(|()| rewrite(repo, old, snap, tags, with_original))
        {
            Ok(new) => out.changed.push(Changed { old, new }),
            Err(e) => out.failed.push((old, e)),
        }
    }
    Ok(out)
}

/// Stores the snapshot with new tags, then deletes the old one.
fn rewrite(
    repo: &Repository,
    old: SnapshotId,
    mut snap: Snapshot,
    tags: Vec<String>,
    with_original: bool,
) -> Result<SnapshotId> {
    snap.tags = tags;
    snap.original = if with_original {
        Some(snap.original.unwrap_or(old))
    } else {
        // Below version 3 `original` cannot be stored; one read from a newer writer cannot
        // occur here either, since such a repository is version 3.
        None
    };
    let new = repo.save_snapshot(&snap)?;
    repo.backend().delete(FileType::Snapshot, &old.0)?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(t: &[&str]) -> Vec<String> {
        t.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn combinations_are_checked_as_restic() {
        assert!(TagChange::new(None, vec![], vec![]).is_err());
        assert!(TagChange::new(Some(v(&["a"])), v(&["b"]), vec![]).is_err());
        assert!(TagChange::new(Some(v(&["a"])), vec![], v(&["b"])).is_err());
        assert_eq!(
            TagChange::new(Some(vec![]), vec![], vec![]).unwrap(),
            TagChange::Set(vec![])
        );
    }

    #[test]
    fn edits_give_sorted_unique_tags_and_report_no_change() {
        let add = TagChange::new(None, v(&["b", "a"]), vec![]).unwrap();
        assert_eq!(add.apply(&v(&["c"])), Some(v(&["a", "b", "c"])));
        assert_eq!(add.apply(&v(&["a", "b"])), None);
        let rm = TagChange::new(None, vec![], v(&["x"])).unwrap();
        assert_eq!(rm.apply(&v(&["a"])), None);
        assert_eq!(rm.apply(&v(&["a", "x"])), Some(v(&["a"])));
        let both = TagChange::new(None, v(&["x"]), v(&["x"])).unwrap();
        assert_eq!(
            both.apply(&v(&["a"])),
            None,
            "removal wins, as restic applies it second"
        );
        let set = TagChange::new(Some(v(&["z", "y", "z"])), vec![], vec![]).unwrap();
        assert_eq!(set.apply(&v(&["y", "z"])), Some(v(&["y", "z"])));
        assert_eq!(TagChange::Set(vec![]).apply(&v(&["a"])), Some(vec![]));
    }
}
