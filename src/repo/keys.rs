//! Key files: wrapping the master key under passphrases, and finding the one that opens.

use zeroize::Zeroizing;

use crate::backend::{Backend, FileType};
use crate::crypto::{self, MASTER_KEY_LEN, MasterKey, kdf};
use crate::error::{Error, Result};
use crate::format::FormatError;
use crate::format::key::{KdfParams, KeyFile, MAX_KEY_FILE_LEN};
use crate::id::{Id, KeyId};

/// Key files tried when opening (docs/FORMAT.md, "Keys"): each costs one Argon2id run, so
/// storage stuffed with key files must not make opening take unbounded time.
pub const MAX_KEYS_TRIED: usize = 20;

/// What `cista key list` shows about a key.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// The key file's id.
    pub id: KeyId,
    /// Creation time, ns since the Unix epoch.
    pub created_unix_ns: i64,
    /// Creating host.
    pub hostname: String,
    /// Creating user.
    pub username: String,
}

/// Keeps key material out of core dumps for the rest of the process: the core-size limit is
/// set to zero (soft and hard) and, on Linux, the process is marked not dumpable (which also
/// keeps other processes of the same user from attaching to it). Best effort and
/// process-wide, so the program decides, not the library: `cista` calls it before reading a
/// passphrase. Returns whether both succeeded.
pub fn protect_process_memory() -> bool {
    use nix::sys::resource::{Resource, setrlimit};
    let no_core = setrlimit(Resource::RLIMIT_CORE, 0, 0).is_ok();
    #[cfg(target_os = "linux")]
    let not_dumpable = nix::sys::prctl::set_dumpable(false).is_ok();
    #[cfg(not(target_os = "linux"))]
    let not_dumpable = true;
    no_core && not_dumpable
}

/// Wraps `master` under `passphrase` and stores a new key file.
pub fn add_key(
    backend: &dyn Backend,
    master: &MasterKey,
    passphrase: &[u8],
    kdf_params: KdfParams,
    hostname: &str,
    username: &str,
) -> Result<KeyId> {
    let mut salt = [0u8; 32];
    crypto::random_bytes(&mut salt)?;
    let mut file = KeyFile {
        kdf: kdf_params,
        salt,
        created_unix_ns: crate::host::now_unix_ns(),
        hostname: hostname.to_owned(),
        username: username.to_owned(),
        wrapped: Vec::new(),
    };
    let wrapping = kdf::derive(passphrase, kdf_params, &salt)?;
    file.wrapped = crypto::seal(&wrapping, &file.wrap_ad(), master.to_bytes().as_ref())?;
    let bytes = file.encode();
    let id = Id::of_stored(&bytes);
    backend.write(FileType::Key, &id, bytes)?;
    Ok(KeyId(id))
}

/// Reads one key file and checks what can be checked without the passphrase: its stored
/// size against the cap (before reading), its name, its header, its fields and KDF caps.
/// `listed` is its size from a listing, if known.
pub fn read_key_file(backend: &dyn Backend, id: &Id, listed: Option<u64>) -> Result<KeyFile> {
    let size = match listed {
        Some(n) => n,
        None => backend.size(FileType::Key, id)?,
    };
    if size > MAX_KEY_FILE_LEN {
        return Err(Error::corrupt(
            "key file",
            id,
            format!("{size} bytes, more than the {MAX_KEY_FILE_LEN}-byte cap"),
        ));
    }
    let bytes = backend.read(FileType::Key, id)?;
    // A key file whose bytes do not match its name is damaged or planted (FORMAT §3).
    if Id::of_stored(&bytes) != *id {
        return Err(Error::corrupt(
            "key file",
            id,
            "contents do not match the name (bit rot or tampering)",
        ));
    }
    KeyFile::decode(&bytes).map_err(|e| match e {
        e @ FormatError::NewerVersion { .. } => Error::Format(e),
        e => Error::corrupt("key file", id, e),
    })
}

