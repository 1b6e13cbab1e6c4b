//! Dumping databases into a snapshot: the catalog read for the manifest, `pg_dump` streamed
//! through the writer, and the table of contents read back from the same stream.

use std::process::Stdio;

use super::split;
use super::{
    DumpRecord, MANIFEST_FORMAT, MANIFEST_FORMAT_SPLIT, Manifest, PgBackupOptions, PgTools, ROOT,
    SEP, TableRecord, as_conninfo, conninfo_value, file_name_of,
};
use crate::error::{Error, Result};
use crate::ops::backup::SnapshotWriter;
use crate::ops::now_unix_ns;

/// The tables of the database `conn` names, by schema and name.
fn tables_of(tools: &PgTools, conn: &str) -> Result<Vec<TableRecord>> {
    let out = tools.query_sep(
        conn,
        "SELECT n.nspname, c.relname, c.reltuples::bigint, pg_table_size(c.oid) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> 'information_schema' \
         AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split(SEP);
            Some(TableRecord {
                schema: f.next()?.to_owned(),
                name: f.next()?.to_owned(),
                rows_estimate: f.next()?.trim().parse().ok()?,
                size_bytes: f.next()?.trim().parse().ok()?,
            })
        })
        .collect())
}

/// `pg_restore --list` fed from a dump as it is stored: the entries of its table of contents.
pub(super) struct TocReader {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    listing: Option<std::thread::JoinHandle<String>>,
}

impl TocReader {
    pub(super) fn start(tools: &PgTools) -> Result<Self> {
        let mut child = tools
            .tool("pg_restore")
            .arg("--list")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Postgres(format!("cannot run pg_restore: {e}")))?;
        let stdin = child.stdin.take();
        let listing = child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut out, &mut s);
                s
            })
        });
        Ok(Self {
            child,
            stdin,
            listing,
        })
    }

    /// Hands on the next bytes of the dump until `pg_restore` has read what it wants (the
    /// table of contents comes first) and closed its end.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if let Some(w) = &mut self.stdin
            && std::io::Write::write_all(w, bytes).is_err()
        {
            self.stdin = None;
        }
    }

    /// The entries, or why the stream was not a readable archive.
    pub(super) fn finish(mut self) -> Result<Vec<String>> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .map_err(|e| Error::Postgres(format!("pg_restore --list: {e}")))?;
        let listing = self
            .listing
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            return Err(Error::Postgres(format!(
                "pg_restore --list could not read the dump back ({status})"
            )));
        }
        Ok(listing
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(str::to_owned)
            .collect())
    }
}

/// The `pg_dump` options every dump uses.
pub const DUMP_OPTIONS: [&str; 2] = ["--format=custom", "--compress=0"];

/// Dumps what `opts` names into `writer` (see the module header). Returns the manifest,
/// already added as `postgres/manifest.json`.
pub fn backup(
    writer: &SnapshotWriter<'_>,
    tools: &PgTools,
    opts: &PgBackupOptions,
) -> Result<Manifest> {
    let maintenance = opts
        .databases
        .first()
        .map_or_else(|| "dbname=postgres".into(), |d| as_conninfo(d));
    let server_num: u32 = tools
        .query(&maintenance, "SHOW server_version_num")?
        .trim()
        .parse()
        .map_err(|_| Error::Postgres("the server's server_version_num is not a number".into()))?;
    let server_major = server_num / 10_000;
    if tools.major < server_major {
        return Err(Error::Postgres(format!(
            "{} is {}, older than the server ({server_major}): pass --pg-bin the bin folder of PostgreSQL {server_major}'s client tools (Debian: /usr/lib/postgresql/{server_major}/bin)",
            tools.bin.join("pg_dump").display(),
            tools.version
        )));
    }
    let server_version = tools.query(&maintenance, "SHOW server_version")?;
    // (name, connection) of every database to dump.
    let mut targets: Vec<(String, String)> = Vec::new();
    if opts.all {
        let names = tools.query(
            &maintenance,
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
        )?;
        let base = if maintenance.contains("://") {
            String::new()
        } else {
            maintenance.clone()
        };
        for name in names.lines().filter(|l| !l.is_empty()) {
            targets.push((
                name.to_owned(),
                format!("{base} dbname={}", conninfo_value(name))
                    .trim()
                    .to_owned(),
            ));
        }
    } else {
        for conn in &opts.databases {
            let name = tools.query(conn, "SELECT current_database()")?;
            targets.push((name, conn.clone()));
        }
    }
    if targets.is_empty() {
        return Err(Error::InvalidInput(
            "no database to dump: give --dbname or --all".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut databases = Vec::new();
    for (name, conn) in targets {
        if !seen.insert(name.clone()) {
            continue;
        }
        let size_bytes = tools
            .query(&conn, "SELECT pg_database_size(current_database())")?
            .trim()
            .parse()
            .unwrap_or(0);
        let path = format!("{ROOT}/{}.dump", file_name_of(&name));
        let tables = tables_of(tools, &conn)?;
        let large_objects = tools
            .query(&conn, "SELECT count(*) FROM pg_largeobject_metadata")?
            .trim()
            .parse()
            .unwrap_or(0);
        if opts.jobs > 1 {
            let start_unix_ns = now_unix_ns();
            let split = split::dump(writer, tools, &name, &conn, &tables, opts)?;
            databases.push(DumpRecord {
                name,
                path: split.schema.path,
                size_bytes,
                dump_bytes: split.schema.dump_bytes
                    + split.data.iter().map(|p| p.dump_bytes).sum::<u64>(),
                options: split.schema.options,
                start_unix_ns,
                end_unix_ns: now_unix_ns(),
                exit_status: 0,
                tables,
                large_objects,
                toc: split.schema.toc,
                exported_snapshot: Some(split.snapshot),
                data: split.data,
            });
            continue;
        }
        let mut cmd = tools.tool("pg_dump");
        cmd.args(DUMP_OPTIONS)
            .arg("--dbname")
            .arg(&conn)
            .stderr(Stdio::piped());
        let start_unix_ns = now_unix_ns();
        let mut toc = TocReader::start(tools)?;
        let dump_bytes = writer.add_command_watched(&path, cmd, &mut |b| {
            toc.feed(b);
            Ok(())
        })?;
        let toc = toc.finish().map_err(|e| match e {
            Error::Postgres(m) => Error::Postgres(format!("{name}: {m}")),
            e => e,
        })?;
        databases.push(DumpRecord {
            name,
            path,
            size_bytes,
            dump_bytes,
            options: DUMP_OPTIONS.map(String::from).to_vec(),
            start_unix_ns,
            end_unix_ns: now_unix_ns(),
            exit_status: 0,
            tables,
            large_objects,
            toc,
            exported_snapshot: None,
            data: Vec::new(),
        });
    }
    let globals = if opts.globals {
        let path = format!("{ROOT}/globals.sql");
        let mut cmd = tools.tool("pg_dumpall");
        cmd.arg("--globals-only")
            .arg("--dbname")
            .arg(&maintenance)
            .stderr(Stdio::piped());
        writer.add_command_with(&path, cmd)?;
        Some(path)
    } else {
        None
    };
    let split = databases.iter().any(|d| !d.data.is_empty());
    let manifest = Manifest {
        format: if split {
            MANIFEST_FORMAT_SPLIT
        } else {
            MANIFEST_FORMAT
        }
        .into(),
        pg_dump_version: tools.version.clone(),
        server_version,
        databases,
        globals,
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::InvalidInput(format!("manifest: {e}")))?;
    writer.add_stream(&format!("{ROOT}/manifest.json"), &mut json.as_slice())?;
    Ok(manifest)
}
