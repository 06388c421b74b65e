//! Gas-free consent: a patient or delegate signs an EIP-712 `Grant` or `Revoke`, or the patient
//! appoints or removes a delegate (`SetDelegate`, `SetProxy`, `RemoveDelegate`), in any wallet
//! with `eth_signTypedData_v4` (the typed data is `carechain_contracts::typed_data`'s, the one
//! definition), and the gateway submits it with its own funded key.
//!
//! Nothing is sent before the submission has been checked: the typed data must be bound to
//! this chain and this ConsentRegistry, its deadline must lie ahead, its nonce must be the
//! patient's current one, the signature must recover to the signer (or be accepted by the
//! signer contract, ERC-1271), and the call is simulated (`eth_call`) so that any other revert
//! is refused with the contract's own error before gas is spent. Valid submissions are
//! rate-limited per patient and recorded in `relay_submissions` before sending, so a failure is retried and
//! then reported with its row, never lost silently.

use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, Signature, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
pub use carechain_contracts::typed_data::{DOMAIN_NAME, DOMAIN_VERSION};
use carechain_contracts::{
    ConsentRegistry::{self, ConsentRegistryErrors},
    DelegateKind,
    typed_data::{ClaimedDomain, ConsentDomain, ConsentMessage, TypedDataError},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::{
    collections::{HashMap, VecDeque},
    str::FromStr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Why a submission was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The body is not a signed grant or revocation.
    #[error("{0}")]
    Invalid(String),
    /// The signature was made for another chain or contract.
    #[error("{0}")]
    WrongDomain(String),
    /// The deadline has passed.
    #[error("the signature's deadline {0} has passed; sign again with a later deadline")]
    Expired(u64),
    /// The nonce is not the patient's current one (already used, or cancelled).
    #[error(
        "nonce {signed} is not the patient's current nonce {current}: the signature was already used or cancelled; sign again"
    )]
    StaleNonce {
        /// The nonce in the signed message.
        signed: U256,
        /// The patient's nonce on chain.
        current: U256,
    },
    /// The signature does not come from the signer.
    #[error("{0}")]
    BadSignature(String),
    /// The contract would revert: nothing was sent.
    #[error("the ConsentRegistry refuses this submission ({0}); nothing was sent")]
    WouldRevert(String),
    /// Too many submissions for this patient.
    #[error("too many consent submissions for this patient; try again in {0} s")]
    RateLimited(u64),
    /// The chain could not be reached or the transaction failed after sending.
    #[error("{0}")]
    Chain(String),
    /// The submission table failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A submission as received: the typed data a wallet signed, its signature, and the signer
/// when it is not the address the signature recovers to (a contract wallet).
#[derive(Debug, Clone)]
pub struct Submission {
    /// The decoded message.
    pub consent: ConsentMessage,
    /// The 65-byte signature (or a contract wallet's signature bytes).
    pub signature: Bytes,
    /// The signer named by the submitter, if any.
    pub signer: Option<Address>,
    /// The domain the typed data names.
    pub claimed: ClaimedDomain,
}

/// The answer to an accepted submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Row id in `relay_submissions`.
    pub id: i64,
    /// What was submitted.
    pub kind: &'static str,
    /// The patient.
    pub patient: Address,
    /// The signer (patient or delegate).
    pub signer: Address,
    /// The transaction.
    pub tx_hash: B256,
    /// The block it was mined in.
    pub block: u64,
}

/// The kind recorded for a submission (`relay_submissions.kind`) and answered to the client.
fn kind(message: &ConsentMessage) -> &'static str {
    match message {
        ConsentMessage::Grant(_) => "grant",
        ConsentMessage::Revoke(_) => "revoke",
        ConsentMessage::SetDelegate(_) => "set-delegate",
        ConsentMessage::SetProxy(_) => "set-proxy",
        ConsentMessage::RemoveDelegate(_) => "remove-delegate",
    }
}

