//! `forget`: restic's flags (`--keep-*`, `--group-by`, `--host/--tag/--path`, `--dry-run`,
//! `--compact`, `--prune`) in, `ops::forget` called, restic's text or JSON out. `--force` is
//! cista's override of the safety refusals (see docs/CLI.md).

use anyhow::Result;
use cista::format::lock::LockMode;
use cista::ops::find::SnapshotFilter;
use cista::ops::forget::{self, ForgetOptions, ForgetOutcome, GroupPlan};
use cista::ops::groups::GroupBy;
use cista::ops::retention::{Count, Duration, Policy, TagList};
use cista::ops::session::Session;
use clap::Args;
use serde_json::{Value, json};

use super::{Env, code, output};

fn count(s: &str) -> Result<Count, String> {
    Count::parse(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    Duration::parse(s).map_err(|e| e.to_string())
}

fn group_by(s: &str) -> Result<GroupBy, String> {
    GroupBy::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Remove these snapshots (id prefixes or `latest`) instead of applying a policy.
    snapshot_ids: Vec<String>,
    /// Keep the last N snapshots (`unlimited`: all).
    #[arg(long, short = 'l', value_name = "N", value_parser = count)]
    keep_last: Option<Count>,
    /// Keep the last N hourly snapshots (`unlimited`: all).
    #[arg(long, short = 'H', value_name = "N", value_parser = count)]
    keep_hourly: Option<Count>,
    /// Keep the last N daily snapshots (`unlimited`: all).
    #[arg(long, short = 'd', value_name = "N", value_parser = count)]
    keep_daily: Option<Count>,
    /// Keep the last N weekly snapshots, by ISO week (`unlimited`: all).
    #[arg(long, short = 'w', value_name = "N", value_parser = count)]
    keep_weekly: Option<Count>,
    /// Keep the last N monthly snapshots (`unlimited`: all).
    #[arg(long, short = 'm', value_name = "N", value_parser = count)]
    keep_monthly: Option<Count>,
    /// Keep the last N yearly snapshots (`unlimited`: all).
    #[arg(long, short = 'y', value_name = "N", value_parser = count)]
    keep_yearly: Option<Count>,
    /// Keep snapshots newer than DURATION (e.g. 1y5m7d2h) before the newest snapshot.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within: Option<Duration>,
    /// Keep hourly snapshots within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_hourly: Option<Duration>,
    /// Keep daily snapshots within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_daily: Option<Duration>,
    /// Keep weekly snapshots within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_weekly: Option<Duration>,
    /// Keep monthly snapshots within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_monthly: Option<Duration>,
    /// Keep yearly snapshots within DURATION of the newest snapshot.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    keep_within_yearly: Option<Duration>,
    /// Keep snapshots having all these tags (`a,b`; repeatable: any list). A list that
    /// matches no snapshot is an error.
    #[arg(long, value_name = "TAGLIST")]
    keep_tag: Vec<String>,
    /// Only consider snapshots of this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Only consider snapshots with these tags (`a,b` means both; repeatable: any).
    #[arg(long = "tag", value_name = "TAGLIST")]
    tags: Vec<String>,
    /// Only consider snapshots that include this path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Group by any of host, paths, tags (comma-separated; '' for no grouping).
    #[arg(long, short = 'g', value_name = "GROUP", value_parser = group_by, default_value = "host,paths")]
    group_by: GroupBy,
    /// Print what would be removed; remove nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Compact tables.
    #[arg(long, short = 'c')]
    compact: bool,
    /// Run prune after removing snapshots (in the same maintenance session).
    #[arg(long)]
    prune: bool,
    /// prune's options, used with --prune (restic's forget accepts them too).
    #[command(flatten)]
    pub prune_flags: super::prune::PruneFlags,
    /// Remove even when the policy keeps nothing of a group, or (with a --host/--tag/--path
    /// filter) when no --keep-* option is given.
    #[arg(long)]
    force: bool,
}

impl ForgetArgs {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last.unwrap_or_default(),
            hourly: self.keep_hourly.unwrap_or_default(),
            daily: self.keep_daily.unwrap_or_default(),
            weekly: self.keep_weekly.unwrap_or_default(),
            monthly: self.keep_monthly.unwrap_or_default(),
            yearly: self.keep_yearly.unwrap_or_default(),
            within: self.keep_within.unwrap_or_default(),
            within_hourly: self.keep_within_hourly.unwrap_or_default(),
            within_daily: self.keep_within_daily.unwrap_or_default(),
            within_weekly: self.keep_within_weekly.unwrap_or_default(),
            within_monthly: self.keep_within_monthly.unwrap_or_default(),
            within_yearly: self.keep_within_yearly.unwrap_or_default(),
            tags: self.keep_tag.iter().map(|t| TagList::parse(t)).collect(),
        }
    }
}

