//! `pg backup`: PostgreSQL databases as one snapshot (`cista::ops::pg`).

use std::path::PathBuf;

use anyhow::Result;
use cista::ops::backup::{BackupOptions, SnapshotMeta, SnapshotWriter};
use cista::ops::pg::{self, PgBackupOptions, PgTools};
use clap::{Args, Subcommand};

use cista::backend::FileType;
use serde_json::json;

use super::progress::Reporter;
use super::{Env, code, output};

#[derive(Debug, Subcommand)]
pub enum PgCommand {
    /// Dump databases with pg_dump (custom format, uncompressed, so unchanged tables
    /// deduplicate) straight into one snapshot tagged `postgres`, with the cluster's globals
    /// and a manifest.
    Backup(PgBackupArgs),
    /// List the databases, schemas and tables a `pg backup` snapshot holds.
    Ls(PgLsArgs),
    /// Restore a database (or some of its tables or schemas) of a `pg backup` snapshot
    /// into a running server, or into a plain SQL file.
    Restore(PgRestoreArgs),
}

#[derive(Debug, Args)]
pub struct PgLsArgs {
    /// `latest` (the newest `pg backup` snapshot) or a snapshot id prefix.
    snapshot: String,
}

#[derive(Debug, Args)]
pub struct PgRestoreArgs {
    /// `latest` (the newest `pg backup` snapshot) or a snapshot id prefix.
    snapshot: String,
    /// The database to restore into (a name or libpq connection string); with --create, the
    /// one to connect to first (e.g. `postgres`).
    #[arg(long, short = 'd')]
    dbname: Option<String>,
    /// The snapshot's database to restore, when it holds several.
    #[arg(long)]
    database: Option<String>,
    /// Only this table (repeatable; `pg_restore -t`).
    #[arg(long)]
    table: Vec<String>,
    /// Only this schema (repeatable; `pg_restore -n`).
    #[arg(long)]
    schema: Vec<String>,
    /// Create the database, under its name in the dump, before restoring into it.
    #[arg(long)]
    create: bool,
    /// Drop each object before creating it (`--clean --if-exists`).
    #[arg(long)]
    clean: bool,
    /// Do not set owners (for a server without the dump's roles).
    #[arg(long)]
    no_owner: bool,
    /// Parallel restore jobs. A dump made with `pg backup --jobs` loads its tables' data in
    /// parallel straight from the repository; a single-archive dump is staged in a
    /// temporary file, which pg_restore needs for it.
    #[arg(long, short = 'j', default_value_t = 1)]
    jobs: u32,
    /// Restore the cluster's globals (roles, tablespaces) first.
    #[arg(long)]
    globals: bool,
    /// Write a plain SQL script to this file instead of restoring into a server.
    #[arg(long, value_name = "PATH")]
    to_file: Option<PathBuf>,
    /// Folder of PostgreSQL's client tools (default: PATH, then the newest
    /// /usr/lib/postgresql/*/bin).
    #[arg(long, value_name = "DIR")]
    pg_bin: Option<PathBuf>,
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
    /// Dumps to run at once per database. More than 1 splits each database into archives
    /// (the schema, each table of 16 MiB or more, the rest) dumped in parallel from one
    /// exported snapshot, which `pg restore --jobs` loads in parallel too.
    #[arg(long, short = 'j', default_value_t = 1)]
    jobs: u32,
    /// With --jobs: the size (`pg_table_size`, e.g. 64M) from which a table gets its own
    /// archive; smaller tables share one.
    #[arg(long, value_name = "SIZE", value_parser = size_arg, default_value = "16M")]
    split_min_size: u64,
    /// Another tag for the snapshot, besides `postgres` (repeatable, or comma-separated).
    #[arg(long)]
    tag: Vec<String>,
    /// Host name recorded in the snapshot (default: this machine's).
    #[arg(long)]
    host: Option<String>,
}

/// A size argument (`16M`); a bad one is a usage error (exit 2).
fn size_arg(s: &str) -> Result<u64, String> {
    cista::ops::backup::parse_size(s).map_err(|e| e.to_string())
}

pub fn run(env: &Env, c: PgCommand) -> Result<u8> {
    match c {
        PgCommand::Backup(a) => backup(env, a),
        PgCommand::Ls(a) => ls(env, a),
        PgCommand::Restore(a) => restore(env, a),
    }
}