impl Submission {
    /// Parses `{"typedData": <eth_signTypedData_v4 object>, "signature": "0x..", "signer"?}`.
    pub fn from_json(body: &Value) -> Result<Self, RelayError> {
        let typed = body.get("typedData").ok_or_else(|| {
            RelayError::Invalid("`typedData` (the signed EIP-712 typed data) is required".into())
        })?;
        let signature = body
            .get("signature")
            .and_then(Value::as_str)
            .and_then(|s| alloy::hex::decode(s).ok())
            .ok_or_else(|| RelayError::Invalid("`signature` (0x hex) is required".into()))?;
        let signer = match body.get("signer") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(|s| Address::from_str(s).ok())
                    .ok_or_else(|| RelayError::Invalid("`signer` must be an address".into()))?,
            ),
        };
        let (consent, claimed) = ConsentMessage::from_wallet_json(typed).map_err(|err| {
            RelayError::Invalid(match err {
                TypedDataError::UnknownType(_) => {
                    "typedData.primaryType must be Grant, Revoke, SetDelegate, SetProxy or RemoveDelegate".into()
                }
                other => other.to_string(),
            })
        })?;
        Ok(Self {
            consent,
            signature: signature.into(),
            signer,
            claimed,
        })
    }
}

/// Submissions per patient within a sliding window.
#[derive(Debug)]
struct RateLimiter {
    limit: usize,
    window: Duration,
    seen: Mutex<HashMap<Address, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Counts a submission for `patient`, or says how many seconds to wait.
    fn admit(&self, patient: Address) -> Result<(), u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            // Bounded memory: forget patients whose window has passed.
            seen.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let times = seen.entry(patient).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.limit {
            let oldest = times.front().copied().unwrap_or(now);
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        times.push_back(now);
        Ok(())
    }
}

