//! Wallet sign-in (EIP-4361) and short-lived bearer tokens.
//!
//! 1. `POST /auth/nonce` issues a single-use nonce (stored, so any gateway instance can check it).
//! 2. The wallet signs an EIP-4361 message naming this gateway's domain, URI and chain, the nonce,
//!    and an issued-at time; EOAs sign with EIP-191, contract wallets answer ERC-1271.
//! 3. `POST /auth/login` checks all that, consumes the nonce, resolves who the signer is (an
//!    active member key of an active organisation, or else a patient or delegate wallet; a
//!    suspended or retired key is refused) and returns an HMAC-signed bearer token bound to the
//!    address, valid for a few minutes.

pub mod siwe;

use crate::{
    chain::{ChainClient, Membership},
    error::AppError,
    signing::TokenSigner,
};
use aes_gcm::aead::{OsRng, rand_core::RngCore};
use alloy::primitives::{Address, Bytes, Signature, eip191_hash_message};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use siwe::{SiweExpectations, SiweMessage};
use sqlx::PgPool;
use std::{collections::HashMap, net::IpAddr, time::Instant};

/// What a signed-in wallet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An active member key of an active organisation.
    Member,
    /// Any other wallet: a patient (own data) or a delegate.
    Patient,
}

/// The content of a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The signed-in address.
    pub sub: Address,
    /// Member or patient.
    pub role: Role,
    /// The member's organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<Address>,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// Chain the token is valid for.
    pub chain: u64,
    /// For a federated request (from another member's gateway): the requesting organisation.
    /// Such a request is answered from this gateway's own records only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Address>,
    /// The user's signed sign-in when it carries a capability for the other custodians: the
    /// gateway forwards it to ask them (see [`crate::federation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::federation::request::SignedSession>,
}

/// What sign-in needs to know.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// EIP-4361 domain (host[:port] of the base URL).
    pub domain: String,
    /// EIP-4361 URI (the base URL).
    pub uri: String,
    /// The chain.
    pub chain_id: u64,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// Oldest accepted message.
    pub max_message_age: Duration,
}

impl AuthSettings {
    /// Settings for a gateway served at `base_url`: the EIP-4361 domain is its authority
    /// (`host[:port]`), the URI the base URL itself.
    pub fn for_base_url(
        base_url: &str,
        chain_id: u64,
        token_ttl_secs: i64,
        max_message_age_secs: i64,
    ) -> Result<Self, crate::config::ConfigError> {
        let invalid = |reason: &str| crate::config::ConfigError::Invalid {
            name: "base_url",
            reason: reason.to_owned(),
        };
        let url: alloy::transports::http::reqwest::Url = base_url
            .parse()
            .map_err(|_| invalid("not an absolute URL"))?;
        let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
        let domain = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            domain,
            uri: base_url.trim_end_matches('/').to_owned(),
            chain_id,
            token_ttl: Duration::seconds(token_ttl_secs),
            max_message_age: Duration::seconds(max_message_age_secs),
        })
    }
}

/// A token bucket per key (a client address, a signed-in user) holding `per_minute` tokens,
/// refilled continuously. Kept in memory (each gateway instance limits what it serves); full
/// buckets are forgotten when the table grows large.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    per_minute: u32,
    buckets: std::sync::Mutex<HashMap<K, (f64, Instant)>>,
}

/// Limits how often one client address may do something costly without signing in (take a
/// sign-in nonce, submit a gas-free consent).
pub type PeerLimiter = KeyedLimiter<IpAddr>;

/// Keys tracked before full buckets are dropped.
const LIMITER_TRACKED: usize = 10_000;

impl<K: std::hash::Hash + Eq + Copy> KeyedLimiter<K> {
    /// A limiter allowing `per_minute` tokens per key (0: unlimited).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`; `Err(seconds)` says when to retry.
    pub fn take(&self, key: K, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= LIMITER_TRACKED && !buckets.contains_key(&key) {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < capacity
            });
        }
        let (tokens, at) = buckets.entry(key).or_insert((capacity, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }
}

/// What a signed-in request costs against its user's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A read of something named by id (read, vread, history, a proof).
    Read,
    /// A search, or an operation read with GET that spans many records (`$export`, `$verify`).
    Search,
    /// Anything that changes state (create, update, delete, Bundles, `$erase`, reviews).
    Write,
}

