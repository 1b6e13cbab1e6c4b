//! The split form (`pg backup --jobs N`): one database dumped by several `pg_dump`s at once,
//! each streamed into the snapshot as its own archive, all reading one snapshot of the
//! database that a coordinating session exported (`pg_export_snapshot()`), so together they
//! are one point in time, as a single `pg_dump` is.
//!
//! The archives (custom format, uncompressed, as the single form): the schema
//! (`--schema-only`: the pre-data and post-data sections) at `postgres/<db>.dump`; one
//! data-only archive for each table of at least [`SPLIT_MIN_BYTES`], at
//! `postgres/<db>.data/<schema>.<table>.dump`; and `postgres/<db>.data/rest.dump` with the
//! data of every other table, the sequences' values and the large objects.
//!
//! Why: the dumps run in parallel (the server reads and sends several tables at once), and a
//! restore can load the tables' data in parallel straight from the repository and build the
//! indexes in parallel from the small schema archive, where `pg_restore -j` of one piped
//! archive must stage it in a file and scan it for each table. The cost: a split dump is
//! restored by cista (or by running `pg_restore` on its archives in section order), not by
//! one `pg_restore` of one file.
//!
//! Consistency: the coordinator is a `psql` session that begins a `REPEATABLE READ READ
//! ONLY` transaction, takes `ACCESS SHARE` locks on every table (no `DROP` or `ALTER` can
//! slip in between two archives; writes go on), then exports its snapshot; every `pg_dump`
//! runs with `--snapshot`; the session commits after the last one has finished.

use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::dump::TocReader;
use super::{
    DUMP_OPTIONS, DataPart, PgBackupOptions, PgTools, ROOT, TableName, TableRecord, describe_conn,
    file_name_of, name_part, one_line,
};
use crate::error::{Error, Result};
use crate::ops::backup::SnapshotWriter;
use crate::ops::now_unix_ns;

/// Tables at least this large (`pg_table_size`) get their own data archive; the rest share
/// one. Below it, a process, a connection and an archive per table cost more than the
/// parallelism gains.
pub const SPLIT_MIN_BYTES: u64 = 16 << 20;

/// The name of the archive holding every table's rows that no other archive holds.
pub const REST: &str = "rest.dump";

/// What a split dump of one database stored.
#[derive(Debug)]
pub struct SplitDump {
    /// The exported snapshot every archive read.
    pub snapshot: String,
    /// The schema archive.
    pub schema: DataPart,
    /// The data archives, largest first.
    pub data: Vec<DataPart>,
}

/// `schema.name` double-quoted part by part (`""` a quote inside): an SQL identifier, and a
/// `pg_dump` pattern that matches that one table (inside quotes, pattern characters are
/// literal).
fn pattern(schema: &str, name: &str) -> String {
    format!(
        "\"{}\".\"{}\"",
        schema.replace('"', "\"\""),
        name.replace('"', "\"\"")
    )
}

/// One archive to dump.
struct Job {
    path: String,
    table: Option<TableName>,
    options: Vec<String>,
    /// Expected size, for the order (largest first, so the last to finish is short).
    weight: u64,
}

/// Dumps database `name` (connection `conn`, whose catalog listed `tables`) in the split
/// form with up to `opts.jobs` dumps at once.
pub fn dump(
    writer: &SnapshotWriter<'_>,
    tools: &PgTools,
    name: &str,
    conn: &str,
    tables: &[TableRecord],
    opts: &PgBackupOptions,
) -> Result<SplitDump> {
    let own = format!("{ROOT}/{}.data", file_name_of(name));
    let min = match opts.split_min_bytes {
        0 => SPLIT_MIN_BYTES,
        n => n,
    };
    let mut big: Vec<&TableRecord> = tables.iter().filter(|t| t.size_bytes >= min).collect();
    big.sort_by_key(|t| std::cmp::Reverse(t.size_bytes));
    let split_set = splittable(tools, conn)?;
    big.retain(|t| split_set.contains(&(t.schema.clone(), t.name.clone())));
    let mut data: Vec<Job> = big
        .iter()
        .map(|t| Job {
            path: format!("{own}/{}.{}.dump", name_part(&t.schema), name_part(&t.name)),
            table: Some(TableName {
                schema: t.schema.clone(),
                name: t.name.clone(),
            }),
            options: vec![
                "--data-only".into(),
                format!("--table={}", pattern(&t.schema, &t.name)),
            ],
            weight: t.size_bytes,
        })
        .collect();
    let total: u64 = tables.iter().map(|t| t.size_bytes).sum();
    let mut rest = vec!["--data-only".to_owned()];
    rest.extend(
        big.iter()
            .map(|t| format!("--exclude-table-data={}", pattern(&t.schema, &t.name))),
    );
    data.push(Job {
        path: format!("{own}/{REST}"),
        table: None,
        options: rest,
        weight: total.saturating_sub(big.iter().map(|t| t.size_bytes).sum()),
    });
    data.sort_by_key(|j| std::cmp::Reverse(j.weight));
    // The schema first: it is small, and a permission error shows in it at once.
    let mut all = vec![Job {
        path: format!("{ROOT}/{}.dump", file_name_of(name)),
        table: None,
        options: vec!["--schema-only".into()],
        weight: 0,
    }];
    all.extend(data);

    let lock: Vec<String> = tables
        .iter()
        .filter(|t| split_set.contains(&(t.schema.clone(), t.name.clone())))
        .map(|t| pattern(&t.schema, &t.name))
        .collect();
    let coordinator = Coordinator::start(tools, conn, &lock, writer.cancel_flag())?;
    let snapshot = coordinator.snapshot.clone();
    let results = run_jobs(writer, tools, conn, &snapshot, &all, opts.jobs, name);
    let ended = coordinator.finish();
    let mut parts = results?;
    ended?;
    let schema = parts.remove(0);
    Ok(SplitDump {
        snapshot,
        schema,
        data: parts,
    })
}

