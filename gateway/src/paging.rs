//! Sealed paging cursors: the state of a search's next page, encrypted and authenticated under
//! a key derived from the gateway's key-encryption key, so a client can neither read nor forge
//! it (it may name a patient or search terms). The record searches and the compliance searches
//! each seal their own kind of state under their own associated data.

use crate::{crypto::SecretKey, error::AppError};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// Seals and opens paging state.
#[derive(Debug, Clone)]
pub struct CursorCodec {
    key: SecretKey,
}

impl CursorCodec {
    /// A codec keyed from the gateway secret.
    pub fn new(key: SecretKey) -> Self {
        Self { key }
    }

    /// Seals `state`; `aad` names the kind of state, so one kind never opens as another.
    pub fn seal_state<T: serde::Serialize>(
        &self,
        state: &T,
        aad: &[u8],
    ) -> Result<String, AppError> {
        let json = serde_json::to_vec(state).map_err(AppError::internal)?;
        let sealed = self.key.seal(&json, aad).map_err(AppError::internal)?;
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens state sealed by [`Self::seal_state`] with the same `aad`.
    pub fn open_state<T: serde::de::DeserializeOwned>(&self, token: &str, aad: &[u8]) -> Option<T> {
        let sealed = URL_SAFE_NO_PAD.decode(token).ok()?;
        let json = self.key.open(&sealed, aad).ok()?;
        serde_json::from_slice(&json).ok()
    }
}
