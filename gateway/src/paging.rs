//! Sealed paging cursors: the state of a search's next page, encrypted and authenticated under
//! a key derived from the gateway's key-encryption key, so a client can neither read nor forge
//! it (it may name a patient or search terms). The record searches and the compliance searches
//! each seal their own kind of state under their own associated data.

use crate::{crypto::SecretKey, error::AppError};
use alloy::primitives::Address;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// How long a search's next-page cursor may be used (seconds).
const CURSOR_LIFETIME: i64 = 3600;

/// The state a search cursor carries: the query, who may use it, where the next page starts
/// and until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SealedCursor<Q, A> {
    query: Q,
    /// Requester the cursor was issued to.
    requester: Address,
    /// Position after the last entry served (and whatever else the next page needs, such as
    /// the total counted for the first page).
    after: A,
    /// Expiry (unix seconds).
    exp: i64,
}

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

    /// The cursor of the page after `after` of `query`, for `requester` only, for an hour;
    /// `aad` names the kind of search.
    pub fn seal_cursor<Q: Serialize, A: Serialize>(
        &self,
        query: &Q,
        requester: Address,
        after: A,
        aad: &[u8],
    ) -> Result<String, AppError> {
        self.seal_state(
            &SealedCursor {
                query,
                requester,
                after,
                exp: Utc::now().timestamp() + CURSOR_LIFETIME,
            },
            aad,
        )
    }

    /// Opens a cursor sealed by [`Self::seal_cursor`] with the same `aad` for `requester`:
    /// the query and the position its next page starts after.
    pub fn open_cursor<Q: DeserializeOwned, A: DeserializeOwned>(
        &self,
        token: &str,
        aad: &[u8],
        requester: Address,
    ) -> Result<(Q, A), AppError> {
        let cursor: SealedCursor<Q, A> = self
            .open_state(token, aad)
            .ok_or_else(|| AppError::Invalid("the paging cursor is invalid".into()))?;
        if cursor.requester != requester {
            return Err(AppError::Invalid(
                "the paging cursor was issued to someone else".into(),
            ));
        }
        if cursor.exp < Utc::now().timestamp() {
            return Err(AppError::Invalid(
                "the paging cursor has expired; search again".into(),
            ));
        }
        Ok((cursor.query, cursor.after))
    }
}
