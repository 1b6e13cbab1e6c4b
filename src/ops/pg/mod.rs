//! PostgreSQL as a source (`cista pg backup`): each database dumped by `pg_dump` in the
//! custom format without compression (`-Fc -Z0`), streamed into the snapshot as it is
//! produced (no local copy: a backup server rarely has the database's size free), plus the
//! cluster's globals (`pg_dumpall --globals-only`) and a manifest of what was dumped, all in
//! one snapshot tagged `postgres` through one [`SnapshotWriter`].
//!
//! Why `-Fc -Z0`: uncompressed, a table whose rows did not change yields the same bytes the
//! next night, so the content-defined chunks deduplicate (a compressed dump changes entirely,
//! restic #5446); the custom format keeps `pg_restore`'s per-table and per-schema selection
//! and its parallel restore; and it streams to a pipe (the directory format, the other
//! per-table one, writes files). cista compresses the chunks itself.
//!
//! Layout in the snapshot: `postgres/<database>.dump` per database (`/` and `%` in a name
//! written as `%2F` and `%25`, a leading `.` as `%2E`), `postgres/globals.sql`, and
//! `postgres/manifest.json` ([`Manifest`]). Connections follow libpq: `--dbname` takes a
//! database name or a connection string, and PGHOST, PGPORT, PGUSER, PGPASSWORD, PGPASSFILE
//! and PGSERVICE reach every tool unchanged; nothing here reads or prints a password.
//!
//! Validation: a dump that exits non-zero fails the run (no snapshot), with the tool's last
//! words in the error; a `pg_dump` older than the server is refused before anything runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::ops::find::{self, Located};
use crate::ops::restore as files;
use crate::repo::{Index, Repository};

mod dump;
mod restore;
pub mod split;

pub use dump::{DUMP_OPTIONS, backup};
pub use restore::{PgRestoreOptions, restore};

/// Where the snapshot's PostgreSQL files go.
pub const ROOT: &str = "postgres";
/// The tag every `pg backup` snapshot carries.
pub const TAG: &str = "postgres";
/// The manifest's `format` value when every database is one archive.
pub const MANIFEST_FORMAT: &str = "cista-pg/1";
/// The manifest's `format` value when some database was split into archives (`--jobs`): a
/// reader of `cista-pg/1` would restore such a database without the split tables' data, so
/// it must refuse it.
pub const MANIFEST_FORMAT_SPLIT: &str = "cista-pg/2";

/// The client tools of one PostgreSQL version.
#[derive(Debug, Clone)]
pub struct PgTools {
    /// Folder holding `pg_dump`, `pg_dumpall`, `psql`.
    pub bin: PathBuf,
    /// `pg_dump --version`, as printed.
    pub version: String,
    /// Its major version (16 for 16.4).
    pub major: u32,
}

