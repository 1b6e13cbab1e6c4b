//! The command-line interface: the only code that prints, reads environment variables or
//! decides exit codes. Each command is parse -> call the library -> print.

mod backup;
mod browse;
mod keys;
mod output;
mod progress;
mod repo_cmds;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, anyhow, bail};
use cista::backend::opendal::OpendalBackend;
use cista::format::key::KdfParams;
use cista::ops::CancelFlag;
use cista::repo::Repository;
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

/// Exit codes (docs/CLI.md).
pub mod code {
    /// Success.
    pub const OK: u8 = 0;
    /// Any error not listed below.
    pub const ERROR: u8 = 1;
    /// Snapshot written, but some source files could not be read.
    pub const INCOMPLETE: u8 = 3;
    /// The repository does not exist.
    pub const NO_REPO: u8 = 10;
    /// The repository is locked.
    pub const LOCKED: u8 = 11;
    /// Wrong password.
    pub const WRONG_PASSWORD: u8 = 12;
    /// Interrupted by SIGINT/SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

/// cista: encrypted, deduplicating backups of application data.
#[derive(Debug, Parser)]
#[command(name = "cista", version, about, propagate_version = true)]
pub struct Cli {
    /// Repository location (a local folder).
    #[arg(short = 'r', long = "repo", env = "CISTA_REPOSITORY", global = true)]
    repo: Option<String>,
    /// Read the passphrase from this file (first line).
    #[arg(
        long,
        env = "CISTA_PASSWORD_FILE",
        global = true,
        hide_env_values = true
    )]
    password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the passphrase.
    #[arg(
        long,
        env = "CISTA_PASSWORD_COMMAND",
        global = true,
        hide_env_values = true
    )]
    password_command: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// No progress or informational output.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository.
    Init(repo_cmds::InitArgs),
    /// Back up files, standard input, or a command's output.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(browse::SnapshotsArgs),
    /// List the files in a snapshot.
    Ls(browse::LsArgs),
    /// Write one file of a snapshot to standard output.
    Dump(browse::DumpArgs),
    /// Restore a snapshot, a folder or a file.
    Restore(browse::RestoreArgs),
    /// Verify the repository's structure and, with --read-data, all data.
    Check(repo_cmds::CheckArgs),
    /// Manage the passphrases that open the repository.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// Remove stale locks (or all locks with --remove-all).
    Unlock(repo_cmds::UnlockArgs),
}

/// Global state a command needs.
pub struct Env {
    repo_location: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    json: bool,
    quiet: bool,
    cancel: CancelFlag,
}

impl Env {
    fn backend(&self) -> Result<Arc<OpendalBackend>> {
        let loc = self
            .repo_location
            .as_deref()
            .ok_or_else(|| anyhow!("no repository given: use -r/--repo or set CISTA_REPOSITORY"))?;
        let path = loc.strip_prefix("local:").unwrap_or(loc);
        Ok(Arc::new(OpendalBackend::local(path)?))
    }

    /// Opens the repository, reading the passphrase from the configured source.
    fn open(&self) -> Result<Repository> {
        let backend = self.backend()?;
        // Say "no repository" before asking for a passphrase.
        if let Err(e) = cista::backend::Backend::size(
            &*backend,
            cista::backend::FileType::Config,
            &Default::default(),
        ) && e.kind == cista::backend::ErrorKind::NotFound
        {
            return Err(cista::Error::RepoNotFound {
                location: cista::backend::Backend::location(&*backend),
            }
            .into());
        }
        let pw = self.passphrase("enter password for repository: ", false)?;
        Ok(Repository::open(backend, pw.as_bytes())?)
    }

    /// The passphrase from the password file, command, `CISTA_PASSWORD`, or a prompt.
    fn passphrase(&self, prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
        if let Some(f) = &self.password_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading password file {}", f.display()))?,
            );
            return Ok(Zeroizing::new(
                text.lines().next().unwrap_or_default().to_owned(),
            ));
        }
        if let Some(cmd) = &self.password_command {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stderr(std::process::Stdio::inherit())
                .output()
                .context("running the password command")?;
            let text = Zeroizing::new(
                String::from_utf8(out.stdout)
                    .map_err(|_| anyhow!("password command printed non-UTF-8"))?,
            );
            if !out.status.success() {
                bail!("password command failed ({})", out.status);
            }
            return Ok(Zeroizing::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            ));
        }
        if let Ok(pw) = std::env::var("CISTA_PASSWORD") {
            return Ok(Zeroizing::new(pw));
        }
        self.prompt(prompt, confirm)
    }

    fn prompt(&self, prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
        let read = |p: &str| -> Result<Zeroizing<String>> {
            rpassword::prompt_password(p).map(Zeroizing::new).map_err(|_| {
                anyhow!("no password given: set CISTA_PASSWORD_FILE, CISTA_PASSWORD_COMMAND or CISTA_PASSWORD, or run on a terminal")
            })
        };
        let pw = read(prompt)?;
        if confirm {
            let again = read("enter the password again: ")?;
            if *pw != *again {
                bail!("the passwords do not match; nothing was changed");
            }
        }
        if pw.is_empty() {
            bail!("an empty password is not allowed");
        }
        Ok(pw)
    }

    /// Prints a line unless quiet or JSON output was asked for.
    fn info(&self, msg: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            println!("{msg}");
        }
    }
}

/// Parses `M,T,P` (KiB, passes, lanes) for `--kdf-params`.
fn parse_kdf(s: &str) -> Result<KdfParams, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let [m_kib, t, p] = v[..] else {
        return Err("expected MEMORY_KIB,ITERATIONS,PARALLELISM".into());
    };
    let k = KdfParams { m_kib, t, p };
    k.validate().map_err(|e| e.to_string())?;
    Ok(k)
}

/// Runs a parsed command; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8> {
    // Passphrases and master keys must never land in a core dump (best effort).
    cista::repo::keys::protect_process_memory();
    let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
    let env = Env {
        repo_location: cli.repo,
        password_file: cli.password_file,
        password_command: cli.password_command,
        json: cli.json,
        quiet: cli.quiet,
        cancel,
    };
    match cli.command {
        Command::Init(a) => repo_cmds::init(&env, a),
        Command::Backup(a) => backup::run(&env, a),
        Command::Snapshots(a) => browse::snapshots(&env, a),
        Command::Ls(a) => browse::ls(&env, a),
        Command::Dump(a) => browse::dump(&env, a),
        Command::Restore(a) => browse::restore(&env, a),
        Command::Check(a) => repo_cmds::check(&env, a),
        Command::Key(k) => keys::run(&env, k),
        Command::Unlock(a) => repo_cmds::unlock(&env, a),
    }
}

/// The documented exit code for an error.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<cista::Error>() {
        Some(cista::Error::RepoNotFound { .. }) => code::NO_REPO,
        Some(cista::Error::Locked { .. }) => code::LOCKED,
        Some(cista::Error::WrongPassword | cista::Error::WrongPasswordOrDamagedKeys { .. }) => {
            code::WRONG_PASSWORD
        }
        Some(cista::Error::Interrupted) => code::INTERRUPTED,
        _ => code::ERROR,
    }
}
