//! `cista copy --to REPO2 [SNAPSHOT...]`: parse, open both repositories, call
//! [`cista::ops::copy`], print one line per snapshot and a summary (restic's `copy`, with
//! the direction restic's 0.14+ `--from-repo` reverses: cista copies from `-r` to `--to`).
//! Also the second-repository plumbing `init --copy-chunker-params-from` shares.

use std::path::PathBuf;

use anyhow::Result;
use cista::ops::copy::{self, Action, CopyOptions, CopyOutcome};
use cista::repo::Repository;
use clap::Args;
use serde_json::json;

use super::browse::FilterArgs;
use super::{Env, PasswordFrom, code, open_with, output};

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The repository to copy into (`CISTA_TO_REPOSITORY`).
    #[arg(long = "to", value_name = "REPO", env = "CISTA_TO_REPOSITORY")]
    to: String,
    /// Read the target's passphrase from this file (first line).
    #[arg(long, env = "CISTA_TO_PASSWORD_FILE", hide_env_values = true)]
    to_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the target's passphrase.
    #[arg(long, env = "CISTA_TO_PASSWORD_COMMAND", hide_env_values = true)]
    to_password_command: Option<String>,
    /// A storage option of the target, as `-o` is for the source (repeatable).
    #[arg(long = "to-option", value_name = "KEY=VALUE", value_parser = parse_option)]
    to_options: Vec<(String, String)>,
    /// Report what would be copied (snapshots, blobs, bytes); write nothing, take no lock.
    #[arg(long, short = 'n')]
    dry_run: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Snapshots to copy (id prefixes or `latest`; default: all passing the filters).
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
}

pub(super) fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err("expected KEY=VALUE".into()),
    }
}

/// Parsed `KEY=VALUE` options back in the form `-o` gives them to the factory.
pub(super) fn joined_options(options: &[(String, String)]) -> Vec<String> {
    options.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Warnings from the library, on stderr.
struct Warnings;
impl cista::ops::Progress for Warnings {
    fn warn(&self, message: &str) {
        output::warn(format_args!("warning: {message}"));
    }
}

pub fn run(env: &Env, a: CopyArgs) -> Result<u8> {
    let source = env.open()?;
    let to_options = joined_options(&a.to_options);
    let target = open_with(
        &env.storage,
        &a.to,
        &to_options,
        &PasswordFrom {
            file: a.to_password_file.as_deref(),
            command: a.to_password_command.as_deref(),
            env_var: "CISTA_TO_PASSWORD",
        },
        "target repository",
    )?;
    super::rewrite::stop_on_signals(env)?;
    let opts = CopyOptions {
        snapshots: a.snapshots,
        filter: a.filter.filter(),
        dry_run: a.dry_run,
        lock: env.lock.clone(),
        reads_in_flight: env.reads_in_flight()?,
    };
    let outcome = copy::run(&source, &target, &opts, &Warnings, &env.cancel)?;
    print(env, &outcome, a.dry_run)?;
    Ok(code::OK)
}

fn print(env: &Env, o: &CopyOutcome, dry_run: bool) -> Result<()> {
    let copied_to = |src| o.copied.iter().find(|(s, _)| *s == src).map(|(_, t)| *t);
    let skipped = o
        .planned
        .iter()
        .filter(|p| p.action != Action::Copy)
        .count();
    let copied = o.planned.len() - skipped;
    let s = &o.stats;
    let mut out = output::Out::new();
    if env.json {
        for p in &o.planned {
            let line = match (&p.action, copied_to(p.id)) {
                (Action::Skip { copy }, _) => json!({"message_type": "skipped",
                    "source_snapshot_id": p.id.to_hex(), "target_snapshot_id": copy.to_hex()}),
                (Action::Copy, Some(t)) => json!({"message_type": "copied",
                    "source_snapshot_id": p.id.to_hex(), "target_snapshot_id": t.to_hex()}),
                (Action::Copy, None) => json!({"message_type": "would_copy",
                    "source_snapshot_id": p.id.to_hex()}),
            };
            out.line(line)?;
        }
        out.line(json!({
            "message_type": "summary",
            "dry_run": dry_run,
            "shared_keys": o.shared_keys,
            "snapshots_copied": if dry_run { 0 } else { copied },
            "snapshots_to_copy": copied,
            "snapshots_skipped": skipped,
            "data_blobs": s.data_blobs,
            "tree_blobs": s.tree_blobs,
            "bytes_raw": s.bytes_raw,
            "bytes_sealed": s.bytes_sealed,
            "bytes_read": s.bytes_read,
            "read_requests": s.read_requests,
            "tree_requests": s.tree_requests,
            "files_rechunked": s.files_rechunked,
            "packs_written": s.packs_written,
            "packs_adopted": s.packs_adopted,
        }))?;
        out.finish()?;
        return Ok(());
    }
    if env.quiet {
        return Ok(());
    }
    for p in &o.planned {
        let snap = &p.snapshot;
        let head = format!(
            "snapshot {} of [{}] at {} by {}@{}",
            p.id,
            snap.paths.join(" "),
            output::short_time(snap.time_unix_ns, snap.tz_offset_s),
            snap.username,
            snap.hostname
        );
        match (&p.action, copied_to(p.id)) {
            (Action::Skip { copy }, _) => out.line(format_args!(
                "skipping source snapshot {}, was already copied to snapshot {copy}",
                p.id
            ))?,
            (Action::Copy, Some(t)) => {
                out.line(head)?;
                out.line(format_args!("snapshot {t} saved"))?;
            }
            (Action::Copy, None) => {
                out.line(head)?;
                out.line("would copy it")?;
            }
        }
    }
    let blobs = s.data_blobs + s.tree_blobs;
    out.line(format_args!(
        "{} {}, {} skipped; {} {} ({} stored, {} read from the source in {}){}",
        if dry_run { "would copy" } else { "copied" },
        output::count(copied as u64, "snapshot", "snapshots"),
        skipped,
        if dry_run { "would move" } else { "moved" },
        output::count(blobs, "blob", "blobs"),
        output::bytes(s.bytes_sealed),
        output::bytes(s.bytes_read),
        output::count(s.read_requests, "request", "requests"),
        if o.shared_keys {
            String::new()
        } else {
            format!(
                "; re-chunked {} (the repositories do not share chunker parameters: see `init --copy-chunker-params-from`)",
                output::count(s.files_rechunked, "file", "files")
            )
        }
    ))?;
    out.finish()?;
    Ok(())
}

/// `init --copy-chunker-params-from REPO`: the repository whose parameters and content keys
/// the new one shares, opened with its passphrase from `--from-password-*` /
/// `CISTA_FROM_PASSWORD`.
pub(super) fn open_from(
    env: &Env,
    location: &str,
    options: &[String],
    file: Option<&std::path::Path>,
    command: Option<&str>,
) -> Result<Repository> {
    open_with(
        &env.storage,
        location,
        options,
        &PasswordFrom {
            file,
            command,
            env_var: "CISTA_FROM_PASSWORD",
        },
        "source repository",
    )
}
