//! A federated request: what a requesting gateway sends a custodian, and how the custodian
//! checks it.
//!
//! The `Authorization` header is `CarechainFederation <base64url(JSON)>` with
//! - `session`, `sessionSignature`: the end user's own EIP-4361 sign-in at the requesting
//!   gateway (text and wallet signature), carrying an ERC-5573 capability for this custodian
//!   ([`super::capability`]);
//! - `request`, `signature`: an EIP-712 `FederatedRequest` signed by the requesting gateway's
//!   service key, binding the custodian, the user, the session (its keccak-256), the HTTP method
//!   and target (path and query), a random request id and a validity of at most two minutes;
//!   domain `carechain federation` / `1` / the chain / `ProviderRegistry`.
//!
//! The custodian accepts it only when every one of these holds: the request is for this
//! organisation on this chain, for this method and target, not expired, its id never seen
//! before (a replay is refused); it is signed by an active `Service` key of an active member
//! organisation; the sign-in is for this chain, unexpired, signed by the user, issued at the
//! requesting organisation's published endpoint and grants `fhir/read` here; and a user who is
//! a member key belongs to the requesting organisation (a practitioner asks through their own
//! organisation's gateway) and is active. The request is then decided on chain for the user,
//! like a local one, and audited with both agents.

use super::{capability, directory};
use crate::{
    auth::{Claims, Role, siwe::SiweMessage},
    error::AppError,
};
use alloy::{
    primitives::{Address, B256, U256, keccak256},
    signers::{SignerSync, local::PrivateKeySigner},
    sol,
    sol_types::{Eip712Domain, SolStruct},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The `Authorization` scheme of a federated request.
pub const SCHEME: &str = "CarechainFederation";
/// Longest validity of a signed request.
pub const MAX_VALIDITY_SECS: u64 = 120;
/// Tolerated clock skew between gateways.
const SKEW_SECS: u64 = 30;
/// Longest sign-in a custodian accepts (issued at to expiry).
const MAX_SESSION_SECS: i64 = 24 * 3600;

sol! {
    /// EIP-712 `FederatedRequest`, signed by the requesting gateway's service key.
    #[derive(Debug, PartialEq, Eq)]
    struct FederatedRequest {
        address custodian;
        address user;
        bytes32 session;
        string method;
        string target;
        bytes32 requestId;
        uint64 issuedAt;
        uint64 expiresAt;
    }
}

/// The EIP-712 domain of federated requests on `chain_id`, bound to the `ProviderRegistry`
/// whose directory they rely on.
pub fn domain(chain_id: u64, provider_registry: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some("carechain federation".into()),
        Some("1".into()),
        Some(U256::from(chain_id)),
        Some(provider_registry),
        None,
    )
}

/// The user's signed sign-in, kept in their bearer token so the gateway can forward it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSession {
    /// The EIP-4361 text.
    pub message: String,
    /// The wallet's signature (`0x` hex).
    pub signature: String,
}

/// The header's JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    session: String,
    session_signature: String,
    request: WireRequest,
    signature: String,
}

/// The signed fields a custodian cannot take from the HTTP request itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    custodian: Address,
    user: Address,
    request_id: B256,
    issued_at: u64,
    expires_at: u64,
}

fn hex_signature(text: &str) -> Result<Vec<u8>, AppError> {
    let text = text.trim();
    alloy::hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|_| AppError::Unauthenticated("a federated request's signature is not hex".into()))
}