/// The ordinary tables (`relkind` `r`, not an extension's own) that `pg_dump --table` can dump
/// alone, and that the coordinator locks.
fn splittable(tools: &PgTools, conn: &str) -> Result<std::collections::HashSet<(String, String)>> {
    let out = tools.query_sep(
        conn,
        "SELECT n.nspname, c.relname FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' \
         AND n.nspname NOT LIKE 'pg\\_%' AND NOT EXISTS (SELECT 1 FROM pg_depend d \
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (s, n) = l.split_once(super::SEP)?;
            Some((s.to_owned(), n.to_owned()))
        })
        .collect())
}

/// Runs every job, `jobs` at a time, each streamed into `writer`. The first failure stops the
/// others (their dumps are killed) and is the error.
fn run_jobs(
    writer: &SnapshotWriter<'_>,
    tools: &PgTools,
    conn: &str,
    snapshot: &str,
    all: &[Job],
    jobs: u32,
    database: &str,
) -> Result<Vec<DataPart>> {
    super::in_parallel(all, jobs, |job, failed| {
        dump_one(writer, tools, conn, snapshot, job, failed, database)
    })
}

/// Dumps one archive of a split dump.
fn dump_one(
    writer: &SnapshotWriter<'_>,
    tools: &PgTools,
    conn: &str,
    snapshot: &str,
    job: &Job,
    failed: &AtomicBool,
    database: &str,
) -> Result<DataPart> {
    let mut cmd = tools.tool("pg_dump");
    cmd.args(DUMP_OPTIONS)
        .args(&job.options)
        .arg(format!("--snapshot={snapshot}"))
        .arg("--dbname")
        .arg(conn)
        .stderr(Stdio::piped());
    let start_unix_ns = now_unix_ns();
    let mut toc = TocReader::start(tools)?;
    let dump_bytes = writer.add_command_watched(&job.path, cmd, &mut |b| {
        if failed.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("another dump of the database failed"));
        }
        toc.feed(b);
        Ok(())
    })?;
    let toc = toc.finish().map_err(|e| match e {
        Error::Postgres(m) => Error::Postgres(format!("{database} ({}): {m}", job.path)),
        e => e,
    })?;
    let mut options: Vec<String> = DUMP_OPTIONS.map(String::from).to_vec();
    options.extend(job.options.iter().cloned());
    Ok(DataPart {
        path: job.path.clone(),
        table: job.table.clone(),
        dump_bytes,
        options,
        start_unix_ns,
        end_unix_ns: now_unix_ns(),
        exit_status: 0,
        toc,
    })
}

/// The `psql` session whose transaction holds the exported snapshot open.
struct Coordinator {
    child: Child,
    stdin: Option<ChildStdin>,
    snapshot: String,
}

impl Coordinator {
    /// Begins the transaction, locks `lock` (SQL identifiers) and exports the snapshot. A
    /// stop request ends the wait (a lock can wait behind a long `ALTER TABLE`).
    fn start(tools: &PgTools, conn: &str, lock: &[String], cancel: &AtomicBool) -> Result<Self> {
        let mut child = tools
            .tool("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conn])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Postgres(format!("cannot run psql: {e}")))?;
        let mut stdin = child.stdin.take();
        // LOCK first: in REPEATABLE READ the snapshot is taken by the first query after it.
        let mut sql = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n");
        for chunk in lock.chunks(500) {
            sql += &format!("LOCK TABLE {} IN ACCESS SHARE MODE;\n", chunk.join(", "));
        }
        sql += "SELECT pg_export_snapshot();\n";
        if let Some(w) = &mut stdin {
            // A psql that already failed shows in its output below.
            let _ = w.write_all(sql.as_bytes()).and_then(|()| w.flush());
        }
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = std::io::BufReader::new(out).read_line(&mut line);
                let _ = tx.send(line);
            });
        }
        let mut me = Self {
            child,
            stdin,
            snapshot: String::new(),
        };
        let line = loop {
            if cancel.load(Ordering::Relaxed) {
                let _ = me.child.kill();
                return Err(Error::Interrupted);
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break String::new(),
            }
        };
        let snapshot = line.trim().to_owned();
        if snapshot.is_empty() || !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            drop(me.stdin.take());
            let _ = me.child.wait();
            let mut said = Vec::new();
            if let Some(mut e) = me.child.stderr.take() {
                let _ = std::io::Read::read_to_end(&mut e, &mut said);
            }
            return Err(Error::Postgres(format!(
                "exporting a snapshot of {}: {}",
                describe_conn(conn),
                if said.is_empty() {
                    format!("psql printed {snapshot:?}")
                } else {
                    one_line(&said)
                }
            )));
        }
        me.snapshot = snapshot;
        Ok(me)
    }

    /// Ends the transaction (nothing was written in it).
    fn finish(mut self) -> Result<()> {
        if let Some(mut w) = self.stdin.take() {
            let _ = w.write_all(b"COMMIT;\n");
        }
        let status = self
            .child
            .wait()
            .map_err(|e| Error::Postgres(format!("psql: {e}")))?;
        if !status.success() {
            let mut said = Vec::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = std::io::Read::read_to_end(&mut e, &mut said);
            }
            return Err(Error::Postgres(format!(
                "the session holding the exported snapshot ended {status}: {}",
                one_line(&said)
            )));
        }
        Ok(())
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        // An unfinished coordinator (an error on the way): end psql, whose transaction rolls
        // back, and reap it.
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
