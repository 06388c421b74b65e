//! The gateway's view of the chain: consent decisions, membership, record anchors, and the
//! custodians' service keys that anchor new record versions.
//!
//! The integrity check of a read asks RecordRegistry whether the version's hash (or its batch
//! root) is anchored for the custodian. Anchors are immutable, so one found at the `finalized`
//! block is remembered in memory (never in the database, which the check distrusts) and not
//! asked again; a younger anchor is asked at `latest` on every read until it is final.

use alloy::{
    eips::BlockId,
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, FixedBytes},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
    sol,
};
use carechain_contracts::{
    Action, Basis, ConsentRegistry, ContractAddresses, ProviderRegistry, Purpose, RecordRegistry,
    ResourceType, Status,
};
use std::{collections::HashMap, future::Future, time::Duration};

sol! {
    /// ERC-1271: signature validation by contract wallets.
    #[sol(rpc)]
    interface IERC1271 {
        /// Returns `0x1626ba7e` when `signature` is valid for `hash`.
        function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4 magicValue);
    }
}

/// ERC-1271's magic value for a valid signature.
const ERC1271_MAGIC: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

/// Why a chain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The JSON-RPC endpoint failed or answered an error.
    #[error("chain RPC failed: {0}")]
    Rpc(String),
    /// The call did not finish in time.
    #[error("chain call timed out")]
    Timeout,
    /// A transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(B256),
    /// The contract answered a value outside its documented range.
    #[error("unexpected contract answer: {0}")]
    Unexpected(String),
    /// A configured service key is not a valid private key.
    #[error("invalid service key for organisation {0}")]
    InvalidKey(String),
}

fn rpc(err: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(err.to_string())
}

/// Membership of an address in the provider registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// An active key of an active organisation.
    Active {
        /// The key's organisation.
        org: Address,
    },
    /// A registered key whose key or organisation is not active.
    Inactive {
        /// The key's status.
        status: Status,
    },
    /// Not a member key: a patient or delegate wallet.
    NotMember,
}

/// A custodian's service key: the member key its record versions are anchored with.
#[derive(Clone)]
pub struct ServiceKey {
    /// The key's address (the sender of its anchoring transactions).
    pub address: Address,
    /// The signer, used locally: a transaction's hash is known (and recorded) before it is sent.
    pub wallet: EthereumWallet,
    /// The same key, for what the gateway signs that is not a transaction (its requests to the
    /// other members' gateways).
    pub signer: PrivateKeySigner,
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKey")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// What the node answered to a raw transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted into the pool (or already there: the same signed transaction was sent before).
    Accepted,
    /// The nonce is already used by a mined transaction.
    NonceUsed,
    /// A transaction with the same nonce is pending and this one does not pay enough more.
    Underpriced,
}

/// A mined transaction's receipt, as far as the anchoring needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    /// Whether it succeeded.
    pub success: bool,
    /// Its block.
    pub block: u64,
    /// Gas it used.
    pub gas_used: u64,
}

/// A chain client bound to the deployed contracts.
pub struct ChainClient {
    provider: DynProvider,
    contracts: ContractAddresses,
    chain_id: u64,
    service_keys: HashMap<Address, ServiceKey>,
    timeout: Duration,
    /// Set once the endpoint has confirmed it serves `chain_id`.
    chain_id_checked: std::sync::atomic::AtomicBool,
    /// JSON-RPC requests made so far (every call through [`Self::timed`]).
    requests: std::sync::atomic::AtomicU64,
    /// Anchors (single version hashes and batch roots, per organisation) found at the
    /// `finalized` block: RecordRegistry never removes an anchor and no reorg reaches below
    /// finality, so they are never asked again.
    finalized_anchors: std::sync::RwLock<std::collections::HashSet<(AnchorKind, B256, Address)>>,
}

/// Which kind of anchor a cached verification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AnchorKind {
    Single,
    BatchRoot,
}

