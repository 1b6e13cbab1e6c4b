//! Key files: wrapping the master key under passphrases, and finding the one that opens.

use zeroize::Zeroizing;

use crate::backend::{Backend, FileType};
use crate::crypto::{self, MASTER_KEY_LEN, MasterKey, kdf};
use crate::error::{Error, Result};
use crate::format::key::{KdfParams, KeyFile};
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
        created_unix_ns: crate::ops::now_unix_ns(),
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

/// Tries every key file; returns the master key and the id of the key that opened it.
/// Key files that fail to parse are skipped (another key may still open the repository).
pub fn open_master(backend: &dyn Backend, passphrase: &[u8]) -> Result<(MasterKey, KeyId)> {
    let keys = backend.list(FileType::Key)?;
    if keys.len() > MAX_KEYS_TRIED {
        return Err(Error::InvalidInput(format!(
            "the repository has {} key files; cista tries at most {MAX_KEYS_TRIED} (remove unknown files from keys/)",
            keys.len()
        )));
    }
    for (id, _) in keys {
        let Ok(bytes) = backend.read(FileType::Key, &id) else {
            continue;
        };
        // A key file whose bytes do not match its name is damaged or planted; skip it.
        if Id::of_stored(&bytes) != id {
            continue;
        }
        let Ok(file) = KeyFile::decode(&bytes) else {
            continue;
        };
        let wrapping = kdf::derive(passphrase, file.kdf, &file.salt)?;
        if let Ok(plain) = crypto::open(&wrapping, &file.wrap_ad(), &file.wrapped) {
            let plain = Zeroizing::new(plain);
            let mut arr = Zeroizing::new([0u8; MASTER_KEY_LEN]);
            if plain.len() == MASTER_KEY_LEN {
                arr.copy_from_slice(&plain);
                return Ok((MasterKey::from_bytes(&arr), KeyId(id)));
            }
        }
    }
    Err(Error::WrongPassword)
}

/// Every readable key file.
pub fn list_keys(backend: &dyn Backend) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for (id, _) in backend.list(FileType::Key)? {
        let bytes = backend.read(FileType::Key, &id)?;
        let file = KeyFile::decode(&bytes).map_err(|e| Error::corrupt("key file", id, e))?;
        out.push(KeyInfo {
            id: KeyId(id),
            created_unix_ns: file.created_unix_ns,
            hostname: file.hostname,
            username: file.username,
        });
    }
    out.sort_by_key(|k| k.created_unix_ns);
    Ok(out)
}

/// Removes a key file, refusing to remove the last one.
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
