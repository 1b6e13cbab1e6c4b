//! Opening a repository's storage for a command: the wrapper stack (metadata cache over a
//! request counter over storage), where the cache lives, `--cleanup-cache`, and the request
//! counts printed at exit (`CISTA_DEBUG_BACKEND_STATS=1`, docs/CLI.md "Diagnostics").
//!
//! The cache folder is named by the repository id, which only the decrypted config tells, so
//! a repository is opened first over the cache folder an earlier run recorded for the same
//! location (a hint: every copy is checked against its name anyway), and moved to the right
//! folder if the id differs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use cista::backend::cache::{CacheBackend, CacheRoot};
use cista::backend::counting::CountingBackend;
use cista::backend::{Backend, BackendOptions, FileType, Location};
use cista::repo::{Located, Repository};

/// The location `s` and the `-o` options, with the process environment (where backends
/// read credentials and endpoints).
fn parse(s: &str, options: &[String]) -> Result<(Location, BackendOptions)> {
    let location = Location::parse(s)?;
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    Ok((location, BackendOptions::parse(options, env)?))
}

/// The storage at `s`, through the library's one factory (retries wired in) with the `-o`
/// options.
fn open_location(s: &str, options: &[String]) -> Result<Arc<dyn Backend>> {
    let (location, opts) = parse(s, options)?;
    Ok(cista::backend::open(&location, &opts)?)
}

/// Pack reads restore and `check --read-data` keep in flight at `s`: `-o connections` when
/// given, else the service's connection default for a remote store (so a read never waits
/// for a free connection another of its reads holds), and 0 (the commands' own default,
/// twice the cores) for a local folder.
pub fn reads_in_flight(s: &str, options: &[String]) -> Result<usize> {
    let (location, opts) = parse(s, options)?;
    if location.is_local() && opts.get(&location, "connections").is_none() {
        return Ok(0);
    }
    Ok(opts.connections(&location)?)
}

/// Whether a location is a local folder (no cache unless `CISTA_CACHE_LOCAL=1`).
pub fn is_local(s: &str) -> bool {
    Location::parse(s).map_or(true, |l| l.is_local())
}

/// The cache settings of one run.
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// `--cache-dir` / `CISTA_CACHE_DIR`.
    pub dir: Option<PathBuf>,
    /// `--no-cache`, or a command that must see storage itself (`repair`).
    pub disabled: bool,
    /// `check`: a fresh cache in a temporary folder, removed when the run ends (restic's
    /// check does the same unless `--with-cache`). Everything is read from storage, but
    /// each tree pack once, whole, instead of in ranges as the walk meets its trees; the
    /// copies are checked against their names like any other.
    pub temporary: bool,
    /// `--cleanup-cache`.
    pub cleanup: bool,
    /// `CISTA_CACHE_LOCAL=1` (hidden, for tests): cache local repositories too.
    pub local: bool,
    /// `--quiet`: no notice about old caches.
    pub quiet: bool,
}

#[derive(Debug)]
struct Opened {
    location: String,
    counting: Arc<CountingBackend>,
    /// The cache in use, with the repository id it is for.
    cache: Option<(String, Arc<CacheBackend>)>,
}

/// The storage a run opened; see the module header.
#[derive(Debug)]
pub struct Storage {
    opts: CacheOptions,
    opened: Mutex<Vec<Opened>>,
    warned: AtomicBool,
    housekept: AtomicBool,
    /// The folder of a temporary cache, once made; removed when the run's storage is dropped.
    temp: Mutex<Option<tempfile::TempDir>>,
}