/// Most finalized anchors remembered (cleared when full; each entry is 56 bytes).
const FINALIZED_ANCHOR_CAPACITY: usize = 1_000_000;

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("chain_id", &self.chain_id)
            .field("custodians", &self.service_keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ChainClient {
    /// Connects to `endpoint`; `service_keys` maps custodian organisations to hex private keys.
    pub fn new(
        endpoint: &carechain_tls::RpcEndpoint,
        contracts: ContractAddresses,
        chain_id: u64,
        service_keys: &[(Address, String)],
        timeout: Duration,
    ) -> Result<Self, ChainError> {
        // One HTTP client (and connection pool) for reads and every custodian's sends.
        let client = endpoint.client(timeout).map_err(rpc)?;
        let provider = ProviderBuilder::new()
            .connect_client(client.clone())
            .erased();
        let mut keys = HashMap::new();
        for (org, key) in service_keys {
            let signer: PrivateKeySigner = key
                .trim()
                .parse()
                .map_err(|_| ChainError::InvalidKey(org.to_string()))?;
            keys.insert(
                *org,
                ServiceKey {
                    address: signer.address(),
                    wallet: EthereumWallet::from(signer.clone()),
                    signer,
                },
            );
        }
        Ok(Self {
            provider,
            contracts,
            chain_id,
            service_keys: keys,
            timeout,
            chain_id_checked: std::sync::atomic::AtomicBool::new(false),
            requests: std::sync::atomic::AtomicU64::new(0),
            finalized_anchors: std::sync::RwLock::new(std::collections::HashSet::new()),
        })
    }

    /// The chain id the gateway serves.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The deployed contracts.
    pub fn contracts(&self) -> &ContractAddresses {
        &self.contracts
    }

    /// The configured custodian organisations.
    pub fn custodians(&self) -> impl Iterator<Item = &Address> {
        self.service_keys.keys()
    }

    /// The service key of custodian `org`, when the gateway holds it.
    pub fn service_key(&self, org: Address) -> Option<&ServiceKey> {
        self.service_keys.get(&org)
    }

    /// How many JSON-RPC requests this client has made: consent decisions and membership
    /// reads (`eth_call`), anchor checks not answered from memory, the health probe's
    /// `eth_blockNumber`, anchoring transactions.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn timed<T>(
        &self,
        fut: impl Future<Output = Result<T, ChainError>>,
    ) -> Result<T, ChainError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ChainError::Timeout)?
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.timed(async { self.provider.get_block_number().await.map_err(rpc) })
            .await
    }

    /// The latest block number, after confirming (once) that the endpoint serves the chain of
    /// the deployment manifest: an endpoint for another chain must not answer consent.
    pub async fn head_checked(&self) -> Result<u64, ChainError> {
        use std::sync::atomic::Ordering;
        if !self.chain_id_checked.load(Ordering::Acquire) {
            let id = self
                .timed(async { self.provider.get_chain_id().await.map_err(rpc) })
                .await?;
            if id != self.chain_id {
                return Err(ChainError::Unexpected(format!(
                    "the RPC endpoint serves chain {id}, the manifest names chain {}",
                    self.chain_id
                )));
            }
            self.chain_id_checked.store(true, Ordering::Release);
        }
        self.head().await
    }

    /// `ConsentRegistry.decide` evaluated at `block`: allowed, why, and until when (unix
    /// seconds) that answer holds by time alone (`u64::from(u40::MAX)` when time changes nothing).
    pub async fn decide(
        &self,
        patient: Address,
        requester: Address,
        resource_type: ResourceType,
        action: Action,
        purpose: Purpose,
        block: u64,
    ) -> Result<(bool, Basis, u64), ChainError> {
        let registry = ConsentRegistry::new(self.contracts.consent_registry, &self.provider);
        let answer = self
            .timed(async {
                registry
                    .decide(
                        patient,
                        requester,
                        resource_type.index(),
                        action.index(),
                        purpose.index(),
                    )
                    .block(BlockId::number(block))
                    .call()
                    .await
                    .map_err(rpc)
            })
            .await?;
        let basis =
            Basis::try_from(answer.basis).map_err(|e| ChainError::Unexpected(e.to_string()))?;
        Ok((answer.allowed, basis, answer.until.to::<u64>()))
    }

    /// Membership of `account`.
    pub async fn membership(&self, account: Address) -> Result<Membership, ChainError> {
        let registry = ProviderRegistry::new(self.contracts.provider_registry, &self.provider);
        let member = self
            .timed(async { registry.member(account).call().await.map_err(rpc) })
            .await?;
        let status =
            Status::try_from(member.status).map_err(|e| ChainError::Unexpected(e.to_string()))?;
        if status == Status::None {
            return Ok(Membership::NotMember);
        }
        let active = self
            .timed(async {
                registry
                    .activeOrganisationOf(account)
                    .call()
                    .await
                    .map_err(rpc)
            })
            .await?;
        if active.org.is_zero() {
            let org = self
                .timed(async { registry.organisation(member.org).call().await.map_err(rpc) })
                .await?;
            let org_status =
                Status::try_from(org.status).map_err(|e| ChainError::Unexpected(e.to_string()))?;
            let status = if status == Status::Active {
                org_status
            } else {
                status
            };
            Ok(Membership::Inactive { status })
        } else {
            Ok(Membership::Active { org: active.org })
        }
    }

    /// The active organisation of the member key `account` and its kind, at `block`; `None`
    /// when the key or its organisation is not active.
    pub async fn active_organisation(
        &self,
        account: Address,
        block: u64,
    ) -> Result<Option<(Address, carechain_contracts::OrgKind)>, ChainError> {
        let registry = ProviderRegistry::new(self.contracts.provider_registry, &self.provider);
        let active = self
            .timed(async {
                registry
                    .activeOrganisationOf(account)
                    .block(BlockId::number(block))
                    .call()
                    .await
                    .map_err(rpc)
            })
            .await?;
        if active.org.is_zero() {
            return Ok(None);
        }
        let kind = carechain_contracts::OrgKind::try_from(active.kind)
            .map_err(|e| ChainError::Unexpected(e.to_string()))?;
        Ok(Some((active.org, kind)))
    }

    /// Whether `account` has contract code (a contract wallet).
    pub async fn is_contract(&self, account: Address) -> Result<bool, ChainError> {
        let code = self
            .timed(async { self.provider.get_code_at(account).await.map_err(rpc) })
            .await?;
        Ok(!code.is_empty())
    }

    /// ERC-1271 check of `signature` over `hash` by the contract wallet `account`.
    pub async fn erc1271_valid(
        &self,
        account: Address,
        hash: B256,
        signature: Bytes,
    ) -> Result<bool, ChainError> {
        let wallet = IERC1271::new(account, &self.provider);
        let answer = self
            .timed(async { Ok(wallet.isValidSignature(hash, signature).call().await) })
            .await?;
        // A revert or a malformed answer means "not valid", not "chain down".
        Ok(matches!(answer, Ok(magic) if magic == FixedBytes(ERC1271_MAGIC)))
    }

    fn finalized_anchor_known(&self, kind: AnchorKind, value: B256, org: Address) -> bool {
        self.finalized_anchors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(kind, value, org))
    }

    fn remember_finalized_anchor(&self, kind: AnchorKind, value: B256, org: Address) {
        let mut known = self
            .finalized_anchors
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if known.len() >= FINALIZED_ANCHOR_CAPACITY {
            known.clear();
        }
        known.insert((kind, value, org));
    }

    /// Whether `hash` is anchored singly for `org`. An anchor already seen at the finalized
    /// block is answered from memory; otherwise the registry is asked at `finalized` (and the
    /// answer remembered when yes), then at `latest` for an anchor younger than finality.
    pub async fn verify_anchor(&self, hash: B256, org: Address) -> Result<bool, ChainError> {
        if self.finalized_anchor_known(AnchorKind::Single, hash, org) {
            return Ok(true);
        }
        let registry = RecordRegistry::new(self.contracts.record_registry, &self.provider);
        // A chain without a `finalized` tag (an error here) is asked at `latest` only; if the
        // endpoint is down, that call fails too.
        let at_finalized = self
            .timed(async {
                registry
                    .verifyAnchor(hash, org)
                    .block(BlockId::finalized())
                    .call()
                    .await
                    .map_err(rpc)
            })
            .await;
        if matches!(at_finalized, Ok(true)) {
            self.remember_finalized_anchor(AnchorKind::Single, hash, org);
            return Ok(true);
        }
        self.timed(async { registry.verifyAnchor(hash, org).call().await.map_err(rpc) })
            .await
    }

    /// Whether `hash` is included by `proof` in a batch root anchored for `org`. The proof is
    /// checked here (the same tree as the contract's); the root's anchor as for
    /// [`ChainClient::verify_anchor`].
    pub async fn verify_inclusion(
        &self,
        hash: B256,
        root: B256,
        proof: Vec<B256>,
        org: Address,
    ) -> Result<bool, ChainError> {
        if !carechain_contracts::merkle::verify(hash, &proof, root) {
            return Ok(false);
        }
        if self.finalized_anchor_known(AnchorKind::BatchRoot, root, org) {
            return Ok(true);
        }
        let registry = RecordRegistry::new(self.contracts.record_registry, &self.provider);
        let at = |block: BlockId| {
            let registry = &registry;
            let proof = proof.clone();
            async move {
                registry
                    .verifyInclusion(hash, root, proof, org)
                    .block(block)
                    .call()
                    .await
                    .map_err(rpc)
            }
        };
        if matches!(self.timed(at(BlockId::finalized())).await, Ok(true)) {
            self.remember_finalized_anchor(AnchorKind::BatchRoot, root, org);
            return Ok(true);
        }
        self.timed(at(BlockId::latest())).await
    }

    /// The transaction count of `account`: mined only (`latest`), or with the node's pool.
    pub async fn nonce(&self, account: Address, with_pool: bool) -> Result<u64, ChainError> {
        self.timed(async {
            let call = self.provider.get_transaction_count(account);
            if with_pool {
                call.pending().await
            } else {
                call.latest().await
            }
            .map_err(rpc)
        })
        .await
    }

    /// The node's suggested EIP-1559 fees per gas: (max fee, priority fee).
    pub async fn fees(&self) -> Result<(u128, u128), ChainError> {
        let estimate = self
            .timed(async { self.provider.estimate_eip1559_fees().await.map_err(rpc) })
            .await?;
        Ok((estimate.max_fee_per_gas, estimate.max_priority_fee_per_gas))
    }

    /// `RecordRegistry.anchorBatch(root, count)` signed by `key` at `nonce` with `fees`
    /// (max fee, priority fee) and a gas limit of `gas`: its hash and the raw transaction. Signed
    /// here, so that the hash can be recorded before anything is sent.
    pub async fn sign_anchor_batch(
        &self,
        key: &ServiceKey,
        (root, count): (B256, u32),
        nonce: u64,
        fees: (u128, u128),
        gas: u64,
    ) -> Result<(B256, Bytes), ChainError> {
        use alloy::{
            eips::eip2718::Encodable2718,
            network::{NetworkTransactionBuilder, TransactionBuilder},
        };
        let registry = RecordRegistry::new(self.contracts.record_registry, &self.provider);
        let envelope = registry
            .anchorBatch(root, count)
            .into_transaction_request()
            .with_from(key.address)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            .with_gas_limit(gas)
            .with_max_fee_per_gas(fees.0)
            .with_max_priority_fee_per_gas(fees.1)
            .build(&key.wallet)
            .await
            .map_err(rpc)?;
        Ok((*envelope.tx_hash(), envelope.encoded_2718().into()))
    }

    /// Sends a signed transaction; the node's refusals that the sender acts on are answered as
    /// a [`SendOutcome`], anything else is an error.
    pub async fn send_raw(&self, raw: &Bytes) -> Result<SendOutcome, ChainError> {
        let sent = self
            .timed(async { Ok(self.provider.send_raw_transaction(raw).await) })
            .await?;
        let Err(err) = sent else {
            return Ok(SendOutcome::Accepted);
        };
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("already known") || text.contains("already imported") {
            Ok(SendOutcome::Accepted)
        } else if text.contains("nonce too low") || text.contains("nonce has already been used") {
            Ok(SendOutcome::NonceUsed)
        } else if text.contains("underpriced") {
            Ok(SendOutcome::Underpriced)
        } else {
            Err(rpc(err))
        }
    }

    /// The receipt of `tx_hash`, once mined.
    pub async fn mined(&self, tx_hash: B256) -> Result<Option<Mined>, ChainError> {
        let receipt = self
            .timed(async {
                self.provider
                    .get_transaction_receipt(tx_hash)
                    .await
                    .map_err(rpc)
            })
            .await?;
        Ok(receipt.map(|r| Mined {
            success: r.status(),
            block: r.block_number.unwrap_or_default(),
            gas_used: r.gas_used,
        }))
    }

    /// Whether the node knows `tx_hash` at all (pooled or mined): a dropped transaction is not.
    pub async fn is_known(&self, tx_hash: B256) -> Result<bool, ChainError> {
        let found = self
            .timed(async {
                self.provider
                    .get_transaction_by_hash(tx_hash)
                    .await
                    .map_err(rpc)
            })
            .await?;
        Ok(found.is_some())
    }

    /// Whether the batch `root` is anchored for `org` at the head.
    pub async fn batch_anchored(&self, root: B256, org: Address) -> Result<bool, ChainError> {
        self.batch_anchored_at(root, org, BlockId::latest()).await
    }

    /// Whether the batch `root` is anchored for `org` at `block`.
    pub async fn batch_anchored_at(
        &self,
        root: B256,
        org: Address,
        block: BlockId,
    ) -> Result<bool, ChainError> {
        let registry = RecordRegistry::new(self.contracts.record_registry, &self.provider);
        let entry = self
            .timed(async {
                registry
                    .batchOf(root, org)
                    .block(block)
                    .call()
                    .await
                    .map_err(rpc)
            })
            .await?;
        Ok(entry.org == org && !org.is_zero())
    }

    /// The number of the chain's `finalized` block (`None` when the node has no such tag).
    pub async fn finalized(&self) -> Result<Option<u64>, ChainError> {
        let block = self
            .timed(async {
                Ok(self
                    .provider
                    .get_block_by_number(alloy::eips::BlockNumberOrTag::Finalized)
                    .await)
            })
            .await?;
        Ok(block.ok().flatten().map(|b| b.header.number))
    }
}
