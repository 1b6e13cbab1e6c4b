//! `pg backup`: PostgreSQL databases as one snapshot (`cista::ops::pg`).

use std::path::PathBuf;

use anyhow::Result;
use cista::ops::backup::{BackupOptions, SnapshotMeta, SnapshotWriter};
use cista::ops::pg::{self, PgBackupOptions, PgTools};
use clap::{Args, Subcommand};

use super::progress::Reporter;
use super::{Env, code};

#[derive(Debug, Subcommand)]
pub enum PgCommand {
    /// Dump databases with pg_dump (custom format, uncompressed, so unchanged tables
    /// deduplicate) straight into one snapshot tagged `postgres`, with the cluster's globals
    /// and a manifest.
    Backup(PgBackupArgs),
}

#[derive(Debug, Args)]
pub struct PgBackupArgs {
    /// Database to dump: a name or a libpq connection string (repeatable). PGHOST, PGPORT,
    /// PGUSER, PGPASSWORD, PGPASSFILE and PGSERVICE apply as for psql.
    #[arg(long, short = 'd')]
    dbname: Vec<String>,
    /// Every database of the cluster that accepts connections, except templates (listed
    /// through the first --dbname, else `dbname=postgres`).
    #[arg(long)]
    all: bool,
    /// Leave out the cluster's globals (`pg_dumpall --globals-only`: roles, tablespaces),
    /// which need a superuser.
    #[arg(long)]
    no_globals: bool,
    /// Folder of PostgreSQL's client tools (default: PATH, then the newest
    /// /usr/lib/postgresql/*/bin).
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
    /// Another tag for the snapshot, besides `postgres` (repeatable, or comma-separated).
    #[arg(long)]
    tag: Vec<String>,
    /// Host name recorded in the snapshot (default: this machine's).
    #[arg(long)]
    host: Option<String>,
}

pub fn run(env: &Env, c: PgCommand) -> Result<u8> {
    match c {
        PgCommand::Backup(a) => backup(env, a),
    }
}

fn backup(env: &Env, a: PgBackupArgs) -> Result<u8> {
    if a.dbname.is_empty() && !a.all {
        anyhow::bail!("nothing to dump: give --dbname NAME (repeatable) or --all");
    }
    // Before the repository: a missing or too old pg_dump says so without a passphrase.
    let tools = PgTools::find(a.pg_bin.as_deref())?;
    let repo = env.open()?;
    let mut tags = vec![pg::TAG.to_owned()];
    tags.extend(
        a.tag
            .iter()
            .flat_map(|t| t.split(','))
            .filter(|t| !t.is_empty())
            .map(String::from),
    );
    let opts = BackupOptions {
        tags,
        host: a.host.clone(),
        lock: cista::ops::session::LockOptions {
            no_lock: false,
            ..env.lock.clone()
        },
        ..BackupOptions::default()
    };
    let reporter = Reporter::backup(env.quiet, env.json);
    let writer = SnapshotWriter::open(&repo, &opts, &reporter, &env.cancel)?;
    let pg_opts = PgBackupOptions {
        databases: a.dbname.clone(),
        all: a.all,
        globals: !a.no_globals,
    };
    let manifest = match pg::backup(&writer, &tools, &pg_opts) {
        Ok(m) => m,
        Err(e) => {
            reporter.finish();
            // Uploaded chunks stay indexed for the next run; no snapshot.
            writer.abort()?;
            return Err(e.into());
        }
    };
    let paths = manifest
        .databases
        .iter()
        .map(|d| format!("/{}", d.path))
        .chain(manifest.globals.iter().map(|g| format!("/{g}")))
        .collect();
    let outcome = writer.commit(SnapshotMeta {
        paths,
        ..SnapshotMeta::default()
    });
    reporter.finish();
    let outcome = outcome?;
    super::backup::print_summary(env, &outcome)?;
    Ok(code::OK)
}
