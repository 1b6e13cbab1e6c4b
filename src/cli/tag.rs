//! `tag`: restic's `--set/--add/--remove TAGS` on the named snapshots, or on every snapshot
//! passing `--host/--tag/--path` when none is named. Each changed snapshot is written anew and
//! the old one removed; prints the old and new ids and how many changed.

use anyhow::Result;
use cista::ops::tag::{self, TagChange};
use clap::Args;
use serde_json::json;

use super::browse::FilterArgs;
use super::{Env, code, output};

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Snapshots to change (id prefixes or `latest`); none: every snapshot the filters pass.
    snapshot_ids: Vec<String>,
    /// Replace the tags with these (`a,b`; repeatable; '' removes every tag).
    #[arg(long, value_name = "TAGS")]
    set: Vec<String>,
    /// Add these tags (`a,b`; repeatable).
    #[arg(long, value_name = "TAGS")]
    add: Vec<String>,
    /// Remove these tags (`a,b`; repeatable).
    #[arg(long, value_name = "TAGS")]
    remove: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

/// restic's `TagLists.Flatten`: split at commas, trimmed, empty tags dropped.
fn flatten(lists: &[String]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

pub fn run(env: &Env, a: TagArgs) -> Result<u8> {
    let set = (!a.set.is_empty()).then(|| flatten(&a.set));
    let change = TagChange::new(set, flatten(&a.add), flatten(&a.remove))?;
    let session = env.session_writing(cista::format::lock::LockMode::Maintenance)?;
    let outcome = tag::run(&session, &a.snapshot_ids, &a.filter.filter(), &change)?;
    let mut out = output::Out::new();
    for c in &outcome.changed {
        if env.json {
            out.line(json!({
                "message_type": "changed",
                "old_snapshot_id": c.old.to_hex(),
                "new_snapshot_id": c.new.to_hex(),
            }))?;
        } else if !env.quiet {
            out.line(format_args!(
                "old snapshot ID: {} -> new snapshot ID: {}",
                c.old, c.new
            ))?;
        }
    }
    let n = outcome.changed.len();
    if env.json {
        out.line(json!({"message_type": "summary", "changed_snapshots": n}))?;
    } else if !env.quiet {
        if n == 0 {
            out.line("no snapshots were modified")?;
        } else {
            out.line(format_args!(
                "modified {}",
                output::count(n as u64, "snapshot", "snapshots")
            ))?;
        }
    }
    out.finish()?;
    for (id, e) in &outcome.failed {
        output::warn(format_args!(
            "unable to modify the tags for snapshot {id}: {e}"
        ));
    }
    Ok(if outcome.failed.is_empty() {
        code::OK
    } else {
        code::INCOMPLETE
    })
}
