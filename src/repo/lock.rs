//! Repository locks: shared for backups and reads that must not see packs vanish, exclusive
//! for destructive work. A lock is a sealed `locks/<id>` object, refreshed by a background
//! thread so long operations are not mistaken for stale ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::ObjectKind;
use crate::format::lock::{Lock, MAX_LOCK_LEN};
use crate::id::Id;
use crate::repo::Repository;

/// A lock not refreshed for this long is stale and ignored.
pub const STALE_AFTER_NS: i64 = 30 * 60 * 1_000_000_000;
/// How often a held lock is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// A held lock; released (deleted) on drop.
#[derive(Debug)]
pub struct LockGuard {
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
    current: Arc<std::sync::Mutex<Id>>,
    repo: Repository,
}

/// A lock is stale when not refreshed for [`STALE_AFTER_NS`], or when it was taken on this
/// host by a process that no longer exists (a killed backup), as restic decides.
pub(crate) fn is_stale(l: &Lock, now: i64) -> bool {
    if now.saturating_sub(l.time_unix_ns) >= STALE_AFTER_NS {
        return true;
    }
    let pid = i32::try_from(l.pid).unwrap_or(0);
    l.hostname == crate::ops::hostname()
        && pid > 0
        && pid != std::process::id() as i32
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
}

fn describe(l: &Lock) -> String {
    format!("pid {} of {}@{}", l.pid, l.username, l.hostname)
}

impl Repository {
    fn write_lock(&self, exclusive: bool) -> Result<Id> {
        let lock = Lock {
            time_unix_ns: crate::ops::now_unix_ns(),
            exclusive,
            hostname: crate::ops::hostname(),
            username: crate::ops::username(),
            pid: std::process::id(),
        };
        let bytes = self.seal_object(ObjectKind::Lock, &lock.encode())?;
        let id = Id::of_stored(&bytes);
        self.backend().write(FileType::Lock, &id, bytes)?;
        Ok(id)
    }

    /// Every lock that is not stale, except `skip`.
    fn live_locks(&self, skip: Option<&Id>) -> Result<Vec<Lock>> {
        let now = crate::ops::now_unix_ns();
        let mut out = Vec::new();
        for (id, len) in self.backend().list(FileType::Lock)? {
            if Some(&id) == skip {
                continue;
            }
            // A lock that vanished, cannot be read or is over its cap does not block anyone;
            // the cap is checked on the listed size, before reading.
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
            if !is_stale(&lock, now) {
                out.push(lock);
            }
        }
        Ok(out)
    }

    /// Takes a lock, failing with [`Error::Locked`] if a conflicting live lock exists.
    pub fn lock(&self, exclusive: bool) -> Result<LockGuard> {
        let conflict = |locks: &[Lock]| locks.iter().find(|l| exclusive || l.exclusive).cloned();
        if let Some(l) = conflict(&self.live_locks(None)?) {
            return Err(Error::Locked {
                how: if l.exclusive { "exclusively" } else { "" },
                holder: describe(&l),
            });
        }
        let id = self.write_lock(exclusive)?;
        // Two processes may have checked at the same moment; look again now ours is visible.
        if let Some(l) = conflict(&self.live_locks(Some(&id))?) {
            let _ = self.backend().delete(FileType::Lock, &id);
            return Err(Error::Locked {
                how: if l.exclusive { "exclusively" } else { "" },
                holder: describe(&l),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(std::sync::Mutex::new(id));
        let refresher = {
            let (stop, current, repo) = (stop.clone(), current.clone(), self.clone());
            std::thread::Builder::new()
                .name("cista-lock".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(REFRESH_EVERY);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Ok(new) = repo.write_lock(exclusive)
                            && let Ok(mut cur) = current.lock()
                        {
                            let old = std::mem::replace(&mut *cur, new);
                            let _ = repo.backend().delete(FileType::Lock, &old);
                        }
                    }
                })
                .ok()
        };
        Ok(LockGuard {
            stop,
            refresher,
            current,
            repo: self.clone(),
        })
    }

    /// Removes stale locks (or every lock with `all`); returns how many were removed.
    pub fn unlock(&self, all: bool) -> Result<usize> {
        let now = crate::ops::now_unix_ns();
        let mut removed = 0;
        for (id, len) in self.backend().list(FileType::Lock)? {
            let stale =
                match self.read_metadata_object(FileType::Lock, &id, Some(len), MAX_LOCK_LEN) {
                    Ok(bytes) => match self
                        .open_object(ObjectKind::Lock, &id, &bytes)
                        .and_then(|p| Ok(Lock::decode(&p)?))
                    {
                        Ok(l) => is_stale(&l, now),
                        Err(_) => true,
                    },
                    // Damaged (over its cap): not a lock anyone can hold.
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

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        if let Ok(id) = self.current.lock() {
            let _ = self.repo.backend().delete(FileType::Lock, &id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn lock(pid: u32, host: String, age_ns: i64) -> Lock {
        Lock {
            time_unix_ns: NOW - age_ns,
            exclusive: true,
            hostname: host,
            username: "u".into(),
            pid,
        }
    }

    #[test]
    fn stale_when_old_or_holder_dead_on_this_host() {
        let now = NOW;
        let me = std::process::id();
        let host = crate::ops::hostname();
        assert!(!is_stale(&lock(me, host.clone(), 0), now));
        assert!(is_stale(&lock(me, host.clone(), STALE_AFTER_NS + 1), now));
        // A finished child's pid: dead on this host, so its lock is stale at once.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(is_stale(&lock(dead, host, 0), now));
        // The same pid on another host cannot be checked: live until it ages out.
        assert!(!is_stale(&lock(dead, "elsewhere.example".into(), 0), now));
    }
}
