//! The one way a command uses a repository: [`Session::open`] takes the lock its mode needs
//! (docs/FORMAT.md §17), waiting for a conflicting holder up to `--retry-lock`, upgrades the
//! repository to format 3 first when the mode needs it (maintenance), and hands out the
//! repository to work on and the guard to check ([`Session::ensure_fresh`]) before committing.
//!
//! Which mode each command takes: shared for everything that only reads or adds (backup,
//! check, restore, ls, dump, cat, snapshots, key list), exclusive for key changes, and
//! maintenance for forget, prune, tag, rewrite and repair. `--no-lock` (read-only storage)
//! is for shared sessions of commands that write nothing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::lock::LockMode;
use crate::host::Host;
use crate::ops::{CancelFlag, Progress};
use crate::repo::Repository;
use crate::repo::lock::LockGuard;

/// First wait between attempts to take a lock someone else holds; doubled after each attempt.
pub const RETRY_FIRST_WAIT: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub const RETRY_MAX_WAIT: Duration = Duration::from_secs(60);

/// How a session locks.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// Keep trying to take a lock someone else holds for this long (restic's `--retry-lock`);
    /// zero fails at once.
    pub retry: Duration,
    /// Take no lock at all (restic's `--no-lock`): only for a shared session of a command
    /// that writes nothing, on storage where a lock cannot be written.
    pub no_lock: bool,
    /// Object types the command lists first (snapshots, the index): their listings start as
    /// soon as the lock is written, beside the check that follows it
    /// ([`Repository::lock_listing_ahead`]); without a lock, at once.
    pub list_ahead: Vec<crate::backend::FileType>,
}

/// An open repository with the lock of one operation.
#[derive(Debug)]
pub struct Session {
    repo: Repository,
    guard: Option<LockGuard>,
}

impl Session {
    /// Takes a `mode` lock on `repo` as `host`. A conflicting live lock is retried with
    /// backoff (about 1 s, doubling up to 60 s, each wait jittered by ±50% so racing
    /// processes fall out of step) until `opts.retry` has passed, with one `progress` warning
    /// naming the holder; then [`Error::Locked`] naming the last holder. A
    /// maintenance session on a repository of format 1 or 2 upgrades it to format 3 once its
    /// lock is held (FORMAT §10), and works on the upgraded repository ([`Session::repo`]).
    pub fn open(
        repo: &Repository,
        mode: LockMode,
        opts: &LockOptions,
        host: &Host,
        progress: &dyn Progress,
        cancel: Option<&CancelFlag>,
    ) -> Result<Self> {
        if opts.no_lock {
            if mode != LockMode::Shared {
                return Err(Error::InvalidInput(format!(
                    "--no-lock is only for commands that read: this one needs the {} lock",
                    mode.name()
                )));
            }
            for t in &opts.list_ahead {
                repo.backend().list_ahead(*t);
            }
            return Ok(Self {
                repo: repo.clone(),
                guard: None,
            });
        }
        let guard = lock_with_retry(repo, mode, opts, host, progress, cancel)?;
        let repo = if mode == LockMode::Maintenance {
            repo.upgrade_format()?
        } else {
            repo.clone()
        };
        Ok(Self {
            repo,
            guard: Some(guard),
        })
    }

    /// A session that holds no lock, for operations that write nothing and must not leave a
    /// trace (a dry-run backup).
    pub fn unlocked(repo: &Repository) -> Self {
        Self {
            repo: repo.clone(),
            guard: None,
        }
    }

    /// The repository to work on.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The held lock, if any.
    pub fn guard(&self) -> Option<&LockGuard> {
        self.guard.as_ref()
    }

    /// Fails with [`Error::LockLost`] if the lock can no longer be trusted
    /// ([`LockGuard::ensure_fresh`]); a session without a lock has nothing to lose. Call it
    /// right before committing: a backup before its snapshot, prune before any deletion.
    pub fn ensure_fresh(&self) -> Result<()> {
        match &self.guard {
            Some(g) => g.ensure_fresh(),
            None => Ok(()),
        }
    }
}

