//! `pg restore`: a database of a `pg backup` snapshot streamed from the repository into
//! `pg_restore`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{DataPart, DumpRecord, PgTools, ROOT, as_conninfo, file_node, one_line, read_manifest};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Node;
use crate::ops::restore as files;
use crate::repo::{Index, Repository};

/// What `pg restore` does.
#[derive(Debug, Clone, Default)]
pub struct PgRestoreOptions {
    /// The database of the snapshot to restore (needed when it holds several).
    pub database: Option<String>,
    /// Where to: the database to restore into (or, with `create`, to connect to first).
    pub target: Option<String>,
    /// Write a plain SQL script here instead of restoring into a server.
    pub to_file: Option<PathBuf>,
    /// Only these tables (`pg_restore -t`).
    pub tables: Vec<String>,
    /// Only these schemas (`pg_restore -n`).
    pub schemas: Vec<String>,
    /// Create the database (with its name in the dump) before restoring into it.
    pub create: bool,
    /// Drop objects before creating them (`--clean --if-exists`).
    pub clean: bool,
    /// Skip ownership (`--no-owner`), for a server without the dump's roles.
    pub no_owner: bool,
    /// Parallel jobs (`pg_restore -j`; more than 1 stages the dump in a temporary file).
    pub jobs: u32,
    /// Run the snapshot's `globals.sql` first (roles, tablespaces; errors for ones that
    /// exist already are reported by psql and do not stop it).
    pub globals: bool,
}

/// Restores one database of a `pg backup` snapshot with `pg_restore`, streaming the dump
/// from the repository (a temporary file only for `jobs` > 1, which `pg_restore` requires).
/// Returns the database restored.
pub fn restore(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    snapshot: &str,
    tools: &PgTools,
    opts: &PgRestoreOptions,
) -> Result<DumpRecord> {
    let manifest = read_manifest(repo, index, snap, snapshot)?;
    let names = || {
        manifest
            .databases
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let record = match &opts.database {
        Some(name) => manifest
            .databases
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "snapshot {snapshot} holds no database {name:?} (it holds: {})",
                    names()
                ))
            })?,
        None if manifest.databases.len() == 1 => &manifest.databases[0],
        None => {
            return Err(Error::InvalidInput(format!(
                "snapshot {snapshot} holds several databases ({}): choose one with --database",
                names()
            )));
        }
    };
    let split = !record.data.is_empty();
    if split && opts.clean && !opts.create {
        return Err(Error::InvalidInput(format!(
            "--clean without --create cannot restore database {} of snapshot {snapshot}: it was dumped with --jobs, and dropping its objects section by section would meet their foreign keys out of order; restore into an empty database, or add --create to drop and recreate the whole database",
            record.name
        )));
    }
    let target = match (&opts.to_file, &opts.target) {
        (Some(_), _) => None,
        (None, Some(t)) => Some(as_conninfo(t)),
        (None, None) => {
            return Err(Error::InvalidInput(
                "give --dbname (the database to restore into, or with --create the one to connect to) or --to-file".into(),
            ));
        }
    };
    if opts.globals {
        let Some(conn) = &target else {
            return Err(Error::InvalidInput(
                "--globals restores into a server, not --to-file".into(),
            ));
        };
        let node = file_node(repo, index, snap, snapshot, &format!("{ROOT}/globals.sql"))?;
        let mut cmd = tools.tool("psql");
        cmd.args(["-X", "-q", "-d", conn]);
        feed(repo, index, &node, cmd, "psql (globals)", Stdio::null())?;
    }
    // pg_restore -n restores what is in a schema, not the schema: make it, so one schema
    // restores into an empty database.
    if let (Some(conn), false) = (&target, opts.create) {
        for n in &opts.schemas {
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", n.replace('"', "\"\""));
            tools.query(conn, &sql)?;
        }
    }
    if split {
        restore_split(
            repo,
            index,
            snap,
            snapshot,
            tools,
            opts,
            record,
            target.as_deref(),
        )?;
        return Ok(record.clone());
    }
    let node = file_node(repo, index, snap, snapshot, &record.path)?;
    let mut cmd = tools.tool("pg_restore");
    match (&opts.to_file, &target) {
        (Some(f), _) => {
            cmd.arg("--file").arg(f);
        }
        (None, Some(conn)) => {
            cmd.arg("--dbname").arg(conn);
        }
        (None, None) => {}
    }
    if opts.create {
        cmd.arg("--create");
    }
    if opts.clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    select(&mut cmd, opts);
    if opts.jobs > 1 && opts.to_file.is_none() {
        // pg_restore reads a parallel restore's entries out of order: it needs a file.
        let (_dir, staged) = stage(repo, index, &node)?;
        cmd.arg("--jobs").arg(opts.jobs.to_string()).arg(&staged);
        run(cmd, "pg_restore")?;
    } else {
        feed(repo, index, &node, cmd, "pg_restore", Stdio::null())?;
    }
    Ok(record.clone())
}

/// The `pg_restore` arguments every step of a restore shares: the selection, ownership, and
/// stopping at the first error.
fn select(cmd: &mut Command, opts: &PgRestoreOptions) {
    for t in &opts.tables {
        cmd.arg("--table").arg(t);
    }
    for n in &opts.schemas {
        cmd.arg("--schema").arg(n);
    }
    if opts.no_owner {
        cmd.arg("--no-owner");
    }
    cmd.arg("--exit-on-error");
}