pub fn run(env: &Env, a: ForgetArgs) -> Result<u8> {
    let opts = ForgetOptions {
        ids: a.snapshot_ids.clone(),
        policy: a.policy(),
        group_by: a.group_by,
        filter: SnapshotFilter {
            hosts: a.hosts.clone(),
            tags: a.tags.clone(),
            paths: a.paths.clone(),
        },
        force: a.force,
        dry_run: a.dry_run,
    };
    // One session for forget and the prune after it, so no other maintenance runs between.
    // A dry run (of forget and of the prune after it) reads only, and must not upgrade the
    // repository's format either: a shared lock.
    let session = if a.dry_run {
        env.session(LockMode::Shared)?
    } else {
        env.session_writing(LockMode::Maintenance)?
    };
    if opts.ids.is_empty() && (opts.force || !opts.policy.is_empty()) {
        env.info(format_args!("Applying Policy: {}", opts.policy))?;
    }
    let outcome = forget::run(
        &session,
        &opts,
        cista::ops::now_unix_ns(),
        &jiff::tz::TimeZone::system(),
    )?;
    print(env, &a, &outcome)?;
    for (id, e) in &outcome.failed {
        output::warn(format_args!(
            "unable to remove snapshot {id} from the repository: {e}"
        ));
    }
    if !outcome.failed.is_empty() {
        output::warn(format_args!(
            "{} of {} snapshots could not be removed",
            outcome.failed.len(),
            outcome.failed.len() + outcome.removed.len()
        ));
        return Ok(code::INCOMPLETE);
    }
    if a.prune && !outcome.removed.is_empty() {
        return prune_after(env, &session, &a);
    }
    Ok(code::OK)
}

/// The single place forget hands over to prune (restic runs it only when snapshots were
/// removed, as a dry run too when forget was one), in forget's session.
fn prune_after(env: &Env, session: &Session, a: &ForgetArgs) -> Result<u8> {
    let report = super::prune::prune_in(env, session, &a.prune_flags, a.dry_run)?;
    super::prune::print(env, &report)?;
    Ok(code::OK)
}

fn print(env: &Env, a: &ForgetArgs, o: &ForgetOutcome) -> Result<()> {
    let mut out = output::Out::new();
    if env.json {
        // restic prints nothing when snapshots were named, and a list of groups otherwise.
        if o.plan.named.is_empty() {
            out.line(Value::Array(o.plan.groups.iter().map(group_json).collect()))?;
        }
        out.finish()?;
        return Ok(());
    }
    if env.quiet {
        return Ok(());
    }
    for g in &o.plan.groups {
        if a.group_by.any() {
            out.line(format_args!("snapshots for ({}):", header(&g.key)))?;
        }
        if !g.keep.is_empty() {
            out.line(format_args!("keep {} snapshots:", g.keep.len()))?;
            let rows: Vec<_> = g.keep.iter().map(|(id, s, r)| (id, s, Some(r))).collect();
            table(&mut out, rows, a.compact)?;
            out.line("")?;
        }
        if !g.remove.is_empty() {
            out.line(format_args!("remove {} snapshots:", g.remove.len()))?;
            let rows: Vec<_> = g.remove.iter().map(|(id, s)| (id, s, None)).collect();
            table(&mut out, rows, a.compact)?;
            out.line("")?;
        }
    }
    if a.dry_run && !o.removed.is_empty() {
        let ids: Vec<String> = o.removed.iter().map(ToString::to_string).collect();
        out.line(format_args!(
            "Would have removed the following snapshots:\n{{{}}}\n",
            ids.join(" ")
        ))?;
    } else if !a.dry_run {
        for id in &o.removed {
            out.line(format_args!("removed snapshot {id}"))?;
        }
        out.line(format_args!(
            "{} removed",
            output::count(o.removed.len() as u64, "snapshot", "snapshots")
        ))?;
    }
    out.finish()?;
    Ok(())
}

