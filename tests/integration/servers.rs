//! Real servers for the tests, on 127.0.0.1 only: an S3 server (`moto_server` from PyPI's
//! `moto[server]`), OpenSSH's sshd for sftp, and PostgreSQL for database backups.
//!
//! One of each per test binary run, started on first use on a free high port; each test gets
//! a fresh bucket (S3) or folder (sftp). Every server is started under a small shell watchdog
//! that stops it by pid as soon as the test process is gone, so no server outlives the run
//! whichever way it ends. A test that needs a server it cannot find is skipped with a note on
//! stderr, unless `CISTA_REQUIRE_SERVERS` is set (scripts/test.sh sets it), when it fails.
//!
//! Binaries: `CISTA_MOTO_SERVER` or `.venv-test/bin/moto_server` (scripts/test.sh makes the
//! venv) or `moto_server` on `PATH`; `/usr/sbin/sshd` and `ssh-keygen` (Debian's
//! openssh-server and openssh-client); `CISTA_PG_BIN` or the newest
//! `/usr/lib/postgresql/*/bin` (Debian's postgresql), run as the `postgres` user when the
//! tests run as root (PostgreSQL refuses to run as root).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cista::backend::{Backend, BackendOptions, Location};

/// Whether a missing server fails the test rather than skipping it.
fn required() -> bool {
    std::env::var_os("CISTA_REQUIRE_SERVERS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `None` (and a note) when `what` cannot be had, unless servers are required.
fn unavailable<T>(what: &str, why: &str) -> Option<T> {
    assert!(
        !required(),
        "{what} is needed and CISTA_REQUIRE_SERVERS is set: {why}"
    );
    eprintln!("skipped: {what} unavailable ({why}); scripts/test.sh installs it");
    None
}

/// A free TCP port on 127.0.0.1 (the listener is closed again; a race with another process
/// taking it is possible but harmless: the server then fails to start and the test says so).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not start listening on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `program args` under a watchdog shell that kills it (by pid) once this test process
/// is gone, then removes `remove` if given. Output goes to `log`. Its children go first:
/// sshd's per-connection processes outlive the listener, and so would the ssh masters
/// (`ControlPersist=yes`, started by the openssh crate) of backends a test never dropped,
/// which end once their connection does.
fn spawn_watched(
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    log: &Path,
    remove: Option<&Path>,
) {
    let quoted: Vec<String> = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let script = format!(
        "{} >'{}' 2>&1 & pid=$!; while kill -0 {} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done; kill $(cat /proc/$pid/task/*/children 2>/dev/null) 2>/dev/null; kill $pid 2>/dev/null; sleep 1; kill -9 $pid 2>/dev/null; {}exit 0",
        quoted.join(" "),
        log.display(),
        std::process::id(),
        remove.map_or(String::new(), |p| format!(
            "sleep 1; rm -rf '{}'; ",
            p.display().to_string().replace('\'', "'\\''")
        ))
    );
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawning a test server");
    // The watchdog ends after this process does; reap it if it ends sooner (the server died).
    std::thread::spawn(move || child.wait());
}

fn scratch_root() -> &'static tempfile::TempDir {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("cista-servers-")
            .tempdir()
            .expect("tempdir")
    })
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn moto_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CISTA_MOTO_SERVER") {
        return Some(p.into());
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    (found.status.success() && !p.is_empty()).then(|| p.into())
}

/// A running S3 server.
#[derive(Debug)]
pub struct S3Server {
    pub port: u16,
}

/// The credentials every test uses against moto (which accepts any in its default mode).
pub const ACCESS_KEY: &str = "AKIATESTCISTA0000001";
pub const SECRET_KEY: &str = "cista-test-secret-value-0123456789abcdef";

fn start_moto(auth: bool) -> Option<S3Server> {
    let Some(bin) = moto_binary() else {
        return unavailable("moto_server (S3)", "not found");
    };
    let port = free_port();
    let log = scratch_root().path().join(format!("moto-{port}.log"));
    let env: &[(&str, &str)] = if auth {
        // Every request is authenticated from the first one on: any key is unknown.
        &[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]
    } else {
        &[]
    };
    spawn_watched(
        &bin,
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        env,
        &log,
        None,
    );
    wait_for_port(port, "moto_server");
    Some(S3Server { port })
}

