//! Paged compliance lists: a patient's consent history (`GET /Consent?patient=`) and the
//! break-glass review queue. Every page is a keyset walk (no offset, no cap): the next page
//! starts after the last item's key, sealed in a cursor with the list, the page size and the
//! total counted for the first page, issued to one requester for an hour.

use crate::{error::AppError, paging::CursorCodec};
use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// Additional data of the sealed list cursors.
const CURSOR_AAD: &[u8] = b"carechain/compliance-list-cursor";

/// Which list a cursor pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum List {
    /// The consent history of a patient.
    Consents(Address),
    /// The break-glass sessions not reviewed yet.
    BreakGlassQueue,
}

/// The state of a list's next page (sealed by [`CursorCodec::seal_cursor`]: issued to one
/// requester for an hour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    /// The list.
    pub list: List,
    /// Page size.
    pub count: usize,
    /// The last item's key: `(block, log index)` of a consent, `(opened block, session)` of a
    /// break-glass session.
    pub after: (i64, String),
    /// The total counted for the first page.
    pub total: i64,
    requester: Address,
}

impl ListCursor {
    /// A cursor for `requester` that continues `list` after `after`.
    pub fn new(
        list: List,
        requester: Address,
        count: usize,
        after: (i64, String),
        total: i64,
    ) -> Self {
        Self {
            list,
            count,
            after,
            total,
            requester,
        }
    }

    /// Sealed for the client.
    pub fn seal(&self, codec: &CursorCodec) -> Result<String, AppError> {
        codec.seal_cursor(
            &(&self.list, self.count),
            self.requester,
            (&self.after, self.total),
            CURSOR_AAD,
        )
    }

    /// Opens a cursor sealed by [`ListCursor::seal`] for `requester`.
    pub fn open(codec: &CursorCodec, token: &str, requester: Address) -> Result<Self, AppError> {
        let ((list, count), (after, total)) = codec.open_cursor(token, CURSOR_AAD, requester)?;
        Ok(Self::new(list, requester, count, after, total))
    }
}

/// One break-glass session awaiting review: session id, patient, organisation, opener,
/// reason, expiry, opening block and transaction, closing block.
pub type QueueRow = (
    String,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    i16,
    i64,
    i64,
    Vec<u8>,
    Option<i64>,
);

/// How many break-glass sessions of `chain_id` are not reviewed yet.
pub async fn unreviewed_sessions(pool: &PgPool, chain_id: i64) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM break_glass_sessions s
         WHERE s.chain_id = $1 AND NOT EXISTS (
           SELECT 1 FROM gateway_break_glass_reviews r
           WHERE r.chain_id = s.chain_id AND r.session_id = s.session_id)",
    )
    .bind(chain_id)
    .fetch_one(pool)
    .await?)
}

/// Up to `count` + 1 sessions not reviewed yet, oldest first, after `(opened block, session)`.
pub async fn break_glass_queue(
    pool: &PgPool,
    chain_id: i64,
    count: usize,
    after: Option<&(i64, String)>,
) -> Result<Vec<QueueRow>, AppError> {
    let (block, session) = match after {
        Some((block, session)) => (*block, session.clone()),
        None => (i64::MIN, "-1".to_owned()),
    };
    Ok(sqlx::query_as(
        "SELECT s.session_id::text, s.patient, s.org, s.opener, s.reason, s.expires_at,
                s.opened_block, s.opened_tx, s.closed_block
         FROM break_glass_sessions s
         WHERE s.chain_id = $1 AND (s.opened_block, s.session_id) > ($2, $3::numeric)
           AND NOT EXISTS (
             SELECT 1 FROM gateway_break_glass_reviews r
             WHERE r.chain_id = s.chain_id AND r.session_id = s.session_id)
         ORDER BY s.opened_block, s.session_id LIMIT $4",
    )
    .bind(chain_id)
    .bind(block)
    .bind(session)
    .bind(i64::try_from(count + 1).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?)
}
