//! `init`, `check`, `unlock`.

use anyhow::Result;
use cista::format::config::{ChunkerParams, Config};
use cista::format::key::KdfParams;
use cista::ops::check::{self, CheckOptions, Finding, ReadSelection, Severity};
use cista::repo::{InitOptions, Repository};
use clap::Args;
use serde_json::json;

use super::{Env, code, output, parse_kdf};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Chunk sizes in bytes as MIN,AVG,MAX (even numbers; default 131072,524288,2097152).
    #[arg(long, value_parser = parse_chunker, conflicts_with = "copy_chunker_params_from")]
    chunk_sizes: Option<ChunkerParams>,
    /// Share this repository's chunker parameters, chunker key and id key (not its
    /// encryption key), so `copy` between the two moves blobs without re-chunking
    /// (`CISTA_FROM_REPOSITORY`).
    #[arg(long, value_name = "REPO", env = "CISTA_FROM_REPOSITORY")]
    copy_chunker_params_from: Option<String>,
    /// Read that repository's passphrase from this file (first line).
    #[arg(long, env = "CISTA_FROM_PASSWORD_FILE", hide_env_values = true)]
    from_password_file: Option<std::path::PathBuf>,
    /// Run this shell command and use its output as that repository's passphrase.
    #[arg(long, env = "CISTA_FROM_PASSWORD_COMMAND", hide_env_values = true)]
    from_password_command: Option<String>,
    /// A storage option of that repository, as `-o` is for the new one (repeatable).
    #[arg(long = "from-option", value_name = "KEY=VALUE", value_parser = super::copy::parse_option)]
    from_options: Vec<(String, String)>,
    /// Pack target size in MiB.
    #[arg(long, default_value_t = Config::DEFAULT_PACK_SIZE >> 20)]
    pack_size_mib: u32,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = Config::DEFAULT_COMPRESSION_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    compression: i32,
    /// Argon2id cost as MEMORY_KIB,ITERATIONS,PARALLELISM (default 65536,3,4; lower only for tests).
    #[arg(long, value_parser = parse_kdf)]
    kdf_params: Option<KdfParams>,
}

fn parse_chunker(s: &str) -> Result<ChunkerParams, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let [min, avg, max] = v[..] else {
        return Err("expected MIN,AVG,MAX".into());
    };
    let p = ChunkerParams { min, avg, max };
    p.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

pub fn init(env: &Env, a: InitArgs) -> Result<u8> {
    let backend = env.backend()?;
    // The source first: a wrong source passphrase must not cost the new one's prompt.
    let from = match &a.copy_chunker_params_from {
        Some(loc) => Some(super::copy::open_from(
            env,
            loc,
            &super::copy::joined_options(&a.from_options),
            a.from_password_file.as_deref(),
            a.from_password_command.as_deref(),
        )?),
        None => None,
    };
    let pw = env.new_passphrase("enter password for new repository: ")?;
    let opts = InitOptions {
        chunker: a.chunk_sizes.unwrap_or(ChunkerParams::DEFAULT),
        pack_size: a.pack_size_mib.saturating_mul(1 << 20),
        compression_level: a.compression,
        kdf: a.kdf_params.unwrap_or(KdfParams::DEFAULT),
    };
    if !cista::format::config::PACK_SIZE_RANGE.contains(&opts.pack_size) {
        anyhow::bail!("--pack-size-mib must be between 1 and 512");
    }
    let repo = match &from {
        Some(f) => Repository::init_sharing_keys(backend.clone(), pw.as_bytes(), &opts, f)?,
        None => Repository::init(backend.clone(), pw.as_bytes(), &opts)?,
    };
    if env.json {
        let mut out = output::Out::new();
        out.line(
            json!({"message_type": "initialized", "id": repo.id_hex(), "repository": cista::backend::Backend::location(&*backend)}),
        )?;
        out.finish()?;
    } else {
        env.info(format_args!(
            "created cista repository {} at {}\n\nKeep the password safe: losing it means losing access to the data.\nAdd a recovery password with `cista key add`.",
            &repo.id_hex()[..10],
            cista::backend::Backend::location(&*backend)
        ))?;
    }
    Ok(code::OK)
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read every pack and verify every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read a subset of the packs: N/M (group N of M by pack id, the same every time), P%
    /// (a random P percent of them) or SIZE (random packs worth about SIZE bytes; suffixes
    /// k, m, g, t: powers of 1024).
    #[arg(long, value_name = "SUBSET", value_parser = parse_subset)]
    read_data_subset: Option<ReadSelection>,
}

