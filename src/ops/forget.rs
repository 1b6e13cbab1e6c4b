//! `forget`: remove snapshots, named ones or those a retention policy does not keep.
//! Plan, then execute: [`plan`] is pure (the snapshots, the policy, the clock and the local
//! zone in; per group what is kept with its reasons and what is removed out, or a refusal),
//! [`run`] takes the lock, lists, plans and deletes. Only snapshot files are removed; the data
//! they alone referenced stays until a prune.
//!
//! Safety refusals beyond restic's: restic refuses an empty policy and a policy that keeps
//! nothing of a group; cista also refuses a `--keep-tag` list that matches no snapshot (a
//! misspelt tag would otherwise let the other rules remove what it was meant to keep), and
//! lets `--force` override the "keeps nothing" refusal.

use jiff::tz::TimeZone;

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::ops::find::{self, SnapshotFilter};
use crate::ops::groups::{GroupBy, GroupKey};
use crate::ops::retention::{self, Candidate, Moment, Policy, TagList};
use crate::ops::session::Session;

/// Why a forget was refused before anything was removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `--keep-*` option (restic's wording).
    #[error(
        "no policy was specified, no snapshots will be removed: give --keep-* options, or snapshot ids to remove"
    )]
    EmptyPolicy,
    /// `--force` with an empty policy removes every selected snapshot: only with a filter.
    #[error(
        "--force with no --keep-* option removes every selected snapshot, so it needs a --host, --tag or --path filter; nothing was removed"
    )]
    ForceNeedsFilter,
    /// Snapshot ids and a policy together (restic silently ignores the policy).
    #[error("give either snapshot ids or --keep-* options, not both; nothing was removed")]
    IdsAndPolicy,
    /// The policy keeps none of a group's snapshots.
    #[error(
        "refusing to delete last snapshot of snapshot group \"{group}\": the policy keeps none of its {count} snapshots; give --force to remove them all; nothing was removed"
    )]
    RemovesWholeGroup { group: String, count: usize },
    /// A `--keep-tag` list that no selected snapshot has.
    #[error(
        "--keep-tag {tags} matches no snapshot: check the spelling (tags are case-sensitive, and a,b needs both); nothing was removed"
    )]
    KeepTagUnmatched { tags: String },
}

/// What to forget.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// Snapshots named on the command line (`latest` or id prefixes): removed outright, the
    /// policy then must be empty.
    pub ids: Vec<String>,
    pub policy: Policy,
    /// restic's default is [`GroupBy::HOST_PATHS`].
    pub group_by: GroupBy,
    pub filter: SnapshotFilter,
    /// Allow a policy that keeps nothing of a group, or (with a filter) an empty policy.
    pub force: bool,
    /// Plan only.
    pub dry_run: bool,
}

impl ForgetOptions {
    fn has_filter(&self) -> bool {
        !(self.filter.hosts.is_empty()
            && self.filter.tags.is_empty()
            && self.filter.paths.is_empty())
    }
}

type Listed = (SnapshotId, Snapshot);

/// One group's verdict: kept snapshots newest first with restic's `matches`, removed ones
/// newest first.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub key: GroupKey,
    pub keep: Vec<(SnapshotId, Snapshot, Vec<String>)>,
    pub remove: Vec<Listed>,
}

/// What a forget removes.
#[derive(Debug, Clone, Default)]
pub struct ForgetPlan {
    /// Per group, in key order (empty when snapshots were named).
    pub groups: Vec<GroupPlan>,
    /// Snapshots named on the command line.
    pub named: Vec<Listed>,
}