impl PgTools {
    /// The tools in `dir`; else the `pg_dump` on `PATH`; else the newest of Debian's
    /// `/usr/lib/postgresql/*/bin`. None found is an error saying where it looked.
    pub fn find(dir: Option<&Path>) -> Result<Self> {
        let candidates: Vec<PathBuf> = match dir {
            Some(d) => vec![d.to_path_buf()],
            None => {
                let mut c: Vec<PathBuf> = std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect())
                    .unwrap_or_default();
                c.extend(debian_bins());
                c
            }
        };
        for bin in candidates {
            if bin.join("pg_dump").is_file() {
                return Self::at(bin);
            }
        }
        Err(Error::Postgres(match dir {
            Some(d) => format!(
                "no pg_dump in {}: pass --pg-bin the folder of PostgreSQL's client tools",
                d.display()
            ),
            None => "no pg_dump on PATH or in /usr/lib/postgresql/*/bin: install PostgreSQL's client tools (Debian: postgresql-client) or pass --pg-bin".into(),
        }))
    }

    fn at(bin: PathBuf) -> Result<Self> {
        let out = Command::new(bin.join("pg_dump"))
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                Error::Postgres(format!("cannot run {}: {e}", bin.join("pg_dump").display()))
            })?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let major = major_of(&version).ok_or_else(|| {
            Error::Postgres(format!(
                "{} printed no version ({version:?})",
                bin.join("pg_dump").display()
            ))
        })?;
        Ok(Self {
            bin,
            version,
            major,
        })
    }

    /// A command for one of the tools.
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.stdin(Stdio::null());
        c
    }

    /// One value from the server `conn` names: `psql -XAtq -c SQL`.
    pub fn query(&self, conn: &str, sql: &str) -> Result<String> {
        self.query_sep(conn, sql)
    }

    /// Rows from the server, fields separated by [`SEP`].
    fn query_sep(&self, conn: &str, sql: &str) -> Result<String> {
        let sep = SEP.to_string();
        let out = self
            .tool("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", &sep])
            .args(["-d", conn, "-c", sql])
            .output()
            .map_err(|e| Error::Postgres(format!("cannot run psql: {e}")))?;
        if !out.status.success() {
            return Err(Error::Postgres(format!(
                "psql -d {}: {}",
                describe_conn(conn),
                one_line(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }
}

/// Debian's PostgreSQL folders, newest version first.
fn debian_bins() -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.into_iter().rev().map(|(_, p)| p).collect()
}

/// The major version in `pg_dump (PostgreSQL) 16.4 (Debian 16.4-1)`.
fn major_of(version: &str) -> Option<u32> {
    let v = version
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    v.split(['.', 'b', 'r']).next()?.parse().ok()
}

/// A connection string for messages: as given, unless it may hold a password (a
/// `password=` key or a URI's `user:password@`).
pub fn describe_conn(conn: &str) -> String {
    if conn.contains("password") || conn.contains('@') {
        "(the given connection)".into()
    } else {
        conn.to_owned()
    }
}

/// A tool's standard error as one line.
fn one_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let line = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    line.chars().take(600).collect()
}

/// `name` as one plain file name: `%`, `/` and a leading `.` escaped.
pub fn file_name_of(database: &str) -> String {
    let mut s = database.replace('%', "%25").replace('/', "%2F");
    if s.starts_with('.') {
        s.replace_range(..1, "%2E");
    }
    s
}

/// A schema's or table's name as a part of a file name: [`file_name_of`], with every `.`
/// escaped too (`%2E`), so that `schema.table` names one table.
fn name_part(name: &str) -> String {
    file_name_of(name).replace('.', "%2E")
}

/// `conn` with its database replaced by `name` (libpq: the last `dbname` wins, in a
/// connection string as in a URI's parameters).
fn with_dbname(conn: &str, name: &str) -> String {
    if conn.starts_with("postgresql://") || conn.starts_with("postgres://") {
        let mut v = String::new();
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                v.push(char::from(b));
            } else {
                v.push_str(&format!("%{b:02X}"));
            }
        }
        let sep = if conn.contains('?') { '&' } else { '?' };
        format!("{conn}{sep}dbname={v}")
    } else {
        format!("{} dbname={}", as_conninfo(conn), conninfo_value(name))
    }
}

/// `--dbname`'s value as a connection string: as it is if it is one (`key=value` pairs or a
/// `postgresql://` URI), else `dbname='NAME'` (pg_dumpall takes only connection strings).
fn as_conninfo(s: &str) -> String {
    if s.contains('=') || s.starts_with("postgresql://") || s.starts_with("postgres://") {
        s.to_owned()
    } else {
        format!("dbname={}", conninfo_value(s))
    }
}