/// The shared S3 server, started on first use.
pub fn s3() -> Option<&'static S3Server> {
    static S3: OnceLock<Option<S3Server>> = OnceLock::new();
    S3.get_or_init(|| start_moto(false)).as_ref()
}

/// A second S3 server that authenticates requests, so every key is refused.
pub fn s3_with_auth() -> Option<&'static S3Server> {
    static S3: OnceLock<Option<S3Server>> = OnceLock::new();
    S3.get_or_init(|| start_moto(true)).as_ref()
}

impl S3Server {
    /// `s3:http://127.0.0.1:PORT/` + bucket + prefix.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        let p = if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        };
        format!("s3:http://127.0.0.1:{}/{bucket}{p}", self.port)
    }

    /// A new, empty bucket (moto takes an unsigned `PUT /bucket`).
    pub fn bucket(&self) -> String {
        let name = unique("cista").to_lowercase();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read");
        assert!(
            reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
            "creating bucket {name}: {reply}"
        );
        name
    }

    /// The environment and `-o` options a test passes to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

/// The `-o` options every S3 test uses: nothing may probe off-machine addresses.
pub const S3_OPTIONS: [&str; 2] = [
    "s3.disable-config-load=true",
    "s3.disable-ec2-metadata=true",
];

/// A running sshd with a client key authorized for the current user.
#[derive(Debug)]
pub struct SshServer {
    pub port: u16,
    /// The client's private key.
    pub key: PathBuf,
    /// Folders handed to tests live below this.
    pub root: PathBuf,
    pub user: String,
}

fn sh(cmd: &str) -> Option<String> {
    let o = Command::new("sh").args(["-c", cmd]).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn start_sshd() -> Option<SshServer> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.is_file() {
        return unavailable("sshd (sftp)", "/usr/sbin/sshd not found");
    }
    if sh("command -v ssh && command -v ssh-keygen").is_none() {
        return unavailable("ssh (sftp)", "ssh or ssh-keygen not found");
    }
    let dir = scratch_root().path().join("sshd");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let root = dir.join("files");
    std::fs::create_dir_all(&root).expect("mkdir");
    for k in ["host_key", "client_key"] {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(k))
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success(), "ssh-keygen: {out:?}");
    }
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).expect("copy");
    // Privilege separation needs this folder when sshd runs as root.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nStrictModes no\n\
         PermitRootLogin prohibit-password\nMaxSessions 64\nMaxStartups 64\n\
         Subsystem sftp internal-sftp -u 0077\n",
        d = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config).expect("config");
    spawn_watched(
        sshd,
        &[
            "-D".into(),
            "-e".into(),
            "-f".into(),
            dir.join("sshd_config").display().to_string(),
        ],
        &[],
        &dir.join("sshd.log"),
        None,
    );
    wait_for_port(port, "sshd");
    let user = sh("id -un").unwrap_or_else(|| "root".into());
    Some(SshServer {
        port,
        key: dir.join("client_key"),
        root,
        user,
    })
}

/// The shared sshd, started on first use.
pub fn ssh() -> Option<&'static SshServer> {
    static SSH: OnceLock<Option<SshServer>> = OnceLock::new();
    SSH.get_or_init(start_sshd).as_ref()
}

impl SshServer {
    /// A fresh folder's path on the server (not created) and its `sftp://` URL.
    pub fn folder(&self) -> (PathBuf, String) {
        let p = self.root.join(unique("t"));
        let url = format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            p.display()
        );
        (p, url)
    }

    /// The `-o` options a test passes: the client key, and accept the fresh host key.
    pub fn options(&self) -> Vec<String> {
        vec![
            format!("sftp.key={}", self.key.display()),
            "sftp.known-hosts=accept".into(),
        ]
    }
}

/// A running PostgreSQL server: superuser `postgres`, trust authentication, TCP on 127.0.0.1
/// only (no Unix socket), `fsync` off (a test server's durability is not under test).
pub struct PgServer {
    pub port: u16,
    /// The folder of `initdb`, `pg_dump`, `psql`, ... of the server's version.
    pub bin: PathBuf,
}

