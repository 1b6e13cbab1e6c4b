//! Cryptography: the master key set, AEAD sealing, keyed ids, and passphrase key derivation.
//!
//! Owns every use of a secret. Does not know about storage or object layouts beyond the
//! associated data callers pass in (docs/FORMAT.md, "Encryption" and "Keys").

pub mod kdf;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::id::{BlobId, Id};

/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;
/// Tag length of Poly1305.
pub const TAG_LEN: usize = 16;
/// Serialized length of a [`MasterKey`].
pub const MASTER_KEY_LEN: usize = 96;

/// Why a cryptographic operation failed. Deliberately coarse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong key, or the bytes were altered, moved or truncated.
    #[error("authentication failed")]
    AuthFailed,
    /// The OS random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// Argon2 refused its parameters (they were validated earlier, so this is unexpected).
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// Fills `buf` from the OS CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

/// The repository's three keys: encryption, id (keyed BLAKE3) and chunker (gear table).
/// Never printed, never serialized outside a wrapped key file; zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    enc: [u8; 32],
    id: [u8; 32],
    chunker: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random key set.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        random_bytes(bytes.as_mut())?;
        Ok(Self::from_bytes(&bytes))
    }

    /// A key set with a fresh random encryption key and this set's id and chunker keys, for a
    /// repository that must cut and name content exactly as this one does
    /// (`init --copy-chunker-params-from`, docs/FORMAT.md §9): blobs copied into it keep their
    /// ids, so trees copy unchanged, while nothing sealed in one opens in the other.
    pub fn with_new_encryption_key(&self) -> Result<Self, CryptoError> {
        let mut k = self.clone();
        random_bytes(&mut k.enc)?;
        Ok(k)
    }

    /// Whether `other` computes the same blob ids and chunk boundaries (same id and chunker
    /// keys). Only ever compares two keys this process already holds, so timing leaks nothing.
    pub fn shares_content_keys(&self, other: &MasterKey) -> bool {
        self.id == other.id && self.chunker == other.chunker
    }

    /// `enc || id || chunker`, for wrapping into a key file.
    pub fn to_bytes(&self) -> Zeroizing<[u8; MASTER_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        out[..32].copy_from_slice(&self.enc);
        out[32..64].copy_from_slice(&self.id);
        out[64..].copy_from_slice(&self.chunker);
        out
    }

    /// Inverse of [`MasterKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8; MASTER_KEY_LEN]) -> Self {
        let mut k = Self {
            enc: [0; 32],
            id: [0; 32],
            chunker: [0; 32],
        };
        k.enc.copy_from_slice(&bytes[..32]);
        k.id.copy_from_slice(&bytes[32..64]);
        k.chunker.copy_from_slice(&bytes[64..]);
        k
    }

    /// Keyed BLAKE3 of a blob's plaintext: storage cannot confirm a guessed file.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(Id(*blake3::keyed_hash(&self.id, plaintext).as_bytes()))
    }

    /// The secret FastCDC gear table: 256 u64 read little-endian from the BLAKE3 XOF of the
    /// chunker key under the derive-key context below (docs/FORMAT.md, "Chunking").
    pub fn gear_table(&self) -> [u64; 256] {
        let mut hasher = blake3::Hasher::new_derive_key("cista 2026 chunker gear table v1");
        hasher.update(&self.chunker);
        let mut xof = hasher.finalize_xof();
        let mut bytes = Zeroizing::new([0u8; 256 * 8]);
        xof.fill(bytes.as_mut());
        let mut gear = [0u64; 256];
        for (g, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            *g = u64::from_le_bytes(w);
        }
        gear
    }

    /// Seals with the encryption key; see [`seal`].
    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal(&self.enc, ad, plaintext)
    }

    /// Seals the concatenation of `parts` with the encryption key; see [`seal_parts`].
    pub fn seal_parts(&self, ad: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
        seal_parts(&self.enc, ad, parts)
    }

    /// Opens in place with the encryption key; see [`open_in_place`].
    pub fn open_in_place(
        &self,
        ad: &[u8],
        sealed: &mut [u8],
    ) -> Result<std::ops::Range<usize>, CryptoError> {
        open_in_place(&self.enc, ad, sealed)
    }

    /// Opens with the encryption key; see [`open`].
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.enc, ad, sealed)
    }
}

/// XChaCha20-Poly1305 with a fresh random nonce: returns `nonce || ciphertext || tag`.
/// Random 24-byte nonces need no counter state, so no crash or copy can make one repeat.
pub fn seal(key: &[u8; 32], ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    seal_parts(key, ad, &[plaintext])
}