fn lock_with_retry(
    repo: &Repository,
    mode: LockMode,
    opts: &LockOptions,
    host: &Host,
    progress: &dyn Progress,
    cancel: Option<&CancelFlag>,
) -> Result<LockGuard> {
    let retry = opts.retry;
    let deadline = Instant::now() + retry;
    let mut wait = RETRY_FIRST_WAIT;
    let mut told = false;
    loop {
        match repo.lock_listing_ahead(mode, host, &opts.list_ahead) {
            Err(e @ Error::Locked { .. }) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                if !told {
                    let holder = match &e {
                        Error::Locked { holder, .. } => holder.as_str(),
                        _ => "",
                    };
                    progress.warn(&format!(
                        "repository is locked: {holder}; waiting up to {}s for the lock",
                        retry.as_secs()
                    ));
                    told = true;
                }
                sleep_unless_cancelled(jittered(wait).min(left), cancel)?;
                wait = (wait * 2).min(RETRY_MAX_WAIT);
            }
            r => return r,
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.5): two processes that backed off from each
/// other's lock at the same moment (FORMAT §17, "Taking a lock") must not retry in step
/// forever.
fn jittered(d: Duration) -> Duration {
    let mut r = [0u8; 2];
    if crate::crypto::random_bytes(&mut r).is_err() {
        return d;
    }
    let f = 0.5 + f64::from(u16::from_le_bytes(r)) / 65536.0;
    d.mul_f64(f)
}

/// Sleeps in small steps so a signal stops the wait promptly.
fn sleep_unless_cancelled(d: Duration, cancel: Option<&CancelFlag>) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Interrupted);
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::NoProgress;
    use crate::repo::tests::repo;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Warnings(Mutex<Vec<String>>);
    impl Progress for Warnings {
        fn warn(&self, m: &str) {
            self.0.lock().unwrap().push(m.to_owned());
        }
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..200 {
            let j = jittered(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(5) && j < Duration::from_secs(15),
                "{j:?}"
            );
        }
    }

    #[test]
    fn no_lock_is_for_shared_sessions_only() {
        let r = repo();
        let h = Host::this_process();
        let opts = LockOptions {
            no_lock: true,
            ..LockOptions::default()
        };
        let s = Session::open(&r, LockMode::Shared, &opts, &h, &NoProgress, None).unwrap();
        assert!(s.guard().is_none());
        s.ensure_fresh().unwrap();
        assert!(
            r.backend()
                .list(crate::backend::FileType::Lock)
                .unwrap()
                .is_empty()
        );
        let e = Session::open(&r, LockMode::Maintenance, &opts, &h, &NoProgress, None).unwrap_err();
        assert!(e.to_string().contains("maintenance lock"), "{e}");
    }

    #[test]
    fn maintenance_upgrades_a_version_2_repository_and_shared_keeps_its_layout() {
        use crate::backend::opendal::OpendalBackend;
        let mem: std::sync::Arc<dyn crate::backend::Backend> =
            std::sync::Arc::new(OpendalBackend::memory().unwrap());
        let r = crate::repo::tests::repo_at_version_2(mem.clone());
        let h = Host::this_process();
        let o = LockOptions::default();
        let shared = Session::open(&r, LockMode::Shared, &o, &h, &NoProgress, None).unwrap();
        // A version-2 repository gets version-2 locks, which older cista reads.
        assert_eq!(shared.guard().unwrap().session(), None);
        assert_eq!(shared.repo().config().format_version, 2);
        let m = Session::open(&r, LockMode::Maintenance, &o, &h, &NoProgress, None).unwrap();
        assert!(m.guard().unwrap().session().is_some());
        assert_eq!(m.repo().config().format_version, 3);
        assert_eq!(
            Repository::open(mem, b"pw")
                .unwrap()
                .config()
                .format_version,
            3
        );
        m.ensure_fresh().unwrap();
    }

    #[test]
    fn a_held_lock_is_waited_for_then_taken() {
        let r = repo();
        let h = Host::this_process();
        let held = r.lock(LockMode::Maintenance, &h).unwrap();
        let w = Warnings::default();
        let opts = LockOptions {
            retry: Duration::from_secs(30),
            ..LockOptions::default()
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| Session::open(&r, LockMode::Maintenance, &opts, &h, &w, None));
            // Release once the waiter has said it waits (it warns before its first sleep).
            while w.0.lock().unwrap().is_empty() {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(held);
            let session = waiter.join().unwrap().unwrap();
            assert_eq!(session.guard().unwrap().mode(), LockMode::Maintenance);
        });
        let warned = w.0.lock().unwrap();
        assert_eq!(warned.len(), 1);
        assert!(warned[0].contains("waiting up to 30s"), "{}", warned[0]);
    }

    #[test]
    fn without_retry_a_conflict_fails_at_once_and_cancel_stops_a_wait() {
        let r = repo();
        let h = Host::this_process();
        let _held = r.lock(LockMode::Exclusive, &h).unwrap();
        let e = Session::open(
            &r,
            LockMode::Shared,
            &LockOptions::default(),
            &h,
            &NoProgress,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Locked {
                    how: "exclusive",
                    ..
                }
            ),
            "{e}"
        );
        let cancel: CancelFlag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let opts = LockOptions {
            retry: Duration::from_secs(3600),
            ..LockOptions::default()
        };
        let e =
            Session::open(&r, LockMode::Shared, &opts, &h, &NoProgress, Some(&cancel)).unwrap_err();
        assert!(matches!(e, Error::Interrupted), "{e}");
    }
}
