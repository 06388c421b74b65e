//! The federation: each member organisation keeps its own records behind its own gateway, and a
//! patient's records are found and fetched across members under the patient's consent.
//!
//! - [`directory`]: the members' published endpoints and gateway keys, from this gateway's
//!   own index of `ProviderRegistry`;
//! - [`capability`]: the user's ERC-5573 capability for the other custodians, carried in the
//!   EIP-4361 sign-in;
//! - [`request`]: the signed request a gateway sends a custodian and the custodian's checks;
//! - [`search`]: the initiating side of a search (ask every custodian in parallel, verify,
//!   merge, page) and of a read by id.
//!
//! A custodian answering a federated request adds to every version it serves how it is anchored
//! ([`AnchorProof`]: the `urn:carechain:anchor-proof` extension of a search entry, the
//! `X-Anchor-Proof` header of a read); the initiating gateway checks each version against the
//! custodian's on-chain anchor before passing it on.

pub mod capability;
pub mod directory;
pub mod request;
pub mod search;

use crate::error::AppError;
use alloy::{
    primitives::{Address, B256},
    signers::local::PrivateKeySigner,
    sol_types::Eip712Domain,
};
use carechain_tls::{PeerClient, PeerPolicy, Trust};
use std::time::Duration;

/// The extension URL of an entry's anchor proof in a federated answer.
pub const ANCHOR_PROOF_URL: &str = "urn:carechain:anchor-proof";
/// The header carrying a read's anchor proof in a federated answer.
pub const ANCHOR_PROOF_HEADER: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-anchor-proof");

/// How a served version is anchored on chain for its custodian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorProof {
    /// Its hash was anchored singly (`RecordRegistry.verifyAnchor`).
    Single,
    /// Its hash is a leaf of a batch root (`RecordRegistry.verifyInclusion`).
    Batch {
        /// The batch's Merkle root.
        root: B256,
        /// Sibling hashes from the leaf upwards.
        proof: Vec<B256>,
    },
}

impl AnchorProof {
    /// `single`, or `batch:<root>:<sibling>,<sibling>...` (hex).
    pub fn to_text(&self) -> String {
        match self {
            Self::Single => "single".into(),
            Self::Batch { root, proof } => format!(
                "batch:{root:#x}:{}",
                proof
                    .iter()
                    .map(|p| format!("{p:#x}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// Parses [`Self::to_text`]'s form.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "single" {
            return Some(Self::Single);
        }
        let rest = text.strip_prefix("batch:")?;
        let (root, proof) = rest.split_once(':')?;
        let proof = if proof.is_empty() {
            Vec::new()
        } else {
            proof
                .split(',')
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<B256>>>()?
        };
        if proof.len() > 64 {
            return None;
        }
        Some(Self::Batch {
            root: root.parse().ok()?,
            proof,
        })
    }
}

/// Limits of the initiating side.
#[derive(Debug, Clone, Copy)]
pub struct FederationSettings {
    /// Time limit of one custodian's answer.
    pub timeout: Duration,
    /// Custodians asked at once.
    pub concurrency: usize,
}

/// The federation part of a gateway: its organisation, the key it signs its requests with, and
/// the client it asks the other members' gateways with.
#[derive(Debug)]
pub struct Federation {
    org: Address,
    key: PrivateKeySigner,
    domain: Eip712Domain,
    peers: PeerClient,
    settings: FederationSettings,
    directory: directory::DirectoryCache,
    /// Users' sign-ins already checked (EOA signatures: keccak of text and signature).
    sessions: std::sync::Mutex<std::collections::HashSet<B256>>,
}

impl Federation {
    /// The federation of a gateway serving `org`, signing with its service `key`.
    pub fn new(
        org: Address,
        key: PrivateKeySigner,
        domain: Eip712Domain,
        trust: &Trust,
        policy: PeerPolicy,
        settings: FederationSettings,
    ) -> Result<Self, carechain_tls::TlsError> {
        Ok(Self {
            org,
            key,
            domain,
            peers: PeerClient::new(trust, policy, settings.timeout)?,
            settings,
            directory: directory::DirectoryCache::default(),
            sessions: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The directory, with lookups remembered while the index announces no change.
    pub fn directory(&self) -> &directory::DirectoryCache {
        &self.directory
    }

    /// Whether this (EOA-signed) sign-in was checked before.
    fn session_known(&self, id: B256) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    /// Remembers a checked sign-in (at most 10,000; beyond, the set starts over).
    fn remember_session(&self, id: B256) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= 10_000 {
            sessions.clear();
        }
        sessions.insert(id);
    }

    /// This gateway's organisation.
    pub fn org(&self) -> Address {
        self.org
    }

    /// The EIP-712 domain of federated requests.
    pub fn domain(&self) -> &Eip712Domain {
        &self.domain
    }

    /// The limits.
    pub fn settings(&self) -> FederationSettings {
        self.settings
    }
}

/// The statement and resources a sign-in at this gateway should carry: with a federation, a
/// capability to read at every active member with a published endpoint (so this gateway can
/// ask them for the user); otherwise the plain statement.
pub async fn sign_in_offer(state: &crate::AppState) -> (String, Vec<String>) {
    let chain_id = state.chain().chain_id();
    let targets: Vec<String> = match state.federation() {
        None => Vec::new(),
        Some(fed) => match fed
            .directory()
            .custodians(state.pool(), chain_id, state.consent().change_generation())
            .await
        {
            Ok(list) => list
                .iter()
                .map(|c| capability::target(chain_id, c.org))
                .collect(),
            Err(err) => {
                tracing::warn!(%err, "directory unavailable: sign-in offered without a capability");
                Vec::new()
            }
        },
    };
    capability::offer(&targets)
}

/// Which custodian an answer (or its failure) came from, for an `OperationOutcome` entry.
fn outcome_entry(
    custodian: &directory::Custodian,
    severity: &str,
    code: &str,
    what: &str,
) -> serde_json::Value {
    let mut outcome = crate::error::operation_outcome(
        severity,
        code,
        &format!(
            "{} ({}, {:#x}): {what}",
            custodian.name, custodian.url, custodian.org
        ),
    );
    outcome["issue"][0]["expression"] = serde_json::json!([custodian.url]);
    serde_json::json!({"resource": outcome, "search": {"mode": "outcome"}})
}

/// A failure of one custodian, as the initiating gateway reports it.
#[derive(Debug, Clone)]
enum SourceError {
    /// Not reached, or no answer within the time limit.
    Unavailable(String),
    /// It answered with an error status.
    Refused(u16, String),
}

impl SourceError {
    fn entry(&self, custodian: &directory::Custodian) -> serde_json::Value {
        match self {
            Self::Unavailable(why) => outcome_entry(
                custodian,
                "warning",
                "transient",
                &format!("no answer ({why}); its records are missing from this result"),
            ),
            Self::Refused(status, why) => outcome_entry(
                custodian,
                "warning",
                if *status == 403 {
                    "forbidden"
                } else {
                    "exception"
                },
                &format!(
                    "refused the request (HTTP {status}: {why}); its records are missing from this result"
                ),
            ),
        }
    }
}

impl From<AppError> for SourceError {
    fn from(err: AppError) -> Self {
        Self::Unavailable(err.to_string())
    }
}
