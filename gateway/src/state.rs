//! The state every handler shares ([`AppState`]): the services of one gateway, built at start
//! (see [`crate::server`]).

use crate::{
    GatewayConfig, audit::AuditLog, auth, auth::AuthSettings, chain::ChainClient, compliance,
    consent::ConsentService, paging::CursorCodec, records::Records, relay, signing::TokenSigner,
};
use sqlx::PgPool;
use std::sync::Arc;

/// Everything a request handler needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<AppStateParts>,
}

/// What an [`AppState`] is made of.
#[derive(Debug)]
pub struct AppStateParts {
    /// The configuration.
    pub config: GatewayConfig,
    /// The database pool.
    pub pool: PgPool,
    /// The chain client.
    pub chain: Arc<ChainClient>,
    /// The consent decision service.
    pub consent: Arc<ConsentService>,
    /// The record service.
    pub records: Records,
    /// The audit log.
    pub audit: AuditLog,
    /// Signer of bearer tokens.
    pub tokens: TokenSigner,
    /// Sign-in settings.
    pub auth: AuthSettings,
    /// The gas-free consent submitter, when a relay key is configured.
    pub relay: Option<relay::Relay>,
    /// The sign-in nonce rate limiter.
    pub nonces: auth::PeerLimiter,
    /// The per-client limit on gas-free consent submissions.
    pub relay_clients: auth::PeerLimiter,
    /// The per-user limits on reads, searches and writes.
    pub users: auth::UserLimiter,
    /// The compliance services.
    pub compliance: Option<compliance::Compliance>,
    /// The federation, when this gateway serves an organisation with its service key.
    pub federation: Option<crate::federation::Federation>,
    /// The research export service.
    pub exports: crate::research::Exports,
}

impl AppState {
    /// The state made of `parts`.
    pub fn new(parts: AppStateParts) -> Self {
        Self {
            inner: Arc::new(parts),
        }
    }
    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }
    /// Public base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.inner.records.base_url()
    }
    /// The sign-in nonce rate limiter.
    pub fn nonce_limiter(&self) -> &auth::PeerLimiter {
        &self.inner.nonces
    }
    /// The per-client limit on gas-free consent submissions.
    pub fn relay_limiter(&self) -> &auth::PeerLimiter {
        &self.inner.relay_clients
    }
    /// The per-user limits on reads, searches and writes.
    pub fn user_limiter(&self) -> &auth::UserLimiter {
        &self.inner.users
    }
    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
    /// Who may see compliance data (checked against the index and the chain).
    pub fn access(&self) -> compliance::access::AccessCheck<'_> {
        compliance::access::AccessCheck {
            pool: self.pool(),
            chain: self.chain(),
            max_index_lag_blocks: self.config().max_index_lag_blocks,
        }
    }
    /// The record service.
    pub fn records(&self) -> &Records {
        &self.inner.records
    }
    /// The chain client.
    pub fn chain(&self) -> &ChainClient {
        &self.inner.chain
    }
    /// The consent decision service.
    pub fn consent(&self) -> &ConsentService {
        &self.inner.consent
    }
    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }
    /// Signer of bearer tokens.
    pub fn tokens(&self) -> &TokenSigner {
        &self.inner.tokens
    }
    /// Sealer of paging cursors.
    pub fn cursors(&self) -> &CursorCodec {
        self.inner.records.cursors()
    }
    /// Sign-in settings.
    pub fn auth(&self) -> &AuthSettings {
        &self.inner.auth
    }
    /// The gas-free consent submitter, when a relay key is configured.
    pub fn relay(&self) -> Option<&relay::Relay> {
        self.inner.relay.as_ref()
    }
    /// The federation, when this gateway serves an organisation with its service key.
    pub fn federation(&self) -> Option<&crate::federation::Federation> {
        self.inner.federation.as_ref()
    }
    /// The research export service.
    pub fn exports(&self) -> &crate::research::Exports {
        &self.inner.exports
    }
    /// The compliance services (`None` only in states built without them).
    pub fn compliance(&self) -> Option<&compliance::Compliance> {
        self.inner.compliance.as_ref()
    }
}
