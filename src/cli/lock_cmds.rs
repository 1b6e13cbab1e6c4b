//! Lock plumbing of the command line: restic's Go-style `--retry-lock` durations, the notice
//! printed while waiting for a lock, and the hidden `debug hold-lock` test hook (docs/DESIGN.md,
//! "Test hooks"): hold a lock of a chosen mode, optionally posing as another host or clock, so
//! tests can put a real concurrent holder beside the command under test.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use cista::format::lock::LockMode;
use cista::host::{Host, OffsetClock};
use cista::ops::Progress;
use cista::ops::session::Session;
use clap::{Args, Subcommand, ValueEnum};

use super::{Env, code, output};

/// Parses a duration as Go's `time.ParseDuration` does (restic's `--retry-lock` takes one):
/// a sequence of decimal numbers with units `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`
/// (`1h30m`, `2.5s`), or a bare `0`. Negative durations are refused.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use a number and a unit, like 30s, 5m or 1h30m");
    let body = s.strip_prefix('+').unwrap_or(s);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() || body.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Prints a lock wait (and any other library warning) on stderr, unless quiet.
pub struct Notice {
    pub quiet: bool,
}

impl Progress for Notice {
    fn warn(&self, message: &str) {
        if !self.quiet {
            output::warn(message);
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Hold a lock for a while, then release it (a test hook).
    HoldLock(HoldLockArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Shared,
    Exclusive,
    Maintenance,
}

#[derive(Debug, Args)]
pub struct HoldLockArgs {
    /// Lock mode.
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// Release the lock after this many seconds (SIGINT/SIGTERM release it sooner).
    #[arg(long, default_value_t = 3600)]
    seconds: u64,
    /// Write the lock as this host name, as if taken on another machine.
    #[arg(long)]
    as_host: Option<String>,
    /// Shift the lock's wall clock by this many seconds (negative: in the past).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_seconds: i64,
}

pub fn debug(env: &Env, cmd: DebugCommand) -> Result<u8> {
    let DebugCommand::HoldLock(a) = cmd;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, env.cancel.clone())?;
    }
    let mode = match a.mode {
        ModeArg::Shared => LockMode::Shared,
        ModeArg::Exclusive => LockMode::Exclusive,
        ModeArg::Maintenance => LockMode::Maintenance,
    };
    let mut host = Host::this_process();
    if let Some(h) = a.as_host {
        host.hostname = h;
    }
    host.clock = Arc::new(OffsetClock::new(
        a.clock_offset_seconds.saturating_mul(1_000_000_000),
    ));
    let repo = env.open()?;
    let notice = Notice { quiet: env.quiet };
    let session = Session::open(&repo, mode, &env.lock, &host, &notice, Some(&env.cancel))?;
    let session_hex = session
        .guard()
        .and_then(|g| g.session())
        .map(|s| hex::encode(s.id))
        .unwrap_or_default();
    let mut out = std::io::stdout();
    writeln!(out, "holding {} lock {session_hex}", mode.name())?;
    out.flush()?;
    let end = Instant::now() + Duration::from_secs(a.seconds);
    while Instant::now() < end && !env.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    session.ensure_fresh()?;
    drop(session);
    Ok(code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s).unwrap();
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("5m"), Duration::from_secs(300));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("2.5s"), Duration::from_millis(2500));
        assert_eq!(d("1m0.5s"), Duration::from_millis(60_500));
        assert_eq!(d("100ms"), Duration::from_millis(100));
        assert_eq!(d("+2h"), Duration::from_secs(7200));
        assert_eq!(d("3µs"), Duration::from_micros(3));
        for bad in ["", "5", "m", "-5m", "5 m", "5d", "1.2.3s", "s5", "."] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