/// The gas-free submitter.
pub struct Relay {
    provider: DynProvider,
    relayer: Address,
    registry: Address,
    domain: ConsentDomain,
    chain_id: u64,
    pool: PgPool,
    limiter: RateLimiter,
    timeout: Duration,
    /// One submission at a time from the relay key (nonce order).
    send_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("relayer", &self.relayer)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

fn chain_err(err: impl std::fmt::Display) -> RelayError {
    RelayError::Chain(format!("the chain could not be reached: {err}"))
}

/// The contract's custom error in plain words, for an OperationOutcome.
fn revert_reason(err: &alloy::contract::Error) -> String {
    err.as_revert_data()
        .and_then(|data| {
            carechain_contracts::revert::explain(&data, &carechain_contracts::revert::no_names)
        })
        .unwrap_or_else(|| err.to_string())
}

impl Relay {
    /// A relay sending from `key` to the ConsentRegistry at `registry` on `chain_id`.
    pub fn new(
        rpc: &carechain_tls::RpcEndpoint,
        key: &str,
        registry: Address,
        chain_id: u64,
        pool: PgPool,
        per_patient_per_hour: u32,
        timeout: Duration,
    ) -> Result<Self, RelayError> {
        let signer: PrivateKeySigner = key
            .trim()
            .parse()
            .map_err(|_| RelayError::Invalid("the relay key is not a private key".into()))?;
        let relayer = signer.address();
        let client = rpc
            .client(timeout)
            .map_err(|err| RelayError::Invalid(err.to_string()))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_client(client)
            .erased();
        Ok(Self {
            provider,
            relayer,
            registry,
            domain: ConsentDomain {
                chain_id,
                verifying_contract: registry,
            },
            chain_id,
            pool,
            limiter: RateLimiter {
                limit: per_patient_per_hour.max(1) as usize,
                window: Duration::from_secs(3600),
                seen: Mutex::new(HashMap::new()),
            },
            timeout,
            send_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The address gas is paid from.
    pub fn relayer(&self) -> Address {
        self.relayer
    }

    /// The EIP-712 domain this relay accepts signatures under.
    pub fn domain(&self) -> &ConsentDomain {
        &self.domain
    }

    /// The patient's current signature nonce, which the next signed request must use.
    pub async fn nonce(&self, patient: Address) -> Result<U256, RelayError> {
        let registry = ConsentRegistry::new(self.registry, self.provider.clone());
        tokio::time::timeout(self.timeout, registry.nonces(patient).call())
            .await
            .map_err(|_| chain_err("timed out"))?
            .map_err(chain_err)
    }

    /// A transaction from the relay key to the ConsentRegistry carrying `input`.
    fn request(&self, input: Bytes) -> alloy::rpc::types::TransactionRequest {
        alloy::rpc::types::TransactionRequest::default()
            .from(self.relayer)
            .to(self.registry)
            .input(input.into())
    }

    fn check_domain(&self, claimed: &ClaimedDomain) -> Result<(), RelayError> {
        if claimed.name.as_deref() != Some(DOMAIN_NAME)
            || claimed.version.as_deref() != Some(DOMAIN_VERSION)
        {
            return Err(RelayError::WrongDomain(format!(
                "typedData.domain must name \"{DOMAIN_NAME}\" version \"{DOMAIN_VERSION}\""
            )));
        }
        if claimed.chain_id != Some(U256::from(self.chain_id)) {
            return Err(RelayError::WrongDomain(format!(
                "signed for chain {}, but this gateway submits to chain {}",
                claimed
                    .chain_id
                    .map_or_else(|| "(none)".to_owned(), |c| c.to_string()),
                self.chain_id
            )));
        }
        if claimed.verifying_contract != Some(self.registry) {
            return Err(RelayError::WrongDomain(format!(
                "signed for contract {}, but this gateway's ConsentRegistry is {:#x}",
                claimed
                    .verifying_contract
                    .map_or_else(|| "(none)".to_owned(), |a| format!("{a:#x}")),
                self.registry
            )));
        }
        Ok(())
    }

    /// Checks a submission without spending gas; returns the signer.
    pub async fn check(&self, sub: &Submission, now_unix: u64) -> Result<Address, RelayError> {
        self.check_domain(&sub.claimed)?;
        let consent = &sub.consent;
        if consent.patient_only() && sub.signer.is_some_and(|s| s != consent.patient()) {
            return Err(RelayError::BadSignature(
                "only the patient signs a change of their delegates".into(),
            ));
        }
        if consent.deadline() <= U256::from(now_unix) {
            return Err(RelayError::Expired(
                u64::try_from(consent.deadline()).unwrap_or(u64::MAX),
            ));
        }
        let hash = consent.signing_hash(&self.domain);
        let recovered = Signature::try_from(sub.signature.as_ref())
            .ok()
            .and_then(|sig| sig.recover_address_from_prehash(&hash).ok());
        let signer = match (sub.signer, recovered) {
            (Some(named), _) => named,
            (None, Some(recovered)) => recovered,
            (None, None) => {
                return Err(RelayError::BadSignature(
                    "the signature is not a 65-byte ECDSA signature; name the `signer` for a contract wallet".into(),
                ));
            }
        };
        let registry = ConsentRegistry::new(self.registry, self.provider.clone());
        let current = tokio::time::timeout(self.timeout, registry.nonces(consent.patient()).call())
            .await
            .map_err(|_| chain_err("timed out"))?
            .map_err(chain_err)?;
        if consent.nonce() != current {
            return Err(RelayError::StaleNonce {
                signed: consent.nonce(),
                current,
            });
        }
        // Simulate: a wrong signer, a high-s signature, an unauthorised delegate, a bad scope
        // or period all revert here with the contract's own error, before any gas is spent.
        let call = self.request(calldata(consent, signer, &sub.signature));
        let simulated = tokio::time::timeout(self.timeout, async {
            self.provider
                .call(call)
                .await
                .map(drop)
                .map_err(alloy::contract::Error::TransportError)
        })
        .await
        .map_err(|_| chain_err("timed out"))?;
        if let Err(err) = simulated {
            if err.as_revert_data().is_some() {
                let reason = revert_reason(&err);
                let decoded = err.as_decoded_interface_error::<ConsentRegistryErrors>();
                if matches!(
                    decoded,
                    Some(ConsentRegistryErrors::ConsentUnauthorizedActor(_))
                ) {
                    return Err(RelayError::BadSignature(format!(
                        "{signer:#x} signed, but is neither the patient nor an active delegate of the patient; nothing was sent"
                    )));
                }
                if matches!(
                    decoded,
                    Some(ConsentRegistryErrors::ConsentInvalidSignature(_))
                ) {
                    return Err(RelayError::BadSignature(format!(
                        "the signature does not come from {signer:#x}, or {signer:#x} is neither the patient nor an active delegate ({reason}); nothing was sent"
                    )));
                }
                return Err(RelayError::WouldRevert(reason));
            }
            return Err(chain_err(err));
        }
        Ok(signer)
    }

    /// Checks, records, sends and waits for the transaction. Transient RPC failures while
    /// sending are retried; whatever happens is written to the submission's row.
    pub async fn submit(&self, sub: &Submission, now_unix: u64) -> Result<Submitted, RelayError> {
        let patient = sub.consent.patient();
        // Only a submission that would be sent counts against the patient's allowance: a
        // stranger's invalid submissions naming the patient cannot use it up.
        let signer = self.check(sub, now_unix).await?;
        self.limiter
            .admit(patient)
            .map_err(RelayError::RateLimited)?;
        let digest = sub.consent.signing_hash(&self.domain);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO relay_submissions (chain_id, kind, patient, grantee, signer, digest, status) \
             VALUES ($1, $2, $3, $4, $5, $6, 'checked') RETURNING id",
        )
        .bind(i64::try_from(self.chain_id).unwrap_or(i64::MAX))
        .bind(kind(&sub.consent))
        .bind(patient.as_slice())
        .bind(sub.consent.counterparty().as_slice())
        .bind(signer.as_slice())
        .bind(digest.as_slice())
        .fetch_one(&self.pool)
        .await?;
        let outcome = self.send(sub, signer).await;
        let (status, tx, block, error) = match &outcome {
            Ok((tx, block)) => ("mined", Some(tx.to_vec()), Some(*block), None),
            Err((tx, err)) => (
                if tx.is_some() {
                    "failed-after-send"
                } else {
                    "not-sent"
                },
                tx.map(|t| t.to_vec()),
                None,
                Some(err.to_string()),
            ),
        };
        sqlx::query(
            "UPDATE relay_submissions SET status = $2, tx_hash = $3, block_number = $4, error = $5, \
             updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(tx)
        .bind(block.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
        .bind(error)
        .execute(&self.pool)
        .await?;
        match outcome {
            Ok((tx_hash, block)) => Ok(Submitted {
                id,
                kind: kind(&sub.consent),
                patient,
                signer,
                tx_hash,
                block,
            }),
            Err((tx, err)) => Err(RelayError::Chain(match tx {
                Some(tx) => format!("submission {id}: transaction {tx:#x} failed: {err}"),
                None => format!("submission {id} could not be sent: {err}"),
            })),
        }
    }

    /// Sends (retrying transient failures) and waits for the receipt.
    async fn send(
        &self,
        sub: &Submission,
        signer: Address,
    ) -> Result<(B256, u64), (Option<B256>, String)> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        let tx_hash = loop {
            attempt += 1;
            let sent = {
                let _guard = self.send_lock.lock().await;
                let pending = tokio::time::timeout(self.timeout, async {
                    self.provider
                        .send_transaction(self.request(calldata(
                            &sub.consent,
                            signer,
                            &sub.signature,
                        )))
                        .await
                        .map_err(alloy::contract::Error::TransportError)
                })
                .await;
                match pending {
                    Ok(Ok(pending)) => Ok(*pending.tx_hash()),
                    Ok(Err(err)) if err.as_revert_data().is_some() => {
                        // Raced with another submission of the same signature: not transient.
                        return Err((None, revert_reason(&err)));
                    }
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            };
            match sent {
                Ok(hash) => break hash,
                Err(err) if attempt >= 3 => return Err((None, err)),
                Err(err) => {
                    tracing::warn!(attempt, error = %err, "consent relay: sending failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        };
        let wait = async {
            let mut delay = Duration::from_millis(5);
            loop {
                match self.provider.get_transaction_receipt(tx_hash).await {
                    Ok(Some(receipt)) => {
                        return if receipt.status() {
                            Ok((tx_hash, receipt.block_number.unwrap_or_default()))
                        } else {
                            Err((Some(tx_hash), "reverted".to_owned()))
                        };
                    }
                    Ok(None) => {}
                    Err(err) => tracing::warn!(error = %err, "consent relay: receipt poll failed"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        };
        tokio::time::timeout(self.timeout * 12, wait)
            .await
            .unwrap_or_else(|_| {
                Err((
                    Some(tx_hash),
                    "no receipt yet; it may still be mined: look it up by its hash".to_owned(),
                ))
            })
    }
}

/// The relationship words a `SetDelegate` may sign, and the kinds they appoint.
fn relationship(word: &str) -> Option<DelegateKind> {
    match word {
        "guardian" => Some(DelegateKind::Guardian),
        "caregiver" => Some(DelegateKind::Caregiver),
        _ => None,
    }
}

/// The calldata of the submission's `...BySig` function: what is simulated, then sent.
fn calldata(message: &ConsentMessage, signer: Address, signature: &Bytes) -> Bytes {
    use ConsentRegistry::{
        grantBySigCall, removeDelegateBySigCall, revokeBySigCall, setDelegateBySigCall,
        setProxyBySigCall,
    };
    use alloy::sol_types::SolCall;
    let signature = signature.clone();
    match message {
        ConsentMessage::Grant(g) => grantBySigCall {
            request: g.clone(),
            signer,
            signature,
        }
        .abi_encode(),
        ConsentMessage::Revoke(r) => revokeBySigCall {
            patient: r.patient,
            grantee: r.grantee,
            nonce: r.nonce,
            deadline: r.deadline,
            signer,
            signature,
        }
        .abi_encode(),
        ConsentMessage::SetDelegate(d) => setDelegateBySigCall {
            patient: d.patient,
            delegate: d.delegate,
            kind: relationship(&d.relationship).map_or(0, u8::from),
            validUntil: d.validUntil,
            nonce: d.nonce,
            deadline: d.deadline,
            signature,
        }
        .abi_encode(),
        ConsentMessage::SetProxy(p) => setProxyBySigCall {
            patient: p.patient,
            delegate: p.proxy,
            validUntil: p.validUntil,
            resourceTypes: p.resourceTypes,
            actions: p.actions,
            purposes: p.purposes,
            nonce: p.nonce,
            deadline: p.deadline,
            signature,
        }
        .abi_encode(),
        ConsentMessage::RemoveDelegate(d) => removeDelegateBySigCall {
            patient: d.patient,
            delegate: d.delegate,
            nonce: d.nonce,
            deadline: d.deadline,
            signature,
        }
        .abi_encode(),
    }
    .into()
}

/// The JSON answer for an accepted submission.
pub fn submitted_json(s: &Submitted) -> Value {
    json!({
        "submission": s.id,
        "kind": s.kind,
        "patient": format!("{:#x}", s.patient),
        "signer": format!("{:#x}", s.signer),
        "transactionHash": format!("{:#x}", s.tx_hash),
        "blockNumber": s.block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_per_patient() {
        let limiter = RateLimiter {
            limit: 2,
            window: Duration::from_secs(3600),
            seen: Mutex::new(HashMap::new()),
        };
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        assert!(limiter.admit(a).is_ok());
        assert!(limiter.admit(a).is_ok());
        assert!(limiter.admit(a).is_err());
        assert!(limiter.admit(b).is_ok());
    }
}
