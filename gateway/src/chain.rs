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
    /// The gateway holds no service key for the custodian organisation.
    #[error("no service key is configured for custodian organisation {0}")]
    NoServiceKey(Address),
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

struct Anchorer {
    provider: DynProvider,
    /// Serialises nonce assignment for this key.
    send_lock: tokio::sync::Mutex<()>,
}

/// A chain client bound to the deployed contracts.
pub struct ChainClient {
    provider: DynProvider,
    contracts: ContractAddresses,
    chain_id: u64,
    anchorers: HashMap<Address, Anchorer>,
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
            .field("custodians", &self.anchorers.keys().collect::<Vec<_>>())
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
        let mut anchorers = HashMap::new();
        for (org, key) in service_keys {
            let signer: PrivateKeySigner = key
                .trim()
                .parse()
                .map_err(|_| ChainError::InvalidKey(org.to_string()))?;
            let provider = ProviderBuilder::new()
                .wallet(EthereumWallet::from(signer))
                .connect_client(client.clone())
                .erased();
            anchorers.insert(
                *org,
                Anchorer {
                    provider,
                    send_lock: tokio::sync::Mutex::new(()),
                },
            );
        }
        Ok(Self {
            provider,
            contracts,
            chain_id,
            anchorers,
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

    /// The configured custodian organisations.
    pub fn custodians(&self) -> impl Iterator<Item = &Address> {
        self.anchorers.keys()
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

    /// Anchors one version hash for `org` with its service key; returns the block.
    pub async fn anchor(&self, org: Address, hash: B256) -> Result<u64, ChainError> {
        let anchorer = self
            .anchorers
            .get(&org)
            .ok_or(ChainError::NoServiceKey(org))?;
        let registry = RecordRegistry::new(self.contracts.record_registry, &anchorer.provider);
        let tx_hash = {
            let _guard = anchorer.send_lock.lock().await;
            self.timed(async { registry.anchor(hash).send().await.map_err(rpc) })
                .await?
                .tx_hash()
                .to_owned()
        };
        self.wait_receipt(&anchorer.provider, tx_hash).await
    }

    /// Anchors a Merkle root over `count` version hashes for `org`; returns the block.
    pub async fn anchor_batch(
        &self,
        org: Address,
        root: B256,
        count: u32,
    ) -> Result<u64, ChainError> {
        let anchorer = self
            .anchorers
            .get(&org)
            .ok_or(ChainError::NoServiceKey(org))?;
        let registry = RecordRegistry::new(self.contracts.record_registry, &anchorer.provider);
        let tx_hash = {
            let _guard = anchorer.send_lock.lock().await;
            self.timed(async { registry.anchorBatch(root, count).send().await.map_err(rpc) })
                .await?
                .tx_hash()
                .to_owned()
        };
        self.wait_receipt(&anchorer.provider, tx_hash).await
    }

    async fn wait_receipt(&self, provider: &DynProvider, tx_hash: B256) -> Result<u64, ChainError> {
        // Poll briefly ourselves: the default watcher's interval is far longer than a block on a
        // local or consortium chain.
        let poll = async {
            let mut delay = Duration::from_millis(2);
            loop {
                if let Some(receipt) = provider
                    .get_transaction_receipt(tx_hash)
                    .await
                    .map_err(rpc)?
                {
                    if !receipt.status() {
                        return Err(ChainError::Reverted(tx_hash));
                    }
                    return Ok(receipt.block_number.unwrap_or_default());
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
        };
        tokio::time::timeout(self.timeout * 4, poll)
            .await
            .map_err(|_| ChainError::Timeout)?
    }
}