/// The snapshot `spec` names among `pg backup` snapshots, its index and its manifest.
fn pg_snapshot(
    env: &Env,
    spec: &str,
) -> Result<(
    cista::ops::session::Session,
    cista::id::SnapshotId,
    cista::format::snapshot::Snapshot,
    cista::repo::Index,
)> {
    let session = env.session_listing(
        cista::format::lock::LockMode::Shared,
        &[FileType::Snapshot, FileType::Index],
    )?;
    let repo = session.repo().clone();
    let filter = cista::ops::find::SnapshotFilter {
        tags: vec![pg::TAG.to_owned()],
        ..Default::default()
    };
    let (id, snap) = cista::ops::find::snapshot(&repo, spec, &filter)?;
    let index = super::repo_cmds::load_index(&repo)?;
    Ok((session, id, snap, index))
}

fn ls(env: &Env, a: PgLsArgs) -> Result<u8> {
    let (session, id, snap, index) = pg_snapshot(env, &a.snapshot)?;
    let m = pg::read_manifest(session.repo(), &index, &snap, &id.to_string())?;
    if env.json {
        let mut out = output::Out::new();
        out.line(
            json!({"message_type": "pg_manifest", "snapshot_id": id.to_hex(), "manifest": m}),
        )?;
        out.finish()?;
        return Ok(code::OK);
    }
    let mut text = format!(
        "snapshot {id}: {}, server {}\n",
        m.pg_dump_version, m.server_version
    );
    for d in &m.databases {
        text += &format!(
            "database {} ({} on the server, dump {}, {} tables, {} large objects)\n",
            d.name,
            output::bytes(d.size_bytes),
            output::bytes(d.dump_bytes),
            d.tables.len(),
            d.large_objects
        );
        if let Some(snap) = &d.exported_snapshot {
            text += &format!(
                "  split: schema /{} and {} data archives, one exported snapshot ({snap})\n",
                d.path,
                d.data.len()
            );
        }
        for t in &d.tables {
            text += &format!(
                "  {}.{}  ~{} rows\n",
                t.schema,
                t.name,
                t.rows_estimate.max(0)
            );
        }
    }
    if let Some(g) = &m.globals {
        text += &format!("globals: /{g}\n");
    }
    env.info(text.trim_end())?;
    Ok(code::OK)
}

fn restore(env: &Env, a: PgRestoreArgs) -> Result<u8> {
    let tools = PgTools::find(a.pg_bin.as_deref())?;
    let (session, id, snap, index) = pg_snapshot(env, &a.snapshot)?;
    let opts = pg::PgRestoreOptions {
        database: a.database.clone(),
        target: a.dbname.clone(),
        to_file: a.to_file.clone(),
        tables: a.table.clone(),
        schemas: a.schema.clone(),
        create: a.create,
        clean: a.clean,
        no_owner: a.no_owner,
        jobs: a.jobs,
        globals: a.globals,
    };
    let d = pg::restore(
        session.repo(),
        &index,
        &snap,
        &id.to_string(),
        &tools,
        &opts,
    )?;
    let into = match (&a.to_file, &a.dbname) {
        (Some(f), _) => format!("into {}", f.display()),
        (None, Some(db)) if !a.create => format!("into {}", pg::describe_conn(db)),
        _ => format!("as {}", d.name),
    };
    if env.json {
        let mut out = output::Out::new();
        out.line(
            json!({"message_type": "summary", "snapshot_id": id.to_hex(), "database": d.name}),
        )?;
        out.finish()?;
    } else {
        env.info(format_args!(
            "restored database {} of snapshot {id} {into}",
            d.name
        ))?;
    }
    Ok(code::OK)
}

fn backup(env: &Env, a: PgBackupArgs) -> Result<u8> {
    if a.dbname.is_empty() && !a.all {
        anyhow::bail!("nothing to dump: give --dbname NAME (repeatable) or --all");
    }
    // Before the repository: a missing or too old pg_dump says so without a passphrase.
    let tools = PgTools::find(a.pg_bin.as_deref())?;
    // Ctrl-C / SIGTERM: the dump is stopped, what was uploaded indexed, no snapshot written.
    super::rewrite::stop_on_signals(env)?;
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
        jobs: a.jobs,
        split_min_bytes: a.split_min_size,
    };
    let manifest = match pg::backup(&writer, &tools, &pg_opts) {
        Ok(m) => m,
        Err(e) => {
            reporter.finish();
            // Uploaded chunks stay indexed for the next run; no snapshot.
            writer.abort()?;
            return Err(match e {
                cista::Error::Postgres(m) => {
                    cista::Error::Postgres(format!("{m}; no snapshot was written"))
                }
                e => e,
            }
            .into());
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