/// Tries the key files with `passphrase` until one unwraps a master key that `opens_config`
/// accepts; returns it and the id of its key file.
///
/// A key that unwraps but does not open the config belongs to another repository (an
/// interrupted `init` run again) and is skipped, so its order in the listing never matters.
/// Damaged key files are skipped too; when no key opens, the error says whether damaged key
/// files could be the reason rather than the passphrase.
pub fn open_master(
    backend: &dyn Backend,
    passphrase: &[u8],
    opens_config: &dyn Fn(&MasterKey) -> bool,
) -> Result<(MasterKey, KeyId)> {
    let keys = backend.list(FileType::Key)?;
    if keys.len() > MAX_KEYS_TRIED {
        return Err(Error::InvalidInput(format!(
            "the repository has {} key files; cista tries at most {MAX_KEYS_TRIED} (remove unknown files from keys/)",
            keys.len()
        )));
    }
    let mut damaged = 0usize;
    let mut unwrapped = 0usize;
    for (id, len) in keys {
        let file = match read_key_file(backend, &id, Some(len)) {
            Ok(f) => f,
            Err(Error::Corrupt { .. }) => {
                damaged += 1;
                continue;
            }
            // Removed since the listing.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let wrapping = kdf::derive(passphrase, file.kdf, &file.salt)?;
        let Ok(plain) = crypto::open(&wrapping, &file.wrap_ad(), &file.wrapped) else {
            continue;
        };
        let plain = Zeroizing::new(plain);
        let Ok(arr) = <[u8; MASTER_KEY_LEN]>::try_from(plain.as_slice()) else {
            continue;
        };
        let arr = Zeroizing::new(arr);
        let master = MasterKey::from_bytes(&arr);
        unwrapped += 1;
        if opens_config(&master) {
            return Ok((master, KeyId(id)));
        }
    }
    if unwrapped > 0 {
        return Err(Error::corrupt(
            "config",
            "config",
            "it does not open with any key this password unwraps (the config was replaced or is damaged)",
        ));
    }
    if damaged > 0 {
        return Err(Error::WrongPasswordOrDamagedKeys { damaged });
    }
    Err(Error::WrongPassword)
}

/// One key file as `cista key list` and `check` see it.
#[derive(Debug)]
pub struct KeyEntry {
    /// The key file's name.
    pub id: KeyId,
    /// Its labels, or why it cannot be used.
    pub state: std::result::Result<KeyInfo, String>,
}

/// Every key file, oldest first, each with its state: one damaged file is reported, never
/// a reason to stop listing the others. Storage errors other than damage are still errors.
pub fn scan_keys(backend: &dyn Backend) -> Result<Vec<KeyEntry>> {
    let mut out = Vec::new();
    for (id, len) in backend.list(FileType::Key)? {
        let state = match read_key_file(backend, &id, Some(len)) {
            Ok(file) => Ok(KeyInfo {
                id: KeyId(id),
                created_unix_ns: file.created_unix_ns,
                hostname: file.hostname,
                username: file.username,
            }),
            Err(Error::Corrupt { reason, .. }) => Err(reason),
            Err(e) if e.is_not_found() => continue,
            // Unreadable (a permission, an I/O error) or from a newer cista: this key's
            // state, not a reason to stop listing the others.
            Err(e) => Err(e.to_string()),
        };
        out.push(KeyEntry {
            id: KeyId(id),
            state,
        });
    }
    out.sort_by_key(|k| {
        (
            k.state.as_ref().map_or(i64::MAX, |i| i.created_unix_ns),
            k.id,
        )
    });
    Ok(out)
}

/// Every readable key file, oldest first (damaged ones are left out; see [`scan_keys`]).
pub fn list_keys(backend: &dyn Backend) -> Result<Vec<KeyInfo>> {
    Ok(scan_keys(backend)?
        .into_iter()
        .filter_map(|k| k.state.ok())
        .collect())
}

/// Removes a key file, refusing to remove the last one. Deleting is destructive, so the
/// caller holds the exclusive lock (FORMAT §17): [`crate::repo::Repository::remove_key`].
pub fn remove_key(backend: &dyn Backend, id: &KeyId) -> Result<()> {
    let keys = backend.list(FileType::Key)?;
    if !keys.iter().any(|(k, _)| *k == id.0) {
        return Err(Error::InvalidInput(format!(
            "no key {id}; see `cista key list`"
        )));
    }
    if keys.len() <= 1 {
        return Err(Error::LastKey);
    }
    backend.delete(FileType::Key, &id.0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;
    use crate::repo::tests::repo;

    use crate::repo::tests::CHEAP_KDF as CHEAP;

    /// Regression: after an interrupted `init` run again, a key wrapping another master key
    /// with the same passphrase was tried first and the repository did not open.
    #[test]
    fn stray_key_listed_first_does_not_shadow_the_right_one() {
        let r = repo();
        let b = r.backend();
        let real = r.key_id();
        // A stray key (another master key, same passphrase) that the listing returns first.
        let stray = (0..64)
            .find_map(|_| {
                let other = MasterKey::generate().unwrap();
                let id = add_key(b, &other, b"pw", CHEAP, "h", "u").unwrap();
                if b.list(FileType::Key).unwrap()[0].0 == id.0 {
                    return Some(id);
                }
                b.delete(FileType::Key, &id.0).unwrap();
                None
            })
            .expect("a stray key listed first");
        assert_ne!(stray, real);
        let reopened = Repository::open(r.backend_arc(), b"pw").unwrap();
        assert_eq!(reopened.key_id(), real);
    }

    #[test]
    fn wrong_password_says_when_key_files_are_damaged() {
        let r = repo();
        let b = r.backend();
        assert!(matches!(
            Repository::open(r.backend_arc(), b"nope"),
            Err(Error::WrongPassword)
        ));
        let junk = b"not a key file".to_vec();
        b.write(FileType::Key, &Id::of_stored(&junk), junk).unwrap();
        assert!(matches!(
            Repository::open(r.backend_arc(), b"nope"),
            Err(Error::WrongPasswordOrDamagedKeys { damaged: 1 })
        ));
        // The right passphrase still opens, past the damaged file.
        assert!(Repository::open(r.backend_arc(), b"pw").is_ok());
        let states = scan_keys(b).unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!(states.iter().filter(|k| k.state.is_err()).count(), 1);
    }
}
