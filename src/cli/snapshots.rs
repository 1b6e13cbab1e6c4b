//! `snapshots`: list snapshots as a table or JSON, with restic's selection flags: snapshot ids
//! as arguments, `--latest N` per host and paths, `--group-by host,paths,tags`, `--compact`.
//! Selection is pure ([`select`], [`group`]) so it is unit-tested without a repository.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use cista::backend::FileType;
use cista::format::snapshot::Snapshot;
use cista::id::SnapshotId;
use cista::ops::find;
use cista::ops::groups::{GroupBy, GroupKey};
use clap::Args;
use serde_json::{Value, json};

use super::browse::FilterArgs;
use super::{Env, code, output};

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only these snapshots (id prefixes or `latest`); the filters then apply to `latest` only.
    snapshot_ids: Vec<String>,
    /// Only the newest N snapshots of each host and paths (as restic's --latest).
    #[arg(long, value_name = "N")]
    latest: Option<usize>,
    /// Group by any of host, paths, tags (comma-separated), as restic's --group-by.
    #[arg(long, short = 'g', value_name = "GROUP", value_parser = parse_group_by)]
    group_by: Option<GroupBy>,
    /// Compact table: id, time, host and tags only.
    #[arg(long, short = 'c')]
    compact: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

fn parse_group_by(s: &str) -> Result<GroupBy, String> {
    GroupBy::parse(s).map_err(|e| e.to_string())
}

type Listed = (SnapshotId, Snapshot);

/// Keeps the newest `n` snapshots of each host and paths, oldest first (restic's
/// `FilterLatestSnapshots`; a snapshot's paths are compared as one sorted list).
fn select_latest(list: Vec<Listed>, n: usize) -> Vec<Listed> {
    let mut seen: BTreeMap<GroupKey, usize> = BTreeMap::new();
    let mut keep = vec![false; list.len()];
    let mut order: Vec<usize> = (0..list.len()).collect();
    // Newest first; ties by id so the choice is stable.
    order.sort_by(|&a, &b| {
        (list[b].1.time_unix_ns, list[b].0.to_hex())
            .cmp(&(list[a].1.time_unix_ns, list[a].0.to_hex()))
    });
    for i in order {
        let c = seen.entry(GroupBy::HOST_PATHS.key(&list[i].1)).or_default();
        if *c < n {
            *c += 1;
            keep[i] = true;
        }
    }
    list.into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect()
}

/// Splits into groups (one group with an empty key when not grouping), keys in order, each
/// group oldest first.
fn group(list: Vec<Listed>, by: GroupBy) -> Vec<(GroupKey, Vec<Listed>)> {
    by.group(list, |(_, s)| s)
}

/// Oldest first, then by id, without duplicates.
fn sort_dedup(list: &mut Vec<Listed>) {
    list.sort_by_key(|(id, s)| (s.time_unix_ns, id.0.0));
    list.dedup_by(|a, b| a.0 == b.0);
}

