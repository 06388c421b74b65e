//! Envelope encryption of records: AES-256-GCM under per-patient data keys, each data key
//! wrapped (AES-256-GCM too) by the key-encryption key, which never enters the database.
//!
//! Sealed layout, for wrapped keys and records alike: `nonce (12 bytes) ‖ ciphertext ‖ tag`.
//! The associated data binds a wrapped key to its patient and a record to its
//! `type/id/version`, so a ciphertext moved to another row fails to open.

use aes_gcm::{
    Aes256Gcm, Key, Nonce,
    aead::{Aead, KeyInit, OsRng, Payload, rand_core::RngCore},
};
use std::{fmt, path::Path};

const NONCE_LEN: usize = 12;

/// Why a key or a sealed value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key-encryption key is not 32 bytes of hex.
    #[error("the key-encryption key must be 64 hex characters (32 bytes)")]
    InvalidKek,
    /// The key-encryption key file could not be read.
    #[error("cannot read the key-encryption key file: {0}")]
    KekFile(#[source] std::io::Error),
    /// Authentication failed: wrong key, wrong associated data or tampered bytes.
    #[error("ciphertext failed authentication")]
    Tampered,
    /// Encryption failed (never expected with valid lengths).
    #[error("encryption failed")]
    Seal,
}

/// A 256-bit key; the bytes are never printed.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A key from raw bytes (e.g. a secret derived with [`SecretKey::derive`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex characters (an optional `0x` and surrounding whitespace are accepted).
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let bytes = alloy::hex::decode(text).map_err(|_| CryptoError::InvalidKek)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::InvalidKek)?;
        Ok(Self(bytes))
    }

    /// Reads the hex key from a file.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let text = std::fs::read_to_string(path).map_err(CryptoError::KekFile)?;
        Self::from_hex(&text)
    }

    /// A 32-byte secret derived from this key for one `purpose` (HMAC-SHA-256), so the KEK
    /// itself never keys anything but data-key wrapping.
    pub fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = match <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(purpose);
        mac.finalize().into_bytes().into()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0))
    }

    /// Encrypts `plaintext` bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce_bytes);
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts a value sealed by [`SecretKey::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Tampered);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Tampered)?;
        self.cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }

    /// Wraps a patient's data key under this key-encryption key.
    pub fn wrap(&self, data_key: &SecretKey, patient: &str) -> Result<Vec<u8>, CryptoError> {
        self.seal(&data_key.0, wrap_aad(patient).as_bytes())
    }

    /// Unwraps a patient's data key.
    pub fn unwrap_key(&self, wrapped: &[u8], patient: &str) -> Result<SecretKey, CryptoError> {
        let bytes = self.open(wrapped, wrap_aad(patient).as_bytes())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Tampered)?;
        Ok(SecretKey(bytes))
    }
}

fn wrap_aad(patient: &str) -> String {
    format!("carechain/dek/{patient}")
}

/// Associated data of one record version.
pub fn record_aad(resource_type: &str, id: &str, version: i64) -> String {
    format!("carechain/record/{resource_type}/{id}/{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = SecretKey::generate();
        let sealed = key.seal(b"hello", b"aad").expect("seal");
        assert_eq!(key.open(&sealed, b"aad").expect("open"), b"hello");
        assert!(key.open(&sealed, b"other").is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            key.open(&tampered, b"aad"),
            Err(CryptoError::Tampered)
        ));
        assert!(key.open(&sealed[..10], b"aad").is_err());
    }

    #[test]
    fn wraps_data_keys_per_patient() {
        let kek = SecretKey::generate();
        let dek = SecretKey::generate();
        let wrapped = kek.wrap(&dek, "0xabc").expect("wrap");
        assert_eq!(kek.unwrap_key(&wrapped, "0xabc").expect("unwrap").0, dek.0);
        assert!(kek.unwrap_key(&wrapped, "0xdef").is_err());
        assert!(SecretKey::generate().unwrap_key(&wrapped, "0xabc").is_err());
    }

    #[test]
    fn parses_hex_keys() {
        let hex = "11".repeat(32);
        assert!(SecretKey::from_hex(&format!("0x{hex}\n")).is_ok());
        assert!(SecretKey::from_hex("abcd").is_err());
        assert!(format!("{:?}", SecretKey::from_hex(&hex).expect("key")).contains(".."));
    }
}
