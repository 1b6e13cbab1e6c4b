//! Repository locks (docs/FORMAT.md §17): taking one of the three modes against the live
//! locks of others, refreshing it from a background thread so long operations are not
//! mistaken for dead ones, and telling the holder when its lock can no longer be trusted
//! ([`LockGuard::ensure_fresh`]) so it commits nothing on a lock others may have ignored.
//!
//! Which mode each operation takes, retries and `--no-lock` are [`crate::ops::session`]'s;
//! this module knows only locks. The machine, user and clocks come from the caller's
//! [`Host`], never from the system directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::{ErrorKind, FileType};
use crate::error::{Error, Result};
use crate::format::ObjectKind;
use crate::format::lock::{Lock, LockMode, LockSession, MAX_LOCK_LEN};
use crate::host::Host;
use crate::id::{Id, LockId};
use crate::repo::Repository;

/// A lock not refreshed for this long (by the reader's wall clock) is stale and ignored.
pub const STALE_AFTER_NS: i64 = 30 * 60 * 1_000_000_000;
/// How often a held lock is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// How soon a failed refresh is tried again.
pub const REFRESH_RETRY: Duration = Duration::from_secs(60);
/// A holder whose last successful refresh is older than this (by its monotonic clock) must not
/// commit: 10 minutes short of [`STALE_AFTER_NS`], the clock skew between hosts that FORMAT
/// §17 tolerates.
pub const FRESH_FOR_NS: u64 = 20 * 60 * 1_000_000_000;

/// A lock found in the repository, with the name it is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLock {
    /// Its object name (`locks/<id>`).
    pub id: LockId,
    /// Its contents.
    pub lock: Lock,
}

/// What the refresher and [`LockGuard::ensure_fresh`] share.
#[derive(Debug)]
struct Held {
    /// The lock object now standing for this session.
    current: Id,
    /// Monotonic time of the last successful write of our lock.
    refreshed_mono_ns: u64,
    /// Why the lock can no longer be trusted, once known.
    lost: Option<String>,
}

/// A held lock; released (deleted) on drop.
#[derive(Debug)]
pub struct LockGuard {
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
    held: Arc<Mutex<Held>>,
    repo: Repository,
    host: Host,
    mode: LockMode,
    session: Option<LockSession>,
}

/// A lock is stale when not refreshed for [`STALE_AFTER_NS`] by `host`'s clock, or when it
/// was taken on `host`'s machine by a process that no longer exists (a killed backup), as
/// restic decides.
pub fn is_stale(l: &Lock, host: &Host) -> bool {
    host.now_unix_ns().saturating_sub(l.time_unix_ns) >= STALE_AFTER_NS
        || host.process_is_gone(&l.hostname, l.pid)
}

/// "shared lock of pid 4242 of postgres@db1, held for 3m12s, refreshed 12s ago": the holder
/// as a message names it.
pub fn describe(l: &Lock, now_unix_ns: i64) -> String {
    let held = match l.session {
        Some(s) => format!(
            ", held for {}",
            human_age(now_unix_ns.saturating_sub(s.started_unix_ns))
        ),
        None => String::new(),
    };
    format!(
        "{} lock of pid {} of {}@{}{held}, refreshed {} ago",
        l.mode.name(),
        l.pid,
        l.username,
        l.hostname,
        human_age(now_unix_ns.saturating_sub(l.time_unix_ns))
    )
}