impl RequestKind {
    /// The kind of a request line: GET and HEAD read, or search when they name a type only or
    /// an operation (`$...`); every other method writes.
    pub fn of(method: &axum::http::Method, path: &str) -> Self {
        use axum::http::Method;
        if method != Method::GET && method != Method::HEAD {
            return Self::Write;
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if segments.len() == 1 || segments.iter().any(|s| s.starts_with('$')) {
            Self::Search
        } else {
            Self::Read
        }
    }
}

/// Per signed-in user limits: one token bucket per user (the token's subject) and kind.
#[derive(Debug)]
pub struct UserLimiter {
    reads: KeyedLimiter<Address>,
    searches: KeyedLimiter<Address>,
    writes: KeyedLimiter<Address>,
}

impl UserLimiter {
    /// Limiters with the configured rates.
    pub fn new(limits: &crate::config::UserLimits) -> Self {
        Self {
            reads: KeyedLimiter::new(limits.reads_per_minute),
            searches: KeyedLimiter::new(limits.searches_per_minute),
            writes: KeyedLimiter::new(limits.writes_per_minute),
        }
    }

    /// Takes one token of `kind` for `user`; `Err(seconds)` says when to retry.
    pub fn take(&self, kind: RequestKind, user: Address, now: Instant) -> Result<(), u64> {
        match kind {
            RequestKind::Read => self.reads.take(user, now),
            RequestKind::Search => self.searches.take(user, now),
            RequestKind::Write => self.writes.take(user, now),
        }
    }
}

/// Issues a single-use nonce valid for five minutes.
pub async fn issue_nonce(pool: &PgPool) -> Result<String, AppError> {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let nonce = alloy::hex::encode(bytes);
    sqlx::query("INSERT INTO gateway_siwe_nonces (nonce, expires_at) VALUES ($1, now() + interval '5 minutes')")
        .bind(&nonce)
        .execute(pool)
        .await?;
    // Opportunistic clean-up of long-expired nonces.
    sqlx::query("DELETE FROM gateway_siwe_nonces WHERE expires_at < now() - interval '1 day'")
        .execute(pool)
        .await?;
    Ok(nonce)
}

fn parse_signature(text: &str) -> Result<Vec<u8>, AppError> {
    let text = text.trim();
    let hex = text.strip_prefix("0x").unwrap_or(text);
    alloy::hex::decode(hex).map_err(|_| AppError::Invalid("the signature is not hex".into()))
}

/// Checks a signed message and returns a bearer token and its claims.
pub async fn sign_in(
    pool: &PgPool,
    chain: &ChainClient,
    signer: &TokenSigner,
    settings: &AuthSettings,
    message_text: &str,
    signature: &str,
    now: DateTime<Utc>,
) -> Result<(String, Claims), AppError> {
    let message = SiweMessage::parse(message_text).map_err(|e| AppError::Invalid(e.to_string()))?;
    let expectations = SiweExpectations {
        domain: &settings.domain,
        uri: &settings.uri,
        chain_id: settings.chain_id,
        max_age: settings.max_message_age,
        skew: Duration::seconds(60),
    };
    message
        .validate(&expectations, now)
        .map_err(|e| AppError::Unauthenticated(e.to_string()))?;
    parse_signature(signature)?;
    // Consume the nonce first: a message is tried once, whatever the outcome.
    let consumed = sqlx::query(
        "UPDATE gateway_siwe_nonces SET used_at = now()
         WHERE nonce = $1 AND used_at IS NULL AND expires_at > now()",
    )
    .bind(&message.nonce)
    .execute(pool)
    .await?
    .rows_affected();
    if consumed == 0 {
        return Err(AppError::Unauthenticated(
            "the nonce is unknown, expired or already used".into(),
        ));
    }
    check_wallet_signature(chain, message.address, message_text, signature).await?;
    let membership = chain.membership(message.address).await.map_err(|err| {
        tracing::warn!(%err, "membership check unavailable");
        AppError::Unavailable("sign-in is unavailable: the chain is unreachable")
    })?;
    let (role, org) = match membership {
        Membership::Active { org } => (Role::Member, Some(org)),
        Membership::Inactive { status } => {
            return Err(AppError::Forbidden(format!(
                "the key or its organisation is not active ({status}): sign-in refused"
            )));
        }
        Membership::NotMember => (Role::Patient, None),
    };
    let mut exp = now + settings.token_ttl;
    if let Some(message_exp) = message.expiration_time {
        exp = exp.min(message_exp);
    }
    let session = crate::federation::capability::carries_any(&message).then(|| {
        crate::federation::request::SignedSession {
            message: message_text.to_owned(),
            signature: signature.trim().to_owned(),
        }
    });
    let claims = Claims {
        sub: message.address,
        role,
        org,
        iat: now.timestamp(),
        exp: exp.timestamp(),
        chain: settings.chain_id,
        via: None,
        session,
    };
    Ok((signer.sign(&claims), claims))
}

/// Checks that `address` signed `text` (EIP-191): an EOA's signature, or a contract wallet's
/// ERC-1271 answer.
pub async fn check_wallet_signature(
    chain: &ChainClient,
    address: Address,
    text: &str,
    signature: &str,
) -> Result<(), AppError> {
    let signature = parse_signature(signature)?;
    let by_eoa = Signature::try_from(signature.as_slice())
        .ok()
        .and_then(|sig| sig.recover_address_from_msg(text.as_bytes()).ok())
        .is_some_and(|recovered| recovered == address);
    if by_eoa {
        return Ok(());
    }
    let contract = chain.is_contract(address).await.map_err(|err| {
        tracing::warn!(%err, "ERC-1271 check unavailable");
        AppError::Unavailable("sign-in is unavailable: the chain is unreachable")
    })?;
    let valid = contract
        && chain
            .erc1271_valid(address, eip191_hash_message(text), Bytes::from(signature))
            .await
            .map_err(|_| {
                AppError::Unavailable("sign-in is unavailable: the chain is unreachable")
            })?;
    if valid {
        Ok(())
    } else {
        Err(AppError::Unauthenticated(
            "the signature does not match the address".into(),
        ))
    }
}

/// Checks an `Authorization` header value.
pub fn authenticate(
    signer: &TokenSigner,
    chain_id: u64,
    header: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Claims, AppError> {
    let header =
        header.ok_or_else(|| AppError::Unauthenticated("sign in first: no bearer token".into()))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| AppError::Unauthenticated("expected a bearer token".into()))?;
    let claims: Claims = signer
        .verify(token.trim())
        .ok_or_else(|| AppError::Unauthenticated("the bearer token is invalid".into()))?;
    if claims.exp <= now.timestamp() {
        return Err(AppError::Unauthenticated(
            "the bearer token has expired".into(),
        ));
    }
    if claims.chain != chain_id {
        return Err(AppError::Unauthenticated(
            "the bearer token is for another chain".into(),
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_issuance_is_limited_per_address() {
        let limiter = PeerLimiter::new(3);
        let (a, b): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip"));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(a, t0), Ok(()));
        }
        assert_eq!(limiter.take(a, t0), Err(20), "one nonce per 20 s refills");
        assert_eq!(limiter.take(b, t0), Ok(()), "per address");
        assert_eq!(
            limiter.take(a, t0 + std::time::Duration::from_secs(20)),
            Ok(())
        );
        assert!(
            limiter
                .take(a, t0 + std::time::Duration::from_secs(20))
                .is_err()
        );
        assert_eq!(PeerLimiter::new(0).take(a, t0), Ok(()));
    }

    #[test]
    fn user_limits_are_per_user_and_kind() {
        use axum::http::Method;
        let limiter = UserLimiter::new(&crate::config::UserLimits {
            reads_per_minute: 2,
            searches_per_minute: 1,
            writes_per_minute: 0,
        });
        let (alice, bob) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let t0 = Instant::now();
        let read = RequestKind::of(&Method::GET, "/Observation/1");
        assert_eq!(read, RequestKind::Read);
        assert_eq!(limiter.take(read, alice, t0), Ok(()));
        assert_eq!(limiter.take(read, alice, t0), Ok(()));
        assert_eq!(limiter.take(read, alice, t0), Err(30));
        assert_eq!(limiter.take(read, bob, t0), Ok(()), "per user");
        let search = RequestKind::of(&Method::GET, "/Observation");
        assert_eq!(search, RequestKind::Search);
        assert_eq!(limiter.take(search, alice, t0), Ok(()), "per kind");
        assert!(limiter.take(search, alice, t0).is_err());
        for _ in 0..100 {
            assert_eq!(
                limiter.take(RequestKind::Write, alice, t0),
                Ok(()),
                "0 = off"
            );
        }
        assert_eq!(
            RequestKind::of(&Method::GET, "/AuditEvent/$export"),
            RequestKind::Search
        );
        assert_eq!(
            RequestKind::of(&Method::GET, "/Observation/1/_history/2"),
            RequestKind::Read
        );
        assert_eq!(RequestKind::of(&Method::POST, "/"), RequestKind::Write);
        assert_eq!(
            RequestKind::of(&Method::DELETE, "/Observation/1"),
            RequestKind::Write
        );
        assert_eq!(
            limiter.take(read, alice, t0 + std::time::Duration::from_secs(30)),
            Ok(()),
            "recovers"
        );
    }

    #[test]
    fn tokens_expire_and_bind_the_chain() {
        let signer = TokenSigner::new(b"k", "token");
        let now = Utc::now();
        let claims = Claims {
            sub: Address::repeat_byte(0xaa),
            role: Role::Patient,
            org: None,
            iat: now.timestamp(),
            exp: now.timestamp() + 60,
            chain: 1,
            via: None,
            session: None,
        };
        let header = format!("Bearer {}", signer.sign(&claims));
        assert_eq!(
            authenticate(&signer, 1, Some(&header), now).expect("valid"),
            claims
        );
        assert!(authenticate(&signer, 2, Some(&header), now).is_err());
        assert!(authenticate(&signer, 1, Some(&header), now + Duration::seconds(61)).is_err());
        assert!(authenticate(&signer, 1, None, now).is_err());
        assert!(authenticate(&signer, 1, Some("Basic abc"), now).is_err());
    }
}
