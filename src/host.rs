//! Who and when: the machine, user and process a repository operation runs as, and the clocks
//! it reads. Passed down to [`crate::repo`] (lock files, key files) and [`crate::ops`] so that
//! neither reaches for the system itself, which lets tests pose as another host or another
//! time, and keeps `repo/` from importing `ops/`.
//!
//! Two clocks: the wall clock (lock times, which other hosts compare with theirs, so skew
//! matters: docs/FORMAT.md §17) and a monotonic clock (how long ago this process last
//! refreshed its own lock, which must not jump when the wall clock is set, and must count
//! time the machine spent suspended: a laptop that slept for an hour holds a lock others
//! have judged stale, so Linux's `CLOCK_BOOTTIME`, not `Instant`'s `CLOCK_MONOTONIC`).

use std::sync::Arc;
use std::time::Instant;

/// The clocks an operation reads.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    fn now_unix_ns(&self) -> i64;
    /// A monotonic reading in nanoseconds; only differences between readings mean anything.
    fn monotonic_ns(&self) -> u64;
}

/// The system's clocks.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_unix_ns(&self) -> i64 {
        now_unix_ns()
    }

    fn monotonic_ns(&self) -> u64 {
        use nix::time::{ClockId, clock_gettime};
        match clock_gettime(ClockId::CLOCK_BOOTTIME) {
            Ok(t) => u64::try_from(t.tv_sec())
                .unwrap_or(0)
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0)),
            // Not Linux, or an old kernel: the process's own monotonic clock.
            Err(_) => u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

/// A clock at a fixed offset from the system's: a process posing as one whose wall clock is
/// off (tests of lock staleness and clock skew). The monotonic reading is the system's.
#[derive(Debug)]
pub struct OffsetClock {
    /// Added to the system's wall clock, in nanoseconds (negative: in the past).
    pub offset_ns: i64,
    base: SystemClock,
}

impl OffsetClock {
    /// The system clock shifted by `offset_ns`.
    pub fn new(offset_ns: i64) -> Self {
        Self {
            offset_ns,
            base: SystemClock::default(),
        }
    }
}

impl Clock for OffsetClock {
    fn now_unix_ns(&self) -> i64 {
        self.base.now_unix_ns().saturating_add(self.offset_ns)
    }

    fn monotonic_ns(&self) -> u64 {
        self.base.monotonic_ns()
    }
}

/// The machine, user and process an operation runs as, and its clock.
#[derive(Debug, Clone)]
pub struct Host {
    /// Host name written into locks and key files, and compared with a lock's to decide
    /// whether its pid can be checked here.
    pub hostname: String,
    /// User name written into locks and key files.
    pub username: String,
    /// This process's id.
    pub pid: u32,
    /// The clocks.
    pub clock: Arc<dyn Clock>,
}

impl Host {
    /// This machine, user and process, with the system clock.
    pub fn this_process() -> Self {
        Self {
            hostname: hostname(),
            username: username(),
            pid: std::process::id(),
            clock: Arc::new(SystemClock::default()),
        }
    }

    /// Wall-clock time now.
    pub fn now_unix_ns(&self) -> i64 {
        self.clock.now_unix_ns()
    }

    /// Whether a process `pid` on `hostname` is known to be gone: only answerable for this
    /// host (another host's pids cannot be checked), and never for this process itself.
    pub fn process_is_gone(&self, hostname: &str, pid: u32) -> bool {
        let Ok(p) = i32::try_from(pid) else {
            return false;
        };
        hostname == self.hostname
            && p > 0
            && pid != self.pid
            && pid != std::process::id()
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                == Err(nix::errno::Errno::ESRCH)
    }
}

/// Nanoseconds since the Unix epoch, now (system clock).
pub fn now_unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// This machine's host name ("unknown" if it cannot be read).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The current user's name (falls back to the uid).
pub fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_local_process_is_gone_and_other_hosts_are_never_judged() {
        let h = Host::this_process();
        assert!(!h.process_is_gone(&h.hostname, h.pid));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(h.process_is_gone(&h.hostname, dead));
        assert!(!h.process_is_gone("elsewhere.example", dead));
        assert!(!h.process_is_gone(&h.hostname, 0));
        assert!(!h.process_is_gone(&h.hostname, u32::MAX));
    }

    #[test]
    fn offset_clock_shifts_the_wall_clock_only() {
        let c = OffsetClock::new(-3_600_000_000_000);
        let sys = now_unix_ns();
        assert!(c.now_unix_ns() <= sys - 3_600_000_000_000 + 60_000_000_000);
        let a = c.monotonic_ns();
        assert!(c.monotonic_ns() >= a);
    }
}