/// A copy of the snapshot's file `node` in a new temporary folder (removed when the
/// returned handle is dropped).
fn stage(
    repo: &Repository,
    index: &Index,
    node: &Node,
) -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("cista-pg-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let staged = dir.path().join("dump");
    let mut f = std::fs::File::create(&staged).map_err(|e| Error::io(&staged, e))?;
    // A scratch copy for this run: not fsynced (durability buys it nothing).
    files::dump_file(repo, index, node, &mut f)?;
    Ok((dir, staged))
}

/// Runs `cmd` to its end; its failure is an error with its last words.
fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Postgres(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Postgres(format!(
            "{what} {}: {}",
            out.status,
            one_line(&out.stderr)
        )));
    }
    Ok(())
}

/// Restores a split dump (see [`super::split`]) in `pg_restore`'s own order: the schema's
/// pre-data section, then the data archives `opts.jobs` at a time, each streamed from the
/// repository into its own `pg_restore`, then the post-data section (indexes, constraints,
/// triggers) with `--jobs` from a staged copy of the schema archive, which is small. Into a
/// file, the same steps one after another.
#[allow(clippy::too_many_arguments)]
fn restore_split(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    snapshot: &str,
    tools: &PgTools,
    opts: &PgRestoreOptions,
    record: &DumpRecord,
    target: Option<&str>,
) -> Result<()> {
    let schema = file_node(repo, index, snap, snapshot, &record.path)?;
    // A data archive of one table is needed only if pg_restore's selection could take it.
    let parts: Vec<(&DataPart, Node)> = record
        .data
        .iter()
        .filter(|p| match &p.table {
            None => true,
            Some(t) => {
                (opts.tables.is_empty() || opts.tables.contains(&t.name))
                    && (opts.schemas.is_empty() || opts.schemas.contains(&t.schema))
            }
        })
        .map(|p| Ok((p, file_node(repo, index, snap, snapshot, &p.path)?)))
        .collect::<Result<_>>()?;
    let restore_cmd = |extra: &[&str]| {
        let mut cmd = tools.tool("pg_restore");
        cmd.args(extra);
        select(&mut cmd, opts);
        cmd
    };
    let mut first: Vec<&str> = vec!["--section=pre-data"];
    if opts.create {
        first.push("--create");
        if opts.clean {
            first.extend(["--clean", "--if-exists"]);
        }
    }
    let Some(conn) = target else {
        // One SQL script: the steps' outputs one after another (a `--create` script
        // connects to the new database itself).
        let path = opts.to_file.as_deref().unwrap_or(std::path::Path::new("-"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let out = |f: &std::fs::File| -> Result<Stdio> {
            Ok(Stdio::from(f.try_clone().map_err(|e| Error::io(path, e))?))
        };
        first.push("--file=-");
        feed(
            repo,
            index,
            &schema,
            restore_cmd(&first),
            "pg_restore (schema)",
            out(&file)?,
        )?;
        for (p, node) in &parts {
            let what = format!("pg_restore ({})", p.path);
            feed(
                repo,
                index,
                node,
                restore_cmd(&["--file=-"]),
                &what,
                out(&file)?,
            )?;
        }
        let post = restore_cmd(&["--section=post-data", "--file=-"]);
        return feed(
            repo,
            index,
            &schema,
            post,
            "pg_restore (indexes)",
            out(&file)?,
        );
    };
    let mut pre = restore_cmd(&first);
    pre.arg("--dbname").arg(conn);
    feed(
        repo,
        index,
        &schema,
        pre,
        "pg_restore (schema)",
        Stdio::null(),
    )?;
    // After --create, the rest goes into the database it made.
    let into = if opts.create {
        super::with_dbname(conn, &record.name)
    } else {
        conn.to_owned()
    };
    super::in_parallel(&parts, opts.jobs, |(p, node), _| {
        let mut cmd = restore_cmd(&[]);
        cmd.arg("--dbname").arg(&into);
        let what = format!("pg_restore ({})", p.path);
        feed(repo, index, node, cmd, &what, Stdio::null())
    })?;
    let mut post = restore_cmd(&["--section=post-data"]);
    post.arg("--dbname").arg(&into);
    if opts.jobs > 1 {
        let (_dir, staged) = stage(repo, index, &schema)?;
        post.arg("--jobs").arg(opts.jobs.to_string()).arg(&staged);
        run(post, "pg_restore (indexes)")
    } else {
        feed(
            repo,
            index,
            &schema,
            post,
            "pg_restore (indexes)",
            Stdio::null(),
        )
    }
}

/// Runs `cmd` with the file `node` of the snapshot on its standard input; its failure is an
/// error with its last words.
fn feed(
    repo: &Repository,
    index: &Index,
    node: &Node,
    mut cmd: Command,
    what: &str,
    stdout: Stdio,
) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Postgres(format!("cannot run {what}: {e}")))?;
    let said = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = std::io::Read::read_to_end(&mut e, &mut b);
            b
        })
    });
    let fed = match child.stdin.take() {
        Some(mut stdin) => files::dump_file(repo, index, node, &mut stdin).map(|_| ()),
        None => Ok(()),
    };
    let status = child
        .wait()
        .map_err(|e| Error::Postgres(format!("{what}: {e}")))?;
    let said = said.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        return Err(Error::Postgres(format!(
            "{what} {status}: {}",
            one_line(&said)
        )));
    }
    // A reader that stopped early on its own and succeeded has what it needed; any other
    // failure to hand the dump over is the repository's.
    match fed {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}
