//! Who may see compliance data.
//!
//! - Compliance staff: active member keys of an active organisation of kind `Compliance`
//!   (read from the index, checked on every request, so a suspension takes effect at once).
//! - Patients: data about themselves; delegates: data about the patients whose delegation is
//!   active now.
//!
//! Everything else is refused (403). When the index is staler than the configured bound, the
//! gateway fails closed (503) rather than answer from old membership.

use crate::{auth::Claims, chain::ChainClient, error::AppError};
use alloy::primitives::Address;
use carechain_contracts::{OrgKind, Status};
use sqlx::PgPool;

/// Who is asking, as far as compliance data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// A compliance member key and its organisation.
    Compliance {
        /// The organisation.
        org: Address,
    },
    /// The patient themselves or an active delegate.
    Subject,
}

/// The checks, over the index (`pool`) and the chain, refusing when the index lags the chain by
/// more than `max_index_lag_blocks`.
#[derive(Debug, Clone, Copy)]
pub struct AccessCheck<'a> {
    /// The database holding the index.
    pub pool: &'a PgPool,
    /// The chain the index follows.
    pub chain: &'a ChainClient,
    /// The staleness bound.
    pub max_index_lag_blocks: u64,
}

impl AccessCheck<'_> {
    async fn ensure_fresh(&self) -> Result<(), AppError> {
        let indexed = crate::consent::indexed_block(self.pool, self.chain.chain_id())
            .await?
            .ok_or(AppError::Unavailable(
                "the index does not follow this chain yet (fail closed)",
            ))?;
        let head = self.chain.head().await.map_err(|err| {
            tracing::warn!(%err, "chain unreachable for a compliance check");
            AppError::Unavailable("the chain is unreachable (fail closed)")
        })?;
        if head.saturating_sub(indexed) > self.max_index_lag_blocks {
            return Err(AppError::Unavailable("the index is stale (fail closed)"));
        }
        Ok(())
    }

    fn chain_id(&self) -> Result<i64, AppError> {
        i64::try_from(self.chain.chain_id())
            .map_err(|_| AppError::internal(std::io::Error::other("chain id out of range")))
    }

    /// The compliance organisation of `key` when it is an active key of an active compliance
    /// organisation.
    pub async fn compliance_org(&self, key: Address) -> Result<Option<Address>, AppError> {
        let org: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT m.org FROM members m
             JOIN organisations o ON o.chain_id = m.chain_id AND o.org = m.org
             WHERE m.chain_id = $1 AND m.member_key = $2 AND m.status = $3 AND o.status = $3
               AND o.kind = $4",
        )
        .bind(self.chain_id()?)
        .bind(key.as_slice())
        .bind(i16::from(u8::from(Status::Active)))
        .bind(i16::from(u8::from(OrgKind::Compliance)))
        .fetch_optional(self.pool)
        .await?;
        Ok(org.and_then(|o| Address::try_from(o.as_slice()).ok()))
    }

    /// Refuses anyone but compliance staff; returns their organisation.
    pub async fn require_compliance(&self, claims: &Claims) -> Result<Address, AppError> {
        self.ensure_fresh().await?;
        self.compliance_org(claims.sub).await?.ok_or_else(|| {
            AppError::Forbidden("only members of a compliance organisation may do this".into())
        })
    }

    /// Whether `who` is `patient` or one of their delegates now.
    pub async fn is_subject(&self, who: Address, patient: Address) -> Result<bool, AppError> {
        if who == patient {
            return Ok(true);
        }
        let delegate: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM delegates
             WHERE chain_id = $1 AND patient = $2 AND delegate = $3
               AND valid_until > extract(epoch FROM now())::bigint",
        )
        .bind(self.chain_id()?)
        .bind(patient.as_slice())
        .bind(who.as_slice())
        .fetch_optional(self.pool)
        .await?;
        Ok(delegate.is_some())
    }

    /// Compliance staff, or the patient / an active delegate of `patient`; anyone else is
    /// refused.
    pub async fn require_viewer(
        &self,
        claims: &Claims,
        patient: Option<Address>,
    ) -> Result<Viewer, AppError> {
        self.ensure_fresh().await?;
        if let Some(org) = self.compliance_org(claims.sub).await? {
            return Ok(Viewer::Compliance { org });
        }
        match patient {
            Some(patient) if self.is_subject(claims.sub, patient).await? => Ok(Viewer::Subject),
            Some(_) => Err(AppError::Forbidden(
                "only the patient, their delegates and compliance staff may see this".into(),
            )),
            None => Err(AppError::Forbidden(
                "name your own patient id (`patient`): only compliance staff may search across patients"
                    .into(),
            )),
        }
    }
}
