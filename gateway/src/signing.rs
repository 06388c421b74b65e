//! HMAC-SHA-256 signed, stateless tokens: bearer tokens and paging cursors.
//!
//! A token is `base64url(payload) "." base64url(mac)`; each use gets its own key derived from
//! the gateway secret, so a cursor can never be replayed as a bearer token or the reverse.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Serialize, de::DeserializeOwned};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies tokens for one purpose.
#[derive(Clone)]
pub struct TokenSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

impl TokenSigner {
    /// Derives the key for `purpose` from the gateway secret.
    pub fn new(secret: &[u8], purpose: &str) -> Self {
        let mut m = mac(secret);
        m.update(b"carechain/");
        m.update(purpose.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(&m.finalize().into_bytes());
        Self { key }
    }

    /// Signs a JSON-serialisable payload.
    pub fn sign<T: Serialize>(&self, payload: &T) -> String {
        let json = serde_json::to_vec(payload).unwrap_or_default();
        let mut m = mac(&self.key);
        m.update(&json);
        let tag = m.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Verifies a token and decodes its payload; `None` when forged, altered or malformed.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Option<T> {
        let (payload, tag) = token.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut m = mac(&self.key);
        m.update(&json);
        m.verify_slice(&tag).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_rejects_tampering() {
        let signer = TokenSigner::new(b"secret", "token");
        let token = signer.sign(&("a", 1));
        assert_eq!(
            signer.verify::<(String, i32)>(&token),
            Some(("a".into(), 1))
        );
        let other = TokenSigner::new(b"secret", "cursor");
        assert_eq!(other.verify::<(String, i32)>(&token), None);
        let (p, t) = token.split_once('.').expect("dot");
        let forged = format!("{}.{t}", URL_SAFE_NO_PAD.encode(br#"["a",2]"#));
        assert_eq!(signer.verify::<(String, i32)>(&forged), None);
        assert_eq!(signer.verify::<(String, i32)>(p), None);
        assert_eq!(signer.verify::<(String, i32)>("x.y"), None);
    }
}