pub fn run(env: &Env, a: SnapshotsArgs) -> Result<u8> {
    if a.latest == Some(0) {
        bail!("--latest needs a number above 0");
    }
    let session =
        env.session_listing(cista::format::lock::LockMode::Shared, &[FileType::Snapshot])?;
    let repo = session.repo().clone();
    let filter = a.filter.filter();
    let mut list: Vec<Listed> = if a.snapshot_ids.is_empty() {
        let (all, damaged) = repo.scan_snapshots()?;
        for (id, e) in &damaged {
            output::warn(format_args!("warning: skipping snapshot {id}: {e}"));
        }
        all.into_iter().filter(|(_, s)| filter.matches(s)).collect()
    } else {
        let mut v = Vec::new();
        for spec in &a.snapshot_ids {
            v.push(find::snapshot(&repo, spec, &filter)?);
        }
        v
    };
    sort_dedup(&mut list);
    if let Some(n) = a.latest {
        list = select_latest(list, n);
    }
    let by = a.group_by.unwrap_or_default();
    let groups = group(list, by);
    let mut out = output::Out::new();
    if env.json {
        let v = if by.any() {
            // restic prints groups as objects with the key and the group's snapshots.
            Value::Array(
                groups
                    .iter()
                    .map(|(k, l)| {
                        json!({
                            "group_key": {"hostname": k.hostname, "paths": k.paths, "tags": k.tags},
                            "snapshots": l.iter().map(|(id, s)| output::snapshot_json(id, s)).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            )
        } else {
            Value::Array(
                groups
                    .iter()
                    .flat_map(|(_, l)| l.iter())
                    .map(|(id, s)| output::snapshot_json(id, s))
                    .collect(),
            )
        };
        out.line(v)?;
        out.finish()?;
        return Ok(code::OK);
    }
    let total: usize = groups.iter().map(|(_, l)| l.len()).sum();
    for (k, l) in &groups {
        if by.any() {
            let mut parts = Vec::new();
            if let Some(h) = &k.hostname {
                parts.push(format!("host [{h}]"));
            }
            if let Some(p) = &k.paths {
                parts.push(format!("paths [{}]", p.join(", ")));
            }
            if let Some(t) = &k.tags {
                parts.push(format!("tags [{}]", t.join(", ")));
            }
            out.line(format_args!("snapshots for ({}):", parts.join(", ")))?;
        }
        table(&mut out, l, a.compact)?;
    }
    out.line(format_args!(
        "{total} {}",
        if total == 1 { "snapshot" } else { "snapshots" }
    ))?;
    out.finish()?;
    Ok(code::OK)
}

fn table(out: &mut output::Out, list: &[Listed], compact: bool) -> std::io::Result<()> {
    if compact {
        out.line(format_args!(
            "{:<9} {:<19} {:<16} tags",
            "ID", "Time", "Host"
        ))?;
        out.line("-".repeat(60))?;
        for (id, s) in list {
            out.line(format_args!(
                "{:<9} {:<19} {:<16} {}",
                id.to_string(),
                output::short_time(s.time_unix_ns, s.tz_offset_s),
                s.hostname,
                s.tags.join(","),
            ))?;
        }
        return out.line("-".repeat(60));
    }
    out.line(format_args!(
        "{:<9} {:<19} {:<16} {:<16} {:>11}  paths",
        "ID", "Time", "Host", "Tags", "Size"
    ))?;
    out.line("-".repeat(90))?;
    for (id, s) in list {
        let mark = if s.incomplete { " (incomplete)" } else { "" };
        out.line(format_args!(
            "{:<9} {:<19} {:<16} {:<16} {:>11}  {}{mark}",
            id.to_string(),
            output::short_time(s.time_unix_ns, s.tz_offset_s),
            s.hostname,
            s.tags.join(","),
            output::bytes(s.summary.total_bytes_processed),
            s.paths.join(" "),
        ))?;
    }
    out.line("-".repeat(90))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cista::format::snapshot::Summary;
    use cista::id::{BlobId, Id};

    fn snap(n: u8, host: &str, paths: &[&str], tags: &[&str]) -> Listed {
        (
            SnapshotId(Id([n; 32])),
            Snapshot {
                time_unix_ns: i64::from(n) * 1_000,
                tz_offset_s: 0,
                hostname: host.into(),
                username: "u".into(),
                uid: 1,
                gid: 1,
                paths: paths.iter().map(|p| p.to_string()).collect(),
                tags: tags.iter().map(|p| p.to_string()).collect(),
                tree: BlobId(Id([0; 32])),
                parent: None,
                program_version: "cista test".into(),
                incomplete: false,
                original: None,
                summary: Summary::default(),
                lost: None,
            },
        )
    }

    fn ids(l: &[Listed]) -> Vec<u8> {
        l.iter().map(|(id, _)| id.0.0[0]).collect()
    }

    #[test]
    fn latest_is_per_host_and_paths() {
        let list = vec![
            snap(1, "a", &["/x"], &[]),
            snap(2, "a", &["/x"], &["t"]),
            snap(3, "b", &["/x"], &[]),
            snap(4, "a", &["/y"], &[]),
            snap(5, "a", &["/x"], &[]),
        ];
        assert_eq!(ids(&select_latest(list.clone(), 1)), vec![3, 4, 5]);
        assert_eq!(ids(&select_latest(list.clone(), 2)), vec![2, 3, 4, 5]);
        assert_eq!(ids(&select_latest(list, 9)), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn groups_by_the_chosen_fields() {
        let list = vec![
            snap(1, "a", &["/x"], &["t"]),
            snap(2, "b", &["/x"], &[]),
            snap(3, "a", &["/y"], &["t"]),
        ];
        let g = group(list.clone(), parse_group_by("host").unwrap());
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0.hostname.as_deref(), Some("a"));
        assert_eq!(ids(&g[0].1), vec![1, 3]);
        assert!(g[0].0.paths.is_none());
        let g = group(list.clone(), parse_group_by("tags,paths").unwrap());
        assert_eq!(g.len(), 3);
        let g = group(list, GroupBy::default());
        assert_eq!(g.len(), 1);
        assert!(parse_group_by("hostname").is_err());
        assert_eq!(parse_group_by("").unwrap(), GroupBy::default());
    }

    #[test]
    fn sort_dedup_orders_by_time() {
        let mut l = vec![
            snap(3, "a", &[], &[]),
            snap(1, "a", &[], &[]),
            snap(3, "a", &[], &[]),
        ];
        sort_dedup(&mut l);
        assert_eq!(ids(&l), vec![1, 3]);
    }
}