/// Builds the `Authorization` value for asking `custodian` `method target` for the user of
/// `session`, signed with the requesting gateway's service key.
#[allow(clippy::too_many_arguments)] // each is a signed or decided field
pub fn authorization(
    key: &PrivateKeySigner,
    domain: &Eip712Domain,
    custodian: Address,
    user: Address,
    session: &SignedSession,
    method: &str,
    target: &str,
    now: DateTime<Utc>,
) -> Result<String, AppError> {
    let issued_at = u64::try_from(now.timestamp()).unwrap_or(0);
    let mut id = [0u8; 32];
    aes_gcm::aead::rand_core::RngCore::fill_bytes(&mut aes_gcm::aead::OsRng, &mut id);
    let wire = WireRequest {
        custodian,
        user,
        request_id: B256::from(id),
        issued_at,
        expires_at: issued_at + 60,
    };
    let typed = typed(&wire, &session.message, method, target);
    let signature = key
        .sign_hash_sync(&typed.eip712_signing_hash(domain))
        .map_err(AppError::internal)?;
    let envelope = Envelope {
        session: session.message.clone(),
        session_signature: session.signature.clone(),
        request: wire,
        signature: format!("0x{}", alloy::hex::encode(signature.as_bytes())),
    };
    let json = serde_json::to_vec(&envelope).map_err(AppError::internal)?;
    Ok(format!("{SCHEME} {}", URL_SAFE_NO_PAD.encode(json)))
}

fn typed(wire: &WireRequest, session: &str, method: &str, target: &str) -> FederatedRequest {
    FederatedRequest {
        custodian: wire.custodian,
        user: wire.user,
        session: keccak256(session.as_bytes()),
        method: method.to_owned(),
        target: target.to_owned(),
        requestId: wire.request_id,
        issuedAt: wire.issued_at,
        expiresAt: wire.expires_at,
    }
}

/// What a custodian needs to check a federated request.
pub struct Check<'a> {
    /// This gateway's database (the index, and the record of request ids seen).
    pub pool: &'a sqlx::PgPool,
    /// The chain client (ERC-1271 for contract wallets).
    pub chain: &'a crate::chain::ChainClient,
    /// This gateway's federation (its organisation, the domain, the directory's lookups).
    pub fed: &'a super::Federation,
    /// The index's change generation (see [`crate::consent::ConsentService::change_generation`]).
    pub generation: Option<u64>,
    /// The HTTP method of the request.
    pub method: &'a str,
    /// Its path and query, as received.
    pub target: &'a str,
    /// Now.
    pub now: DateTime<Utc>,
}

fn refused(reason: impl Into<String>) -> AppError {
    AppError::Unauthenticated(format!("federated request refused: {}", reason.into()))
}