/// The newest Debian-installed PostgreSQL's `bin` folder, or `CISTA_PG_BIN`.
fn pg_bin() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CISTA_PG_BIN") {
        return Some(d.into());
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// `program` as a command line run as the `postgres` user when this process is root
/// (`setpriv` execs it, so the pid the watchdog holds is the server's own).
fn as_postgres(program: &Path, args: &[String]) -> (PathBuf, Vec<String>) {
    if !crate::harness::is_root() {
        return (program.to_path_buf(), args.to_vec());
    }
    let mut all: Vec<String> = [
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ]
    .map(String::from)
    .to_vec();
    all.push(program.display().to_string());
    all.extend_from_slice(args);
    (PathBuf::from("setpriv"), all)
}

fn start_postgres() -> Option<PgServer> {
    let Some(bin) = pg_bin() else {
        return unavailable("PostgreSQL", "no /usr/lib/postgresql/*/bin/initdb");
    };
    let owner = if crate::harness::is_root() {
        let Some(ids) = sh("id -u postgres && id -g postgres") else {
            return unavailable(
                "PostgreSQL",
                "running as root and there is no postgres user",
            );
        };
        let ids: Vec<u32> = ids.lines().filter_map(|l| l.trim().parse().ok()).collect();
        let [uid, gid] = ids[..] else {
            return unavailable("PostgreSQL", "the postgres user's ids are unreadable");
        };
        Some((uid, gid))
    } else {
        None
    };
    // Outside the scratch root, which only its owner can enter; removed by the watchdog.
    let data = tempfile::Builder::new()
        .prefix("cista-pg-")
        .tempdir_in(std::env::temp_dir())
        .expect("tempdir")
        .keep();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown");
    }
    let (prog, args) = as_postgres(
        &bin.join("initdb"),
        &[
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            "postgres".into(),
            "-A".into(),
            "trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--no-locale".into(),
            "--no-sync".into(),
        ],
    );
    let out = Command::new(&prog).args(&args).output().expect("initdb");
    assert!(out.status.success(), "initdb: {out:?}");
    let port = free_port();
    let (prog, args) = as_postgres(
        &bin.join("postgres"),
        &[
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "unix_socket_directories=".into(),
            "-c".into(),
            "fsync=off".into(),
            "-c".into(),
            "full_page_writes=off".into(),
        ],
    );
    let log = scratch_root().path().join(format!("postgres-{port}.log"));
    spawn_watched(&prog, &args, &[], &log, Some(&data));
    wait_for_port(port, "postgres");
    let server = PgServer { port, bin };
    // Listening comes before accepting: wait until a query answers.
    let start = Instant::now();
    while !server.psql_status("postgres", "select 1").success() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "postgres did not answer on 127.0.0.1:{port}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(server)
}

/// The shared PostgreSQL server, started on first use.
pub fn postgres() -> Option<&'static PgServer> {
    static PG: OnceLock<Option<PgServer>> = OnceLock::new();
    PG.get_or_init(start_postgres).as_ref()
}

impl PgServer {
    /// The libpq variables that point a client (pg_dump, psql, cista) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", "postgres".into()),
        ]
    }

    /// A command for one of the server's client tools, pointed at the server.
    pub fn tool(&self, name: &str) -> Command {
        let mut c = crate::harness::hermetic(self.bin.join(name));
        c.envs(self.env());
        c
    }

    fn psql_status(&self, db: &str, sql: &str) -> std::process::ExitStatus {
        self.tool("psql")
            .args(["-X", "-q", "-d", db, "-c", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("psql")
    }

    /// Runs `sql` in database `db` (stopping at the first error) and returns what it prints,
    /// unaligned and without headers.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .tool("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// A new empty database with a name no other test uses.
    pub fn create_database(&self, prefix: &str) -> String {
        let name = unique(prefix).replace('-', "_");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }
}

/// Opens `url` through the library's factory with `options` and `env`.
pub fn open(url: &str, options: &[String], env: &[(&str, String)]) -> std::sync::Arc<dyn Backend> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let opts = BackendOptions::parse(options, env).expect("options");
    let loc = Location::parse(url).expect("location");
    cista::backend::open(&loc, &opts).unwrap_or_else(|e| panic!("opening {url}: {e}"))
}