impl ForgetPlan {
    /// Every snapshot to remove, without duplicates.
    pub fn to_remove(&self) -> Vec<SnapshotId> {
        let mut ids: Vec<SnapshotId> = self
            .named
            .iter()
            .map(|(id, _)| *id)
            .chain(
                self.groups
                    .iter()
                    .flat_map(|g| g.remove.iter().map(|(id, _)| *id)),
            )
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Applies the policy to `list` (the snapshots passing the filter, oldest first), group by
/// group. `now_ns` and `local` are the clock and the machine's zone the policy needs.
pub fn plan_policy(
    list: Vec<Listed>,
    opts: &ForgetOptions,
    now_ns: i64,
    local: &TimeZone,
) -> Result<ForgetPlan, Refusal> {
    let p = &opts.policy;
    if p.is_empty() && !opts.force {
        return Err(Refusal::EmptyPolicy);
    }
    if p.is_empty() && !opts.has_filter() {
        return Err(Refusal::ForceNeedsFilter);
    }
    // With no snapshot selected nothing can be removed, so a fresh repository's first
    // scheduled forget does not fail for want of tagged snapshots.
    if let Some(l) = p
        .tags
        .iter()
        .find(|l| !list.is_empty() && !list.iter().any(|(_, s)| l.matches(&s.tags)))
    {
        return Err(Refusal::KeepTagUnmatched {
            tags: keep_tag_arg(l),
        });
    }
    let mut groups = Vec::new();
    for (key, members) in opts.group_by.group(list, |(_, s)| s) {
        let cands: Vec<Candidate<'_>> = members
            .iter()
            .map(|(_, s)| Candidate {
                time: Moment {
                    unix_ns: s.time_unix_ns,
                    offset_s: s.tz_offset_s,
                },
                tags: &s.tags,
            })
            .collect();
        let verdicts = retention::apply(&cands, p, now_ns, local);
        let mut g = GroupPlan {
            key,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        for v in verdicts {
            let (id, s) = &members[v.index];
            match v.kept {
                Some(why) => g.keep.push((*id, s.clone(), why)),
                None => g.remove.push((*id, s.clone())),
            }
        }
        if !p.is_empty() && g.keep.is_empty() && !opts.force {
            return Err(Refusal::RemovesWholeGroup {
                group: g.key.to_string(),
                count: g.remove.len(),
            });
        }
        groups.push(g);
    }
    Ok(ForgetPlan {
        groups,
        named: Vec::new(),
    })
}

/// The tag list as it would be typed: `a,b`.
fn keep_tag_arg(l: &TagList) -> String {
    format!("{:?}", l.0.join(","))
}

/// What a forget did.
#[derive(Debug)]
pub struct ForgetOutcome {
    pub plan: ForgetPlan,
    /// Removed (with `dry_run`: would be removed).
    pub removed: Vec<SnapshotId>,
    /// Snapshots whose file could not be deleted, with why (restic goes on likewise).
    pub failed: Vec<(SnapshotId, Error)>,
}

/// Plans under the lock and, unless `dry_run`, deletes the snapshot files.
///
/// `session` holds the maintenance lock (a dry run: a shared one, it only reads), so backups
/// go on beside a forget and two forgets or prunes exclude each other.
pub fn run(
    session: &Session,
    opts: &ForgetOptions,
    now_ns: i64,
    local: &TimeZone,
) -> Result<ForgetOutcome> {
    if !opts.ids.is_empty() && !opts.policy.is_empty() {
        return Err(Refusal::IdsAndPolicy.into());
    }
    let repo = session.repo();
    let plan = if opts.ids.is_empty() {
        let list = find::snapshots(repo, &opts.filter)?;
        plan_policy(list, opts, now_ns, local)?
    } else {
        let mut named: Vec<Listed> = Vec::new();
        for spec in &opts.ids {
            let found = find::snapshot(repo, spec, &opts.filter)?;
            if !named.iter().any(|(id, _)| *id == found.0) {
                named.push(found);
            }
        }
        ForgetPlan {
            groups: Vec::new(),
            named,
        }
    };
    let ids = plan.to_remove();
    if !opts.dry_run && !ids.is_empty() {
        session.ensure_fresh()?;
    }
    let (mut removed, mut failed) = (Vec::new(), Vec::new());
    for id in ids {
        if opts.dry_run {
            removed.push(id);
            continue;
        }
        match repo.backend().delete(FileType::Snapshot, &id.0) {
            Ok(()) => removed.push(id),
            Err(e) => failed.push((id, e.into())),
        }
    }
    Ok(ForgetOutcome {
        plan,
        removed,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Summary;
    use crate::id::{BlobId, Id};
    use crate::ops::retention::Count;

    const DAY: i64 = 86_400_000_000_000;

    fn snap(n: u8, day: i64, host: &str, tags: &[&str]) -> Listed {
        (
            SnapshotId(Id([n; 32])),
            Snapshot {
                time_unix_ns: 20_000 * DAY + day * DAY,
                tz_offset_s: 0,
                hostname: host.into(),
                username: "u".into(),
                uid: 0,
                gid: 0,
                paths: vec!["/srv".into()],
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                tree: BlobId(Id([0; 32])),
                parent: None,
                program_version: "cista test".into(),
                incomplete: false,
                summary: Summary::default(),
                original: None,
                lost: None,
            },
        )
    }

    fn opts(policy: Policy) -> ForgetOptions {
        ForgetOptions {
            policy,
            group_by: GroupBy::HOST_PATHS,
            ..ForgetOptions::default()
        }
    }

    fn last(n: u32) -> Policy {
        Policy {
            last: Count::Limit(n),
            ..Policy::default()
        }
    }

    fn plan(list: Vec<Listed>, o: &ForgetOptions) -> Result<ForgetPlan, Refusal> {
        plan_policy(list, o, i64::MAX, &TimeZone::UTC)
    }

    #[test]
    fn applies_the_policy_per_group() {
        let list = vec![
            snap(1, 1, "a", &[]),
            snap(2, 2, "b", &[]),
            snap(3, 3, "a", &[]),
            snap(4, 4, "a", &[]),
        ];
        let p = plan(list, &opts(last(2))).unwrap();
        assert_eq!(p.groups.len(), 2);
        let a = &p.groups[0];
        assert_eq!(a.key.hostname.as_deref(), Some("a"));
        let kept: Vec<u8> = a.keep.iter().map(|(id, ..)| id.0.0[0]).collect();
        assert_eq!(kept, [4, 3]);
        assert_eq!(a.keep[0].2, ["last snapshot"]);
        assert_eq!(a.remove.len(), 1);
        assert_eq!(p.groups[1].keep.len(), 1);
        assert_eq!(p.to_remove(), [SnapshotId(Id([1; 32]))]);
    }

    #[test]
    fn refuses_an_empty_policy_unless_forced_with_a_filter() {
        let list = || vec![snap(1, 1, "a", &[])];
        assert_eq!(
            plan(list(), &opts(Policy::default())).unwrap_err(),
            Refusal::EmptyPolicy
        );
        let mut o = opts(Policy::default());
        o.force = true;
        assert_eq!(plan(list(), &o).unwrap_err(), Refusal::ForceNeedsFilter);
        o.filter.hosts = vec!["a".into()];
        assert_eq!(plan(list(), &o).unwrap().to_remove().len(), 1);
    }

    #[test]
    fn refuses_to_empty_a_group_unless_forced() {
        let list = || vec![snap(1, 1, "a", &["x"]), snap(2, 2, "a", &[])];
        let p = Policy {
            tags: vec![TagList::parse("x")],
            ..Policy::default()
        };
        // Keeps the tagged one: fine.
        assert_eq!(plan(list(), &opts(p)).unwrap().to_remove().len(), 1);
        // Host b's group has no snapshot with the tag host a's has: the policy keeps none.
        let list = vec![snap(1, 1, "a", &["x"]), snap(2, 2, "b", &[])];
        let p = Policy {
            tags: vec![TagList::parse("x")],
            ..Policy::default()
        };
        let e = plan(list.clone(), &opts(p.clone())).unwrap_err();
        assert_eq!(
            e,
            Refusal::RemovesWholeGroup {
                group: "host b, path [/srv]".into(),
                count: 1
            }
        );
        assert!(e.to_string().contains("--force"));
        let mut o = opts(p);
        o.force = true;
        assert_eq!(
            plan(list, &o).unwrap().to_remove(),
            [SnapshotId(Id([2; 32]))]
        );
    }

    #[test]
    fn a_keep_tag_matching_nothing_is_an_error() {
        let list = vec![snap(1, 1, "a", &["daily"]), snap(2, 2, "a", &[])];
        let p = Policy {
            last: Count::Limit(1),
            tags: vec![TagList::parse("daily"), TagList::parse("Daily")],
            ..Policy::default()
        };
        let e = plan(list, &opts(p)).unwrap_err();
        assert_eq!(
            e,
            Refusal::KeepTagUnmatched {
                tags: "\"Daily\"".into()
            }
        );
    }

    #[test]
    fn nothing_selected_is_no_error() {
        let p = Policy {
            tags: vec![TagList::parse("x")],
            ..Policy::default()
        };
        assert!(plan(vec![], &opts(p)).unwrap().groups.is_empty());
    }

    #[test]
    fn no_grouping_puts_everything_in_one_group() {
        let list = vec![snap(1, 1, "a", &[]), snap(2, 2, "b", &[])];
        let mut o = opts(last(1));
        o.group_by = GroupBy::default();
        let p = plan(list, &o).unwrap();
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].key, GroupKey::default());
        assert_eq!(p.to_remove(), [SnapshotId(Id([1; 32]))]);
    }
}