/// `name` as a libpq connection-string value (`dbname='...'`).
fn conninfo_value(name: &str) -> String {
    format!("'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Field separator of catalog queries (names may hold `|`, never a control character that
/// psql would print raw).
const SEP: char = '\u{1f}';

/// What to dump.
#[derive(Debug, Clone, Default)]
pub struct PgBackupOptions {
    /// Databases, by name or connection string (`--dbname`, repeatable).
    pub databases: Vec<String>,
    /// Every database of the cluster that accepts connections, except templates (`--all`);
    /// listed through the first of `databases` if given, else `dbname=postgres`.
    pub all: bool,
    /// Capture `pg_dumpall --globals-only` (roles, tablespaces).
    pub globals: bool,
    /// Dumps to run at once per database; more than 1 splits each database into archives
    /// read from one exported snapshot (see [`split`]).
    pub jobs: u32,
    /// In the split form, the `pg_table_size` from which a table gets its own archive
    /// (0: [`split::SPLIT_MIN_BYTES`]).
    pub split_min_bytes: u64,
}

/// What one `pg backup` recorded (`postgres/manifest.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// `pg_dump --version`.
    pub pg_dump_version: String,
    /// The server's `server_version`.
    pub server_version: String,
    /// One per database, in dump order.
    pub databases: Vec<DumpRecord>,
    /// The globals file, if captured.
    pub globals: Option<String>,
}

/// One database's dump.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DumpRecord {
    /// The database's name.
    pub name: String,
    /// Its archive in the snapshot: the whole dump, or with `data` its schema (pre-data and
    /// post-data sections) only.
    pub path: String,
    /// `pg_database_size` when the dump began.
    pub size_bytes: u64,
    /// The length of its archives together.
    pub dump_bytes: u64,
    /// `pg_dump` arguments besides the connection.
    pub options: Vec<String>,
    /// Start and end, ns since the epoch.
    pub start_unix_ns: i64,
    /// End of the dump.
    pub end_unix_ns: i64,
    /// `pg_dump`'s exit status (0: only successful dumps are recorded).
    pub exit_status: i32,
    /// Tables (and partitioned tables, materialized views) with the planner's row estimate,
    /// from the catalog as the dump began.
    pub tables: Vec<TableRecord>,
    /// Large objects in the database.
    pub large_objects: u64,
    /// The dump's table of contents as `pg_restore --list` read it from the stored stream,
    /// one entry a line (`215; 1259 16386 TABLE public kunden postgres`), comments left out.
    pub toc: Vec<String>,
    /// The snapshot `pg_export_snapshot()` exported and every archive of a split dump read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_snapshot: Option<String>,
    /// A split dump's data archives (`cista-pg/2`), largest first; empty: `path` holds it all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<DataPart>,
}

/// One data archive of a split dump.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DataPart {
    /// Its file in the snapshot.
    pub path: String,
    /// The one table whose rows it holds; none: the rows of every table no other part holds,
    /// the sequences' values and the large objects.
    pub table: Option<TableName>,
    /// Its length.
    pub dump_bytes: u64,
    /// `pg_dump` arguments besides the connection and the snapshot.
    pub options: Vec<String>,
    /// Start, ns since the epoch.
    pub start_unix_ns: i64,
    /// End.
    pub end_unix_ns: i64,
    /// `pg_dump`'s exit status (0).
    pub exit_status: i32,
    /// Its table of contents, read back from the stored stream as for [`DumpRecord::toc`].
    pub toc: Vec<String>,
}

/// A table by schema and name.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TableName {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
}

/// One table of a dumped database.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TableRecord {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// `pg_class.reltuples` (-1: never analyzed).
    pub rows_estimate: i64,
    /// `pg_table_size`: its rows with TOAST, without indexes (absent in manifests before
    /// `cista-pg/2`: 0).
    #[serde(default)]
    pub size_bytes: u64,
}