/// [`seal`] of the concatenation of `parts`, built in one allocation (no joined copy).
pub fn seal_parts(key: &[u8; 32], ad: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(NONCE_LEN + len + TAG_LEN);
    out.resize(NONCE_LEN, 0);
    random_bytes(&mut out)?;
    let nonce = XNonce::try_from(&out[..NONCE_LEN]).map_err(|_| CryptoError::AuthFailed)?;
    for p in parts {
        out.extend_from_slice(p);
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let tag = cipher
        .encrypt_inout_detached(&nonce, ad, (&mut out[NONCE_LEN..]).into())
        .map_err(|_| CryptoError::AuthFailed)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens `nonce || ciphertext || tag` sealed under `key` with the same associated data.
pub fn open(key: &[u8; 32], ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::AuthFailed);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce = XNonce::try_from(nonce).map_err(|_| CryptoError::AuthFailed)?;
    let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| CryptoError::AuthFailed)?;
    let mut buf = ct.to_vec();
    let cipher = XChaCha20Poly1305::new(key.into());
    match cipher.decrypt_inout_detached(&nonce, ad, (&mut buf[..]).into(), &tag) {
        Ok(()) => Ok(buf),
        Err(_) => {
            buf.zeroize();
            Err(CryptoError::AuthFailed)
        }
    }
}

/// Opens `nonce || ciphertext || tag` in place and returns where the plaintext now lies
/// within `sealed` (no second buffer; the restore path reads every blob through this).
pub fn open_in_place(
    key: &[u8; 32],
    ad: &[u8],
    sealed: &mut [u8],
) -> Result<std::ops::Range<usize>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::AuthFailed);
    }
    let tag_at = sealed.len() - TAG_LEN;
    let nonce = XNonce::try_from(&sealed[..NONCE_LEN]).map_err(|_| CryptoError::AuthFailed)?;
    let tag =
        chacha20poly1305::Tag::try_from(&sealed[tag_at..]).map_err(|_| CryptoError::AuthFailed)?;
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_inout_detached(&nonce, ad, (&mut sealed[NONCE_LEN..tag_at]).into(), &tag)
        .map_err(|_| CryptoError::AuthFailed)?;
    Ok(NONCE_LEN..tag_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> MasterKey {
        MasterKey::from_bytes(&[5; MASTER_KEY_LEN])
    }

    #[test]
    fn seal_open_and_tamper() {
        let k = key();
        let s = k.seal(b"ad", b"hello").unwrap();
        assert_eq!(s.len(), 5 + NONCE_LEN + TAG_LEN);
        assert_eq!(k.open(b"ad", &s).unwrap(), b"hello");
        assert_eq!(k.open(b"other ad", &s), Err(CryptoError::AuthFailed));
        let mut t = s.clone();
        t[30] ^= 1;
        assert_eq!(k.open(b"ad", &t), Err(CryptoError::AuthFailed));
        assert_eq!(k.open(b"ad", &s[..20]), Err(CryptoError::AuthFailed));
        let other = MasterKey::from_bytes(&[6; MASTER_KEY_LEN]);
        assert_eq!(other.open(b"ad", &s), Err(CryptoError::AuthFailed));
    }

    #[test]
    fn nonces_differ() {
        let k = key();
        assert_ne!(
            k.seal(b"", b"x").unwrap()[..NONCE_LEN],
            k.seal(b"", b"x").unwrap()[..NONCE_LEN]
        );
    }

    #[test]
    fn golden_ids_and_gear() {
        // Pinned: changing these changes every repository's ids and chunk boundaries.
        let k = key();
        assert_eq!(
            k.blob_id(b"cista").to_hex(),
            hex::encode(blake3::keyed_hash(&[5; 32], b"cista").as_bytes())
        );
        let g = k.gear_table();
        assert_eq!(g, key().gear_table());
        assert_ne!(g, MasterKey::from_bytes(&[7; MASTER_KEY_LEN]).gear_table());
        assert!(g.iter().collect::<std::collections::HashSet<_>>().len() == 256);
    }

    #[test]
    fn master_key_bytes_round_trip_and_debug_hides() {
        let k = MasterKey::generate().unwrap();
        let b = k.to_bytes();
        assert_eq!(MasterKey::from_bytes(&b).to_bytes().as_ref(), b.as_ref());
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..2000), ad in proptest::collection::vec(any::<u8>(), 0..64)) {
            let k = key();
            let s = k.seal(&ad, &data).unwrap();
            prop_assert_eq!(k.open(&ad, &s).unwrap(), data);
        }

        #[test]
        fn open_in_place_matches_open(data in proptest::collection::vec(any::<u8>(), 0..2000), flip in any::<bool>()) {
            let k = key();
            let mut s = k.seal(b"ad", &data).unwrap();
            if flip { let i = s.len() / 2; s[i] ^= 1; }
            let expected = k.open(b"ad", &s);
            let mut inplace = s.clone();
            let got = k.open_in_place(b"ad", &mut inplace).map(|r| inplace[r].to_vec());
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn open_arbitrary_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(key().open(b"", &data).is_err());
        }
    }
}