fn parse_subset(s: &str) -> Result<ReadSelection, String> {
    ReadSelection::parse(s).map_err(|e| e.to_string())
}

pub fn check(env: &Env, a: CheckArgs) -> Result<u8> {
    let session = env.session(cista::format::lock::LockMode::Shared)?;
    let selection = if a.read_data {
        Some(ReadSelection::All)
    } else {
        a.read_data_subset
    };
    let r = check::run(
        session.repo(),
        &CheckOptions {
            read_data: selection,
            reads_in_flight: env.reads_in_flight()?,
            ..CheckOptions::default()
        },
    )?;
    let errors = r.count(Severity::Error);
    if env.json {
        let mut out = output::Out::new();
        for f in &r.findings {
            let mut v = f.to_json();
            if let Some(m) = v.as_object_mut() {
                m.insert("message_type".into(), "finding".into());
            }
            out.line(v)?;
        }
        let broken: Vec<String> = r.broken_packs().iter().map(|p| p.to_hex()).collect();
        out.line(json!({
            "message_type": "summary",
            "ok": r.is_ok(),
            "num_errors": errors,
            "num_warnings": r.count(Severity::Warning),
            "broken_packs": broken,
            "suggest_repair_index": r.findings.iter().any(|f| f.suggests_repair_index()),
            "suggest_prune": r.findings.iter().any(|f| matches!(f, Finding::PackUnindexed { .. })),
            "stopped": r.stopped,
            "snapshots": r.snapshots,
            "packs": r.packs,
            "blobs": r.blobs,
            "packs_read": r.packs_read,
            "bytes_read": r.bytes_read,
        }))?;
        out.finish()?;
    } else {
        for f in &r.findings {
            output::warn(format_args!("{}: {f}", f.severity().as_str()));
        }
        if r.stopped {
            output::warn("error: the check stopped there: upgrade cista to check this repository");
        }
        env.info(format_args!(
            "checked {}, {}, {}{}",
            output::count(r.snapshots as u64, "snapshot", "snapshots"),
            output::count(r.packs as u64, "pack", "packs"),
            output::count(r.blobs as u64, "blob", "blobs"),
            match selection {
                None => String::new(),
                Some(ReadSelection::All) => format!(
                    ", read {}",
                    output::count(r.packs_read as u64, "pack", "packs")
                ),
                Some(_) => format!(
                    ", read {} of {} ({} bytes)",
                    r.packs_read,
                    output::count(r.packs as u64, "pack", "packs"),
                    r.bytes_read
                ),
            }
        ))?;
    }
    if r.is_ok() {
        env.info("no errors were found")?;
        Ok(code::OK)
    } else {
        anyhow::bail!(
            "the repository has {} (listed above)",
            output::count(errors as u64, "error", "errors")
        )
    }
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones.
    #[arg(long)]
    remove_all: bool,
}

/// restic's `unlock`: no lock of its own; stale locks only (their holder died: same host and
/// pid gone, or not refreshed for 30 minutes), or every lock with `--remove-all`.
pub fn unlock(env: &Env, a: UnlockArgs) -> Result<u8> {
    let repo = env.open()?;
    let n = repo.unlock(a.remove_all, &cista::host::Host::this_process())?;
    env.info(format_args!("successfully removed {n} locks"))?;
    Ok(code::OK)
}

/// The repository's index for a reading command, with a warning on stderr for each damaged
/// index file it skipped (what those files described was found again from pack headers).
pub fn load_index(repo: &Repository) -> Result<cista::repo::Index> {
    let index = repo.load_index()?;
    for (id, why) in index.damaged() {
        super::output::warn(format_args!("warning: index file {id} skipped: {why}"));
    }
    if !index.damaged().is_empty() {
        super::output::warn(format_args!(
            "warning: {} indexed from their own headers instead; run `cista check`",
            super::output::count(index.recovered().len() as u64, "pack was", "packs were")
        ));
    }
    Ok(index)
}
