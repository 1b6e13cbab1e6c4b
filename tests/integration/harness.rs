//! Running the `cista` binary hermetically: a fresh repository per test, no inherited `CISTA_*`
//! variables, cheap KDF parameters, and helpers to read exit codes, stdout and JSON.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cista");
/// Passphrase of every test repository.
pub const PASSWORD: &str = "correct horse battery staple";
/// Argon2id costs low enough to make opening a repository instant.
pub const CHEAP_KDF: &str = "1024,1,1";
/// Small chunks (min, avg, max), so small files exercise multi-chunk paths.
pub const SMALL_CHUNKS: [usize; 3] = [1024, 4096, 16384];

/// A `cista` command with no `CISTA_*` variable inherited from the caller.
pub fn cista() -> Command {
    hermetic(BIN)
}

/// A command for `program` with no `CISTA_*` variable inherited and no standard input.
pub fn hermetic(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CISTA_") {
            c.env_remove(k);
        }
    }
    // No config file of the machine's (~/.config/cista, /etc/cista) reaches a test.
    c.env("CISTA_CONFIG", "");
    c.stdin(Stdio::null());
    c
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn from_output(o: Output) -> Self {
        let r = Self {
            code: o.status.code(),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        assert!(
            !r.stderr.contains("panicked"),
            "cista panicked:\n{}",
            r.stderr
        );
        r
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts the exit code, showing the output on failure.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout_str(),
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        self.expect_code(0)
    }

    /// The whole stdout as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout_str()))
    }

    /// Every stdout line as JSON.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l}"))
            })
            .collect()
    }
}

/// Runs a prepared command to completion, feeding `stdin` if given.
pub fn run_cmd(mut cmd: Command, stdin: Option<&[u8]>) -> Run {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning cista");
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let data = data.to_vec();
        std::thread::spawn(move || {
            // The child may stop reading early (an error); that is for the caller to assert.
            let _ = pipe.write_all(&data);
        })
    });
    let out = child.wait_with_output().expect("waiting for cista");
    if let Some(w) = writer {
        w.join().expect("stdin writer");
    }
    Run::from_output(out)
}

/// A repository in its own temporary folder, plus scratch space for the test.
#[derive(Debug)]
pub struct Repo {
    /// Holds the repository (`repo/`) and whatever the test puts next to it.
    pub dir: TempDir,
    pub path: PathBuf,
    pub password: String,
}

impl Repo {
    /// A repository with small chunks and 1 MiB packs.
    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    /// Like [`Repo::new`], in a temporary folder below `parent`.
    pub fn new_in(parent: &Path) -> Self {
        let c = SMALL_CHUNKS.map(|n| n.to_string()).join(",");
        Self::create(parent, &["--chunk-sizes", &c, "--pack-size-mib", "1"])
    }

    /// A repository created with extra `init` arguments (the KDF is always cheap).
    pub fn with_init_args(args: &[&str]) -> Self {
        Self::create(&std::env::temp_dir(), args)
    }

    fn create(parent: &Path, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cista-it-")
            .tempdir_in(parent)
            .expect("tempdir");
        let path = dir.path().join("repo");
        let repo = Self {
            dir,
            path,
            password: PASSWORD.into(),
        };
        let mut full = vec!["init", "--kdf-params", CHEAP_KDF];
        full.extend_from_slice(args);
        repo.run(&full).ok();
        assert!(repo.path.join("config").is_file());
        repo
    }

    /// A path next to the repository (not created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command against this repository with its passphrase in `CISTA_PASSWORD`.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = cista();
        c.env("CISTA_REPOSITORY", &self.path)
            .env("CISTA_PASSWORD", &self.password)
            .args(args);
        c
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        run_cmd(self.cmd(args), None)
    }

    pub fn run_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Run {
        run_cmd(self.cmd(args), Some(stdin))
    }

    /// `backup --json PATHS...` that must succeed; returns the summary line.
    #[track_caller]
    pub fn backup(&self, paths: &[&Path]) -> Value {
        let mut args: Vec<&OsStr> = vec!["backup".as_ref(), "--json".as_ref()];
        args.extend(paths.iter().map(|p| p.as_os_str()));
        let r = self.run(&args).ok();
        summary_of(&r)
    }

    /// `restore latest --target TARGET`, which must succeed.
    #[track_caller]
    pub fn restore_latest(&self, target: &Path) -> Run {
        self.run(&[
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .ok()
    }

    /// `snapshots --json` (with extra filter arguments), oldest first.
    #[track_caller]
    pub fn snapshots(&self, filter: &[&str]) -> Vec<Value> {
        let mut args = vec!["snapshots", "--json"];
        args.extend_from_slice(filter);
        match self.run(&args).ok().json() {
            Value::Array(v) => v,
            other => panic!("snapshots --json printed {other}"),
        }
    }

    /// Files directly below a repository folder, recursively (e.g. `data`).
    pub fn files_in(&self, folder: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.path.join(folder)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Opens the repository through the library.
    pub fn open(&self) -> cista::repo::Repository {
        let backend = cista::backend::local::LocalBackend::open(&self.path).expect("backend");
        cista::repo::Repository::open(Arc::new(backend), self.password.as_bytes()).expect("open")
    }
}

/// Every regular file below `dir`: its path relative to `dir` and its bytes, sorted by path.
pub fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The last stdout line of a `backup --json` run, which must be its summary.
#[track_caller]
pub fn summary_of(r: &Run) -> Value {
    let lines = r.json_lines();
    let last = lines.last().cloned().expect("backup printed nothing");
    assert_eq!(last["message_type"], "summary", "{last}");
    last
}

/// Reads a JSON number that must be an unsigned integer.
#[track_caller]
pub fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not an unsigned number in {v}"))
}

/// Deterministic pseudo-random bytes (SplitMix64), so failures reproduce.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Whether this process is root (some tests need to drop privileges, some need root).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