/// Runs `f` on every item, up to `jobs` at a time, and returns the results in item order.
/// After the first failure no item is started, the flag handed to `f` is set (a running dump
/// watches it and stops), and that first failure is the error: the later ones are its
/// consequences.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: u32,
    f: impl Fn(&T, &std::sync::atomic::AtomicBool) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let done: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    let workers = usize::try_from(jobs)
        .unwrap_or(1)
        .clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { return };
                    match f(item, &failed) {
                        Ok(r) => {
                            if let Ok(mut d) = done.lock() {
                                d[i] = Some(r);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut first) = first_error.lock()
                                && first.is_none()
                            {
                                *first = Some(e);
                            }
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    done.into_inner()
        .map_err(|_| Error::InvalidInput("a worker thread panicked".into()))?
        .into_iter()
        .map(|r| r.ok_or_else(|| Error::InvalidInput("a worker thread panicked".into())))
        .collect()
}

/// The manifest's size cap: a snapshot is untrusted input, and the manifest of a cluster
/// with a hundred thousand tables stays far below it.
pub const MAX_MANIFEST_LEN: u64 = 256 << 20;

/// The `pg backup` snapshot's file at `path` (below [`ROOT`]).
fn file_node(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    snapshot: &str,
    path: &str,
) -> Result<Node> {
    let not_pg = || {
        Error::InvalidInput(format!(
            "snapshot {snapshot} is not a `pg backup` snapshot (no /{path})"
        ))
    };
    match find::locate(
        repo,
        index,
        &snap.tree,
        Path::new(&format!("/{path}")),
        snapshot,
    ) {
        Ok(Located::Node(_, n)) if matches!(n.kind, NodeKind::File { .. }) => Ok(n),
        Ok(_) | Err(Error::PathNotFound { .. }) => Err(not_pg()),
        Err(e) => Err(e),
    }
}

/// The manifest of a `pg backup` snapshot.
pub fn read_manifest(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    snapshot: &str,
) -> Result<Manifest> {
    let node = file_node(
        repo,
        index,
        snap,
        snapshot,
        &format!("{ROOT}/manifest.json"),
    )?;
    if let NodeKind::File { size, .. } = node.kind
        && size > MAX_MANIFEST_LEN
    {
        return Err(Error::corrupt(
            "snapshot",
            snapshot,
            format!(
                "its PostgreSQL manifest claims {size} bytes, more than the {MAX_MANIFEST_LEN}-byte cap"
            ),
        ));
    }
    let mut bytes = Vec::new();
    files::dump_file(repo, index, &node, &mut bytes)?;
    let damaged = |e: serde_json::Error| {
        Error::corrupt(
            "snapshot",
            snapshot,
            format!("its PostgreSQL manifest: {e}"),
        )
    };
    // Parsed once; its format is checked before the fields are read, so a newer manifest is
    // refused as newer rather than as damaged.
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(damaged)?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(MANIFEST_FORMAT | MANIFEST_FORMAT_SPLIT) | None => {}
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "snapshot {snapshot}'s PostgreSQL manifest is of format {other:?}, newer than this cista reads ({MANIFEST_FORMAT_SPLIT}): upgrade cista"
            )));
        }
    }
    serde_json::from_value(value).map_err(damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_names() {
        assert_eq!(
            major_of("pg_dump (PostgreSQL) 16.4 (Debian 16.4-1.pgdg120+1)"),
            Some(16)
        );
        assert_eq!(major_of("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(major_of("pg_dump (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(major_of("nothing"), None);
        assert_eq!(file_name_of("app"), "app");
        assert_eq!(file_name_of("a/b%c"), "a%2Fb%25c");
        assert_eq!(file_name_of(".hidden"), "%2Ehidden");
        assert_eq!(file_name_of(".."), "%2E.");
        assert_eq!(conninfo_value("it's"), "'it\\'s'");
        assert_eq!(as_conninfo("app"), "dbname='app'");
        assert_eq!(as_conninfo("host=h dbname=app"), "host=h dbname=app");
        assert_eq!(as_conninfo("postgresql://h/app"), "postgresql://h/app");
        assert_eq!(
            describe_conn("postgresql://u:secret@h/db"),
            "(the given connection)"
        );
        assert_eq!(name_part("a.b%c"), "a%2Eb%25c");
        assert_eq!(name_part("tä.b\"le"), "tä%2Eb\"le");
        assert_eq!(
            with_dbname("host=h dbname=x", "neu"),
            "host=h dbname=x dbname='neu'"
        );
        assert_eq!(
            with_dbname("postgres", "neu"),
            "dbname='postgres' dbname='neu'"
        );
        assert_eq!(
            with_dbname("postgresql://h/x", "Büro 1"),
            "postgresql://h/x?dbname=B%C3%BCro%201"
        );
        assert_eq!(
            with_dbname("postgresql://h/x?sslmode=disable", "n"),
            "postgresql://h/x?sslmode=disable&dbname=n"
        );
    }
}