impl Storage {
    /// No storage opened yet.
    pub fn new(opts: CacheOptions) -> Self {
        Self {
            opts,
            opened: Mutex::default(),
            warned: AtomicBool::new(false),
            housekept: AtomicBool::new(false),
            temp: Mutex::default(),
        }
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, Vec<Opened>> {
        self.opened.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Storage at `location` with the `-o` `options`, counted; the same stack again when
    /// opened twice.
    pub fn backend(&self, location: &str, options: &[String]) -> Result<Arc<CountingBackend>> {
        if let Some(o) = self.opened().iter().find(|o| o.location == location) {
            return Ok(o.counting.clone());
        }
        let counting = Arc::new(CountingBackend::new(open_location(location, options)?));
        self.opened().push(Opened {
            location: location.to_owned(),
            counting: counting.clone(),
            cache: None,
        });
        Ok(counting)
    }

    /// Opens the repository at `location` over `remote` (from [`Storage::backend`]), with the
    /// metadata cache when it applies; `located` is what [`Repository::locate`] found there.
    pub fn open_repository(
        &self,
        location: &str,
        remote: Arc<CountingBackend>,
        located: Located,
        passphrase: &[u8],
    ) -> Result<Repository> {
        let remote: Arc<dyn Backend> = remote;
        let Some(root) = self.cache_root(location) else {
            return Ok(Repository::open_located(remote, located, passphrase)?);
        };
        // The folder this location's repository had last time, so its key files come from
        // the cache too.
        let earlier = self.cache_of(location).or_else(|| {
            let id = root.hinted_repo(location)?;
            let store = root.repo(&id).ok()?;
            Some((id, Arc::new(CacheBackend::new(remote.clone(), store))))
        });
        let first: Arc<dyn Backend> = match &earlier {
            Some((_, c)) => c.clone(),
            None => remote.clone(),
        };
        let repo = Repository::open_located(first, located, passphrase)?;
        let id = repo.id_hex();
        let cache = match earlier {
            Some((hinted, c)) if hinted == id => c,
            _ => {
                let _ = root.remember_location(location, &id);
                match root.repo(&id) {
                    Ok(store) => {
                        let c = Arc::new(CacheBackend::new(remote.clone(), store));
                        // The key file was read before the cache could be found: fetch it
                        // once more into the cache, so the next run reads no key at all.
                        let _ = c.read(FileType::Key, &repo.key_id().0);
                        c
                    }
                    Err(e) => {
                        self.warn(format_args!(
                            "cache disabled: cannot create a folder in {}: {e}",
                            root.path().display()
                        ));
                        return Ok(repo.with_backend(remote));
                    }
                }
            }
        };
        if let Some(o) = self.opened().iter_mut().find(|o| o.location == location) {
            o.cache = Some((id.clone(), cache.clone()));
        }
        self.housekeeping(&root, &id);
        Ok(repo.with_backend(cache))
    }

    fn cache_of(&self, location: &str) -> Option<(String, Arc<CacheBackend>)> {
        self.opened()
            .iter()
            .find(|o| o.location == location)
            .and_then(|o| o.cache.clone())
    }

    /// The cache root for `location`, or `None` when no cache is used (a warning says why
    /// when one was wanted but cannot be had).
    fn cache_root(&self, location: &str) -> Option<CacheRoot> {
        if self.opts.disabled || (is_local(location) && !self.opts.local) {
            return None;
        }
        if self.opts.temporary {
            return self.temporary_root();
        }
        let Some(path) = self.root_path() else {
            self.warn(format_args!(
                "cache disabled: no folder for it (HOME is not set): give --cache-dir"
            ));
            return None;
        };
        match CacheRoot::open(&path) {
            Ok(r) => Some(r),
            Err(e) => {
                self.warn(format_args!(
                    "cache disabled: cannot use {}: {e}",
                    path.display()
                ));
                None
            }
        }
    }

    /// A fresh cache root in the system's temporary folder (0700), the same one for the whole
    /// run; `None` with a warning if none can be made.
    fn temporary_root(&self) -> Option<CacheRoot> {
        let mut temp = self.temp.lock().unwrap_or_else(PoisonError::into_inner);
        if temp.is_none() {
            match tempfile::Builder::new().prefix("cista-check-").tempdir() {
                Ok(d) => *temp = Some(d),
                Err(e) => {
                    self.warn(format_args!(
                        "temporary cache disabled: cannot make a folder in {}: {e}",
                        std::env::temp_dir().display()
                    ));
                    return None;
                }
            }
        }
        let path = temp.as_ref()?.path().to_path_buf();
        match CacheRoot::open(&path) {
            Ok(r) => Some(r),
            Err(e) => {
                self.warn(format_args!(
                    "temporary cache disabled: cannot use {}: {e}",
                    path.display()
                ));
                None
            }
        }
    }

    /// `--cache-dir`, else `$XDG_CACHE_HOME/cista`, else `~/.cache/cista`.
    fn root_path(&self) -> Option<PathBuf> {
        if let Some(d) = &self.opts.dir {
            return Some(d.clone());
        }
        let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").and_then(absolute) {
            return Some(x.join("cista"));
        }
        std::env::var_os("HOME")
            .and_then(absolute)
            .map(|h| h.join(".cache").join("cista"))
    }

    /// `--cleanup-cache`, or a notice that old caches exist (once a run).
    fn housekeeping(&self, root: &CacheRoot, id: &str) {
        // A temporary cache has no old neighbours, and is not the one to clean up.
        if self.opts.temporary || self.housekept.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.opts.cleanup {
            match root.remove_old_repos(Some(id)) {
                Ok(removed) if !removed.is_empty() && !self.opts.quiet => eprintln!(
                    "removed {} old cache directories from {}",
                    removed.len(),
                    root.path().display()
                ),
                Ok(_) => {}
                Err(e) => self.warn(format_args!("removing old caches: {e}")),
            }
        } else if !self.opts.quiet {
            let old = root.old_repos(Some(id));
            if !old.is_empty() {
                eprintln!(
                    "found {} old cache directories in {}, run with --cleanup-cache to remove them",
                    old.len(),
                    root.path().display()
                );
            }
        }
    }

    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!("warning: {msg}");
        }
    }

    /// One stderr line per location opened: its request counts and what the cache did.
    pub fn print_stats(&self) {
        for o in self.opened().iter() {
            let cache = match &o.cache {
                Some((_, c)) => format!(" {}", c.stats()),
                None => String::new(),
            };
            // The backend's own description: it never shows a secret.
            eprintln!(
                "backend stats {}: {}{cache}",
                o.counting.location(),
                o.counting.stats()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reads_in_flight;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_in_flight_follow_connections() {
        // A local folder keeps the commands' own default unless told.
        assert_eq!(reads_in_flight("/var/tmp/repo", &[]).unwrap(), 0);
        assert_eq!(
            reads_in_flight("/var/tmp/repo", &opts(&["connections=3"])).unwrap(),
            3
        );
        // Remote stores: the connection default, or what -o says (per service first).
        assert_eq!(
            reads_in_flight("s3:http://127.0.0.1:1/bucket/p", &[]).unwrap(),
            8
        );
        assert_eq!(
            reads_in_flight("sftp://u@127.0.0.1:2222/r", &[]).unwrap(),
            4
        );
        let o = opts(&["connections=2", "s3.connections=16"]);
        assert_eq!(
            reads_in_flight("s3:http://127.0.0.1:1/bucket/p", &o).unwrap(),
            16
        );
        assert!(reads_in_flight("/var/tmp/repo", &opts(&["connections=0"])).is_err());
    }
}