/// `host [h], paths [/a, /b], tags [t]`, as `snapshots` prints a group.
fn header(k: &cista::ops::groups::GroupKey) -> String {
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
    parts.join(", ")
}

/// restic's `ForgetGroup`: `tags`, `host`, `paths` from the group key (a field not grouped
/// by is null, the host then ""), `keep`, `remove` and `reasons` (null when empty, as Go
/// prints a nil slice), plus the key as `snapshots --json` prints it (`group_key`).
fn group_json(g: &GroupPlan) -> Value {
    let or_null = |v: Vec<Value>| {
        if v.is_empty() {
            Value::Null
        } else {
            Value::Array(v)
        }
    };
    // restic's key holds a snapshot's tags as stored: none is null, not [].
    let tags = g.key.tags.as_ref().filter(|t| !t.is_empty());
    json!({
        "tags": tags,
        "host": g.key.hostname.clone().unwrap_or_default(),
        "paths": g.key.paths,
        "group_key": {"hostname": g.key.hostname, "paths": g.key.paths, "tags": g.key.tags},
        "keep": or_null(g.keep.iter().map(|(id, s, _)| output::snapshot_json(id, s)).collect()),
        "remove": or_null(g.remove.iter().map(|(id, s)| output::snapshot_json(id, s)).collect()),
        "reasons": or_null(
            g.keep
                .iter()
                .map(|(id, s, m)| json!({"snapshot": output::snapshot_json(id, s), "matches": m}))
                .collect()
        ),
    })
}

type Row<'a> = (
    &'a cista::id::SnapshotId,
    &'a cista::format::snapshot::Snapshot,
    Option<&'a Vec<String>>,
);

/// A snapshot table with restic's columns; a kept snapshot's reasons one per line.
fn table(out: &mut output::Out, mut rows: Vec<Row<'_>>, compact: bool) -> std::io::Result<()> {
    // restic lists the newest last.
    rows.sort_by_key(|(_, s, _)| s.time_unix_ns);
    let reasons = rows.iter().any(|(_, _, r)| r.is_some()) && !compact;
    let width = rows
        .iter()
        .flat_map(|(_, _, r)| r.iter().flat_map(|v| v.iter()))
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(7);
    let head = if reasons {
        format!(
            "{:<9} {:<19} {:<12} {:<12} {:<width$}  Paths",
            "ID", "Time", "Host", "Tags", "Reasons"
        )
    } else {
        format!(
            "{:<9} {:<19} {:<12} {:<12} Paths",
            "ID", "Time", "Host", "Tags"
        )
    };
    let rule = "-".repeat(head.len() + 8);
    let n = rows.len() as u64;
    out.line(&head)?;
    out.line(&rule)?;
    for (id, s, r) in rows {
        let first = r.and_then(|r| r.first()).map(String::as_str).unwrap_or("");
        let time = output::short_time(s.time_unix_ns, s.tz_offset_s);
        let tags = s.tags.join(",");
        let paths = s.paths.join(" ");
        if reasons {
            out.line(format_args!(
                "{:<9} {:<19} {:<12} {:<12} {first:<width$}  {paths}",
                id.to_string(),
                time,
                s.hostname,
                tags
            ))?;
            for more in r.into_iter().flatten().skip(1) {
                out.line(format_args!("{:<55} {more}", ""))?;
            }
        } else {
            out.line(format_args!(
                "{:<9} {:<19} {:<12} {:<12} {paths}",
                id.to_string(),
                time,
                s.hostname,
                tags
            ))?;
        }
    }
    out.line(&rule)?;
    out.line(output::count(n, "snapshot", "snapshots"))
}
