//! `repair index` (here) and `repair snapshots` (in `rewrite.rs`, on the rewriting seam).

use anyhow::Result;
use cista::ops::repair::index::{self, RepairIndexOptions};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{Env, code, output};

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers (restic's `repair index`).
    Index(IndexArgs),
    /// Rewrite snapshots whose data is partly lost, keeping what is readable.
    Snapshots(super::rewrite::RepairSnapshotsArgs),
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Read every pack's header (cista always does; accepted for restic's scripts).
    #[arg(long)]
    read_all_packs: bool,
}

pub fn run(env: &Env, c: RepairCommand) -> Result<u8> {
    match c {
        RepairCommand::Index(a) => repair_index(env, a),
        RepairCommand::Snapshots(a) => super::rewrite::repair(env, a),
    }
}

fn repair_index(env: &Env, a: IndexArgs) -> Result<u8> {
    let session = env.session_writing(cista::format::lock::LockMode::Maintenance)?;
    let r = index::run(
        &session,
        &RepairIndexOptions {
            read_all_packs: a.read_all_packs,
        },
    )?;
    let p = &r.plan;
    for (id, why) in &p.damaged_files {
        output::warn(format_args!(
            "warning: index file {id} was damaged ({why}); its packs were indexed from their headers"
        ));
    }
    for id in &p.missing {
        output::warn(format_args!(
            "warning: pack {id} was named by the index but is missing from storage; it is no longer indexed, and the blobs only it held are lost"
        ));
    }
    for (id, why) in &p.carried_over {
        output::warn(format_args!(
            "warning: pack {id}: its header cannot be read ({why}); it was left in place, and the blobs the old index placed inside it stay indexed"
        ));
    }
    for (id, why) in &p.unindexed {
        output::warn(format_args!(
            "warning: pack {id}: its header cannot be read ({why}) and no index describes it; it was left in place, unindexed"
        ));
    }
    if env.json {
        let mut out = output::Out::new();
        let ids = |v: &[(cista::id::PackId, String)]| -> Vec<String> {
            v.iter().map(|(p, _)| p.to_hex()).collect()
        };
        out.line(json!({
            "message_type": "summary",
            "packs": r.packs,
            "blobs": r.blobs,
            "index_files_written": r.written.len(),
            "index_files_removed": r.removed,
            "damaged_index_files": p.damaged_files.iter().map(|(i, _)| i.to_hex()).collect::<Vec<_>>(),
            "missing_packs": p.missing.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "carried_over_packs": ids(&p.carried_over),
            "unindexed_packs": ids(&p.unindexed),
        }))?;
        out.finish()?;
    } else {
        env.info(format_args!(
            "indexed {} ({}) in {}; removed {}",
            output::count(r.packs as u64, "pack", "packs"),
            output::count(r.blobs as u64, "blob", "blobs"),
            output::count(r.written.len() as u64, "new index file", "new index files"),
            output::count(r.removed as u64, "old index file", "old index files"),
        ))?;
    }
    Ok(code::OK)
}
