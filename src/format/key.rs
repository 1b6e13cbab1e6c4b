//! Key files (docs/FORMAT.md, "Keys"): a master key wrapped under a passphrase.
//!
//! A key file is stored in the clear (it is what lets a passphrase open the repository):
//! header, then the encoded [`KeyFile`]. The wrapped master key is an AEAD box whose associated
//! data ([`KeyFile::wrap_ad`]) binds the header, KDF parameters and salt, so none of them can be
//! altered without the passphrase failing.

use serde::{Deserialize, Serialize};

use super::{
    FormatError, HEADER_LEN, ObjectKind, check_header, check_len, decode_capped, encode, header,
};

/// Largest key file accepted.
pub const MAX_KEY_FILE_LEN: u64 = 64 << 10;
/// Length of the wrapped master key: 24-byte nonce, 96-byte key set, 16-byte tag.
pub const WRAPPED_LEN: usize = 24 + 96 + 16;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option: t=3, m=64 MiB, p=4.
    pub const DEFAULT: Self = Self {
        m_kib: 64 << 10,
        t: 3,
        p: 4,
    };
    /// The most work a key file may ask for: 2 GiB, 10 passes, 16 lanes. Checked before the
    /// KDF runs, so a hostile key file cannot exhaust memory or time.
    pub const MAX: Self = Self {
        m_kib: 2 << 20,
        t: 10,
        p: 16,
    };

    /// Accepts only parameters Argon2 allows and within [`KdfParams::MAX`].
    pub fn validate(&self) -> Result<(), FormatError> {
        let m = Self::MAX;
        if self.m_kib > m.m_kib || self.t > m.t || self.p > m.p {
            return Err(FormatError::malformed(
                "key file",
                format!("KDF parameters {self:?} exceed the cap {m:?}"),
            ));
        }
        if self.t < 1 || self.p < 1 || self.m_kib < 8 * self.p {
            return Err(FormatError::malformed(
                "key file",
                format!("KDF parameters {self:?} invalid"),
            ));
        }
        Ok(())
    }
}

/// The decoded body of a key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Argon2id costs.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; 32],
    /// Creation time, ns since the Unix epoch (informational).
    pub created_unix_ns: i64,
    /// Host that created the key (informational).
    pub hostname: String,
    /// User that created the key (informational).
    pub username: String,
    /// `nonce || ciphertext || tag` of the 96-byte master key set.
    pub wrapped: Vec<u8>,
}

impl KeyFile {
    /// Associated data for the wrapped key: header, m, t, p (u32 LE each), salt.
    pub fn wrap_ad(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(HEADER_LEN + 12 + 32);
        ad.extend_from_slice(&header(ObjectKind::Key));
        ad.extend_from_slice(&self.kdf.m_kib.to_le_bytes());
        ad.extend_from_slice(&self.kdf.t.to_le_bytes());
        ad.extend_from_slice(&self.kdf.p.to_le_bytes());
        ad.extend_from_slice(&self.salt);
        ad
    }

    /// Stored bytes: header then the encoded body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = header(ObjectKind::Key).to_vec();
        out.extend_from_slice(&encode(self));
        out
    }

    /// Parses and validates a stored key file; does not run the KDF.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        check_len("key file", bytes.len() as u64, MAX_KEY_FILE_LEN)?;
        let body = check_header(bytes, ObjectKind::Key)?;
        let k: Self = decode_capped::<_, { MAX_KEY_FILE_LEN as usize }>(body, "key file")?;
        k.kdf.validate()?;
        if k.wrapped.len() != WRAPPED_LEN {
            return Err(FormatError::malformed(
                "key file",
                "wrapped key has the wrong length",
            ));
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample() -> KeyFile {
        KeyFile {
            kdf: KdfParams::DEFAULT,
            salt: [1; 32],
            created_unix_ns: 1_700_000_000_000_000_000,
            hostname: "h".into(),
            username: "u".into(),
            wrapped: vec![9; WRAPPED_LEN],
        }
    }

    #[test]
    fn round_trip() {
        let k = sample();
        assert_eq!(KeyFile::decode(&k.encode()).unwrap(), k);
    }

    #[test]
    fn fail_kdf_over_cap_is_refused_before_running() {
        let mut k = sample();
        k.kdf.m_kib = KdfParams::MAX.m_kib + 1;
        let e = KeyFile::decode(&k.encode()).unwrap_err();
        assert!(e.to_string().contains("exceed the cap"), "{e}");
        let mut k = sample();
        k.kdf.t = 0;
        assert!(KeyFile::decode(&k.encode()).is_err());
    }

    #[test]
    fn fail_wrapped_length() {
        let mut k = sample();
        k.wrapped.pop();
        assert!(KeyFile::decode(&k.encode()).is_err());
    }

    #[test]
    fn fail_hostile_length_prefix_is_bounded_by_the_key_file_cap() {
        // A hostname claiming 60 MB must be refused by the 64 KiB decode limit.
        let mut b = header(ObjectKind::Key).to_vec();
        b.extend_from_slice(&[0u8; 12 + 32 + 8]);
        b.extend_from_slice(&60_000_000u64.to_le_bytes());
        b.extend_from_slice(b"x");
        assert!(KeyFile::decode(&b).is_err());
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = KeyFile::decode(&bytes);
        }

        #[test]
        fn decode_mutated_never_panics(pos in 0usize..250, val in any::<u8>()) {
            let mut b = sample().encode();
            let i = pos % b.len();
            b[i] = val;
            let _ = KeyFile::decode(&b);
        }
    }
}