impl Check<'_> {
    /// Checks the `Authorization` value after the scheme; returns the user's claims, with the
    /// requesting organisation in `via`.
    pub async fn verify(&self, credentials: &str) -> Result<Claims, AppError> {
        let chain_id = self.chain.chain_id();
        let bytes = URL_SAFE_NO_PAD
            .decode(credentials.trim())
            .map_err(|_| refused("the credentials are not base64url"))?;
        let envelope: Envelope =
            serde_json::from_slice(&bytes).map_err(|_| refused("the credentials are malformed"))?;
        let wire = &envelope.request;
        let now = u64::try_from(self.now.timestamp()).unwrap_or(0);
        let directory = self.fed.directory();
        if wire.custodian != self.fed.org() {
            return Err(refused("it is addressed to another organisation"));
        }
        if wire.expires_at <= now
            || wire.issued_at > now + SKEW_SECS
            || wire.expires_at < wire.issued_at
            || wire.expires_at - wire.issued_at > MAX_VALIDITY_SECS
        {
            return Err(refused("it has expired or its validity is out of range"));
        }
        // The requesting gateway: an active service key of an active member organisation.
        let typed = typed(wire, &envelope.session, self.method, self.target);
        let signature =
            alloy::primitives::Signature::try_from(hex_signature(&envelope.signature)?.as_slice())
                .map_err(|_| refused("the gateway signature is malformed"))?;
        let gateway = signature
            .recover_address_from_prehash(&typed.eip712_signing_hash(self.fed.domain()))
            .map_err(|_| refused("the gateway signature is invalid"))?;
        let requester = directory
            .gateway_org(self.pool, chain_id, self.generation, gateway)
            .await?
            .ok_or_else(|| {
                refused(
                    "it is not signed by the registered gateway of an active member organisation",
                )
            })?;
        // The user's own sign-in, at that organisation's gateway, with a capability for us.
        let message = SiweMessage::parse(&envelope.session)
            .map_err(|e| refused(format!("the user's sign-in: {e}")))?;
        if message.address != wire.user {
            return Err(refused("the sign-in is another user's"));
        }
        if message.chain_id != chain_id || message.version != "1" {
            return Err(refused("the sign-in is for another chain"));
        }
        let exp = message
            .expiration_time
            .ok_or_else(|| refused("the sign-in has no expiration time"))?;
        if exp <= self.now
            || message.issued_at > self.now + Duration::seconds(SKEW_SECS as i64)
            || exp - message.issued_at > Duration::seconds(MAX_SESSION_SECS)
            || message.not_before.is_some_and(|nbf| nbf > self.now)
        {
            return Err(refused(
                "the user's sign-in has expired or is not valid now",
            ));
        }
        let endpoint = directory
            .endpoint_of(self.pool, chain_id, self.generation, requester)
            .await?
            .ok_or_else(|| refused("the requesting organisation publishes no endpoint"))?;
        if authority(&endpoint).as_deref() != Some(message.domain.as_str()) {
            return Err(refused(
                "the user signed in elsewhere than at the requesting organisation's gateway",
            ));
        }
        if !capability::grants(&message, &capability::target(chain_id, self.fed.org())) {
            return Err(refused(
                "the user's sign-in grants no capability to read records at this organisation",
            ));
        }
        // The user's signature: an EOA's is checked once (remembered); a contract wallet's is
        // asked of the chain every time (its answer may change).
        let session_id = keccak256(
            [
                envelope.session.as_bytes(),
                envelope.session_signature.as_bytes(),
            ]
            .concat(),
        );
        if !self.fed.session_known(session_id) {
            let by_eoa = alloy::primitives::Signature::try_from(
                hex_signature(&envelope.session_signature)?.as_slice(),
            )
            .ok()
            .and_then(|sig| {
                sig.recover_address_from_msg(envelope.session.as_bytes())
                    .ok()
            })
            .is_some_and(|recovered| recovered == message.address);
            if by_eoa {
                self.fed.remember_session(session_id);
            } else {
                crate::auth::check_wallet_signature(
                    self.chain,
                    message.address,
                    &envelope.session,
                    &envelope.session_signature,
                )
                .await?;
            }
        }
        let standing = directory
            .standing(self.pool, chain_id, self.generation, message.address)
            .await?;
        let (role, org) = match standing {
            directory::Standing::Member(org) if org == requester => (Role::Member, Some(org)),
            directory::Standing::Member(_) => {
                return Err(AppError::Forbidden(
                    "federated request refused: a member asks through their own organisation's gateway"
                        .into(),
                ));
            }
            directory::Standing::Inactive => {
                return Err(AppError::Forbidden(
                    "federated request refused: the user's key or organisation is not active"
                        .into(),
                ));
            }
            directory::Standing::NotMember => (Role::Patient, None),
        };
        // Last: the request id is used once (a replay is refused even within its validity).
        let first = sqlx::query(
            "INSERT INTO gateway_federation_requests (request_id, expires_at)
             VALUES ($1, to_timestamp($2)) ON CONFLICT DO NOTHING",
        )
        .bind(wire.request_id.as_slice())
        .bind(wire.expires_at as f64)
        .execute(self.pool)
        .await?
        .rows_affected();
        if first == 0 {
            return Err(refused("it was already used (replay)"));
        }
        if wire.request_id[0] == 0 {
            // About one request in 256 clears ids long expired.
            sqlx::query(
                "DELETE FROM gateway_federation_requests WHERE expires_at < now() - interval '10 minutes'",
            )
            .execute(self.pool)
            .await?;
        }
        Ok(Claims {
            sub: message.address,
            role,
            org,
            iat: i64::try_from(wire.issued_at).unwrap_or(0),
            exp: i64::try_from(wire.expires_at).unwrap_or(0),
            chain: chain_id,
            via: Some(requester),
            session: None,
        })
    }
}

/// `host[:port]` of a URL (the EIP-4361 domain a gateway at that URL issues).
pub fn authority(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}