/// `1h2m3s`-style age of a nanosecond span (negative: a clock ahead of ours, shown as 0s).
fn human_age(ns: i64) -> String {
    let s = (ns.max(0) / 1_000_000_000) as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

impl Repository {
    fn write_lock(&self, lock: &Lock) -> Result<Id> {
        let bytes = self.seal_object(ObjectKind::Lock, &lock.encode()?)?;
        let id = Id::of_stored(&bytes);
        self.backend().write(FileType::Lock, &id, bytes)?;
        Ok(id)
    }

    /// Every lock in the repository that is not stale by `host`'s judgement. A lock that
    /// vanished, cannot be read or is over its cap blocks no one and is left out; the cap is
    /// checked on the listed size, before reading.
    pub fn live_locks(&self, host: &Host) -> Result<Vec<StoredLock>> {
        self.live_locks_except(host, None)
    }

    /// [`Repository::live_locks`] without the lock named `skip` (not even read).
    fn live_locks_except(&self, host: &Host, skip: Option<&Id>) -> Result<Vec<StoredLock>> {
        let mut out = Vec::new();
        for (id, len) in self.backend().list(FileType::Lock)? {
            if Some(&id) == skip {
                continue;
            }
            let Ok(bytes) = self.read_metadata_object(FileType::Lock, &id, Some(len), MAX_LOCK_LEN)
            else {
                continue;
            };
            let Ok(plain) = self.open_object(ObjectKind::Lock, &id, &bytes) else {
                continue;
            };
            let Ok(lock) = Lock::decode(&plain) else {
                continue;
            };
            if !is_stale(&lock, host) {
                out.push(StoredLock {
                    id: LockId(id),
                    lock,
                });
            }
        }
        Ok(out)
    }

    /// Takes a lock of `mode` as `host`, once, failing with [`Error::Locked`] naming the
    /// holder if a live lock that conflicts with it exists (before or just after ours is
    /// written). Maintenance locks, and every lock in a repository of format 3 or later, are
    /// written in the version-3 layout with a fresh session; the others in the version-2
    /// layout that older cista versions read.
    pub fn lock(&self, mode: LockMode, host: &Host) -> Result<LockGuard> {
        self.lock_listing_ahead(mode, host, &[])
    }

    /// [`Repository::lock`], hinting storage to list each of `ahead` ([`Backend::list_ahead`])
    /// as soon as the lock is written, so those listings overlap the check after it. A listing
    /// begun once the lock is visible is as good for the session as one made later: what
    /// deletes either conflicts with the lock (the check after the write finds it, and this
    /// fails) or honours every session whose lock it sees (prune's retired packs wait for
    /// them, FORMAT §18), and this one is seen from the moment its lock is written.
    pub fn lock_listing_ahead(
        &self,
        mode: LockMode,
        host: &Host,
        ahead: &[FileType],
    ) -> Result<LockGuard> {
        let conflict = |locks: &[StoredLock]| {
            locks
                .iter()
                .find(|s| mode.conflicts_with(s.lock.mode))
                .map(|s| Error::Locked {
                    how: s.lock.mode.name(),
                    holder: describe(&s.lock, host.now_unix_ns()),
                })
        };
        if let Some(e) = conflict(&self.live_locks(host)?) {
            return Err(e);
        }
        let session = if mode == LockMode::Maintenance || self.config().format_version >= 3 {
            let mut id = [0u8; 16];
            crate::crypto::random_bytes(&mut id)?;
            Some(LockSession {
                id,
                started_unix_ns: host.now_unix_ns(),
            })
        } else {
            None
        };
        let lock_now = || Lock {
            time_unix_ns: host.now_unix_ns(),
            mode,
            hostname: host.hostname.clone(),
            username: host.username.clone(),
            pid: host.pid,
            session,
        };
        let id = self.write_lock(&lock_now())?;
        let written_mono = host.clock.monotonic_ns();
        for t in ahead {
            self.backend().list_ahead(*t);
        }
        // Two processes may have checked at the same moment; look again now ours is visible.
        if let Some(e) = conflict(&self.live_locks_except(host, Some(&id))?) {
            let _ = self.backend().delete(FileType::Lock, &id);
            return Err(e);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Held {
            current: id,
            refreshed_mono_ns: written_mono,
            lost: None,
        }));
        let refresher = {
            let (stop, held, repo, host) = (stop.clone(), held.clone(), self.clone(), host.clone());
            std::thread::Builder::new()
                .name("cista-lock".into())
                .spawn(move || {
                    let mut wait = REFRESH_EVERY;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(wait);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let lock = Lock {
                            time_unix_ns: host.now_unix_ns(),
                            mode,
                            hostname: host.hostname.clone(),
                            username: host.username.clone(),
                            pid: host.pid,
                            session,
                        };
                        wait = if refresh(&repo, &held, &lock, &host) {
                            REFRESH_EVERY
                        } else {
                            REFRESH_RETRY
                        };
                    }
                })
                .ok()
        };
        Ok(LockGuard {
            stop,
            refresher,
            held,
            repo: self.clone(),
            host: host.clone(),
            mode,
            session,
        })
    }

    /// Removes stale locks (or every lock with `all`), judged by `host`; returns how many were
    /// removed. A lock that cannot be read or is over its cap is not a lock anyone can hold,
    /// so it counts as stale.
    pub fn unlock(&self, all: bool, host: &Host) -> Result<usize> {
        let mut removed = 0;
        for (id, len) in self.backend().list(FileType::Lock)? {
            let stale =
                match self.read_metadata_object(FileType::Lock, &id, Some(len), MAX_LOCK_LEN) {
                    Ok(bytes) => match self
                        .open_object(ObjectKind::Lock, &id, &bytes)
                        .and_then(|p| Ok(Lock::decode(&p)?))
                    {
                        Ok(l) => is_stale(&l, host),
                        // Written by a newer cista: not ours to judge.
                        Err(Error::Format(crate::format::FormatError::NewerVersion { .. })) => {
                            false
                        }
                        Err(_) => true,
                    },
                    Err(Error::Corrupt { .. }) => true,
                    Err(_) => continue,
                };
            if (all || stale) && self.backend().delete(FileType::Lock, &id).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// One refresh: write the lock anew, make it current, delete the old one. Returns whether the
/// new lock was written. An old lock already gone means someone removed it while we held it
/// (`unlock --remove-all`, or a process that judged it stale): others may have acted as if
/// we were not there, so the guard is marked lost for good.
fn refresh(repo: &Repository, held: &Mutex<Held>, lock: &Lock, host: &Host) -> bool {
    let Ok(new) = repo.write_lock(lock) else {
        return false;
    };
    let written_mono = host.clock.monotonic_ns();
    let Ok(mut h) = held.lock() else {
        let _ = repo.backend().delete(FileType::Lock, &new);
        return false;
    };
    let old = std::mem::replace(&mut h.current, new);
    h.refreshed_mono_ns = written_mono;
    match repo.backend().delete(FileType::Lock, &old) {
        Err(e) if e.kind == ErrorKind::NotFound && h.lost.is_none() => {
            h.lost = Some(format!(
                "its lock file locks/{} was removed while it was held (by `cista unlock --remove-all`, or by a process that judged it stale)",
                old.to_hex()
            ));
        }
        _ => {}
    }
    true
}

impl LockGuard {
    /// The host (clock and name) this lock is held as.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The mode held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// This holder's session (`None` for a version-2 lock in a repository of format 1 or 2).
    pub fn session(&self) -> Option<LockSession> {
        self.session
    }

    /// The live locks of everyone else: every live lock but the one now standing for this
    /// guard (and, while a refresh swaps them, its predecessor of the same session).
    ///
    /// Listed twice: a holder refreshing its lock writes the new object before deleting the
    /// old one, so a listing that named only the old one (gone by the time it was read) is
    /// followed by one that names the new; a holder is never missed mid-refresh.
    pub fn other_live_locks(&self) -> Result<Vec<StoredLock>> {
        let h = self.held.lock().map_err(|_| Error::LockLost {
            reason: "its refresher failed".into(),
        })?;
        let mut out: Vec<StoredLock> = Vec::new();
        for _ in 0..2 {
            for s in self.repo.live_locks_except(&self.host, Some(&h.current))? {
                let ours = self.session.is_some() && s.lock.session == self.session;
                if !ours && !out.iter().any(|o| o.id == s.id) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Whether this lock can still be trusted: refreshed successfully less than
    /// [`FRESH_FOR_NS`] ago by the monotonic clock (so no other host can yet have judged it
    /// stale), never removed by someone else, and its object still listed. A holder MUST call
    /// this right before it commits (a backup before writing its snapshot, prune before
    /// deleting anything) and commit nothing if it fails.
    pub fn ensure_fresh(&self) -> Result<()> {
        let h = self.held.lock().map_err(|_| Error::LockLost {
            reason: "its refresher failed".into(),
        })?;
        if let Some(why) = &h.lost {
            return Err(Error::LockLost {
                reason: why.clone(),
            });
        }
        let age = self
            .host
            .clock
            .monotonic_ns()
            .saturating_sub(h.refreshed_mono_ns);
        if age > FRESH_FOR_NS {
            return Err(Error::LockLost {
                reason: format!(
                    "it was last refreshed {} ago, longer than the {} minutes after which another host may judge it stale (storage unreachable, or the machine suspended)",
                    human_age(i64::try_from(age).unwrap_or(i64::MAX)),
                    FRESH_FOR_NS / 60_000_000_000
                ),
            });
        }
        let listed = self.repo.backend().list(FileType::Lock)?;
        if !listed.iter().any(|(id, _)| *id == h.current) {
            return Err(Error::LockLost {
                reason: format!(
                    "its lock file locks/{} is gone (removed by `cista unlock --remove-all`, or by a process that judged it stale)",
                    h.current.to_hex()
                ),
            });
        }
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        if let Ok(h) = self.held.lock() {
            let _ = self.repo.backend().delete(FileType::Lock, &h.current);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Clock, OffsetClock};
    use crate::repo::tests::repo;
    use std::sync::atomic::AtomicU64;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn lock(pid: u32, host: String, age_ns: i64) -> Lock {
        Lock {
            time_unix_ns: NOW - age_ns,
            mode: LockMode::Exclusive,
            hostname: host,
            username: "u".into(),
            pid,
            session: None,
        }
    }

    /// A clock stopped at [`NOW`] whose monotonic reading the test moves.
    #[derive(Debug, Default)]
    struct TestClock {
        mono: AtomicU64,
    }
    impl Clock for TestClock {
        fn now_unix_ns(&self) -> i64 {
            NOW
        }
        fn monotonic_ns(&self) -> u64 {
            self.mono.load(Ordering::Relaxed)
        }
    }

    fn host_with(clock: Arc<dyn Clock>, name: &str) -> Host {
        Host {
            hostname: name.into(),
            clock,
            ..Host::this_process()
        }
    }

    #[test]
    fn stale_when_old_or_holder_dead_on_this_host() {
        let h = host_with(Arc::new(TestClock::default()), "here");
        let me = std::process::id();
        assert!(!is_stale(&lock(me, "here".into(), 0), &h));
        assert!(is_stale(&lock(me, "here".into(), STALE_AFTER_NS + 1), &h));
        assert!(!is_stale(&lock(me, "here".into(), STALE_AFTER_NS - 1), &h));
        // A finished child's pid: dead on this host, so its lock is stale at once.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(is_stale(&lock(dead, "here".into(), 0), &h));
        // The same pid on another host cannot be checked: live until it ages out.
        assert!(!is_stale(&lock(dead, "elsewhere.example".into(), 0), &h));
    }

    #[test]
    fn modes_exclude_as_specified_and_name_the_holder() {
        let r = repo();
        let me = Host::this_process();
        let m = r.lock(LockMode::Maintenance, &me).unwrap();
        assert!(m.session().is_some());
        // Shared beside maintenance: yes. Maintenance or exclusive beside it: no.
        let s = r.lock(LockMode::Shared, &me).unwrap();
        let e = r.lock(LockMode::Maintenance, &me).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                Error::Locked {
                    how: "maintenance",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains(&format!("pid {}", me.pid)), "{msg}");
        assert!(
            msg.contains(&format!("{}@{}", me.username, me.hostname)),
            "{msg}"
        );
        assert!(msg.contains("held for"), "{msg}");
        assert!(matches!(
            r.lock(LockMode::Exclusive, &me),
            Err(Error::Locked { .. })
        ));
        // The failed attempts left no lock behind: ours two only.
        assert_eq!(r.backend().list(FileType::Lock).unwrap().len(), 2);
        let others = m.other_live_locks().unwrap();
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].lock.mode, LockMode::Shared);
        drop(m);
        drop(s);
        let x = r.lock(LockMode::Exclusive, &me).unwrap();
        assert!(matches!(
            r.lock(LockMode::Shared, &me),
            Err(Error::Locked {
                how: "exclusive",
                ..
            })
        ));
        drop(x);
        assert!(r.backend().list(FileType::Lock).unwrap().is_empty());
    }

    #[test]
    fn layout_follows_the_repository_version() {
        // A new repository is format 3: every lock has a session.
        let r = repo();
        let me = Host::this_process();
        assert!(r.lock(LockMode::Shared, &me).unwrap().session().is_some());
    }

    #[test]
    fn a_lock_from_another_host_counts_until_it_ages_out() {
        let r = repo();
        let elsewhere = Host {
            hostname: "elsewhere.example".into(),
            pid: 1,
            clock: Arc::new(OffsetClock::new(-(STALE_AFTER_NS - 60_000_000_000))),
            ..Host::this_process()
        };
        let old = Host {
            clock: Arc::new(OffsetClock::new(-(STALE_AFTER_NS + 60_000_000_000))),
            ..elsewhere.clone()
        };
        let me = Host::this_process();
        let _young = r.lock(LockMode::Maintenance, &elsewhere).unwrap();
        let e = r.lock(LockMode::Maintenance, &me).unwrap_err();
        assert!(e.to_string().contains("elsewhere.example"), "{e}");
        drop(_young);
        let _old = r.lock(LockMode::Maintenance, &old).unwrap();
        drop(r.lock(LockMode::Maintenance, &me).unwrap());
        // unlock removes the stale one only.
        assert_eq!(r.unlock(false, &me).unwrap(), 1);
    }

    #[test]
    fn ensure_fresh_fails_after_twenty_minutes_without_refresh_or_when_removed() {
        let r = repo();
        let clock = Arc::new(TestClock::default());
        let h = host_with(clock.clone(), "here");
        let g = r.lock(LockMode::Shared, &h).unwrap();
        g.ensure_fresh().unwrap();
        clock.mono.store(FRESH_FOR_NS - 1, Ordering::Relaxed);
        g.ensure_fresh().unwrap();
        clock.mono.store(FRESH_FOR_NS + 1, Ordering::Relaxed);
        let e = g.ensure_fresh().unwrap_err();
        assert!(matches!(e, Error::LockLost { .. }), "{e}");
        assert!(e.to_string().contains("last refreshed 20m0s ago"), "{e}");
        // A refresh makes it fresh again.
        let lock = Lock {
            time_unix_ns: NOW,
            mode: LockMode::Shared,
            hostname: "here".into(),
            username: "u".into(),
            pid: h.pid,
            session: g.session(),
        };
        assert!(refresh(&r, &g.held, &lock, &h));
        g.ensure_fresh().unwrap();
        // Its object removed behind its back: lost.
        assert_eq!(r.unlock(true, &h).unwrap(), 1);
        let e = g.ensure_fresh().unwrap_err();
        assert!(e.to_string().contains("is gone"), "{e}");
        // And a refresh that finds its old lock gone marks it lost for good.
        assert!(refresh(&r, &g.held, &lock, &h));
        let e = g.ensure_fresh().unwrap_err();
        assert!(
            e.to_string().contains("was removed while it was held"),
            "{e}"
        );
    }

    #[test]
    fn the_holder_is_described_with_mode_pid_user_host_and_ages() {
        let mut l = lock(4242, "db1".into(), 12_000_000_000);
        l.username = "postgres".into();
        assert_eq!(
            describe(&l, NOW),
            "exclusive lock of pid 4242 of postgres@db1, refreshed 12s ago"
        );
        l.mode = LockMode::Maintenance;
        l.session = Some(LockSession {
            id: [1; 16],
            started_unix_ns: NOW - 192_000_000_000,
        });
        assert_eq!(
            describe(&l, NOW),
            "maintenance lock of pid 4242 of postgres@db1, held for 3m12s, refreshed 12s ago"
        );
    }

    #[test]
    fn ages_read_as_a_person_would_say_them() {
        assert_eq!(human_age(-5), "0s");
        assert_eq!(human_age(59_999_999_999), "59s");
        assert_eq!(human_age(192_000_000_000), "3m12s");
        assert_eq!(human_age(3_723_000_000_000), "1h2m3s");
    }
}
