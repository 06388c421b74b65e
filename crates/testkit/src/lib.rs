//! The test kit of carechain's Rust suites (the indexer's, the gateway's, the CLI's and the
//! end-to-end tests): one home for what each of them needs to stand up a piece of the stack.
//!
//! - **Places** ([`repo_root`], [`anvil_bin`], [`forge_bin`], [`cast_bin`], [`TempDir`],
//!   [`unique_name`], [`free_port`], [`port_open`]): where the repository and the Foundry
//!   binaries are, and private directories, names and ports.
//! - **Waiting and serving** ([`eventually`], [`BackgroundServer`], [`TcpProxy`],
//!   [`SeededRng`]): polling for a condition, a server task with graceful shutdown, a TCP
//!   forwarder that can be taken down to simulate an outage, replayable randomness.
//! - **Chain** (feature `chain`): [`Anvil`] (a private anvil on a free port, stopped on drop,
//!   with mining and reorg helpers), [`Deployment`] (the contracts deployed by
//!   `contracts/script/Deploy.s.sol`, serialised by [`forge_lock`]), [`TestChain`] (both, with a
//!   governance signer: funded wallets, organisations, member keys, [`Custodian`]s), anvil's
//!   [`DEV_KEYS`].
//! - **PostgreSQL** (feature `postgres`): [`TestDb`], a fresh database on the server of
//!   `DATABASE_URL`.
//! - **Stack pieces** (feature `indexer`): [`TestIndexer`], the real indexer in process against
//!   a test chain and database, and [`wait_until_indexed`].
//!
//! The gateway is not here on purpose: its suite uses this kit, so the kit cannot depend on it;
//! gateway-shaped helpers (a served gateway, sign-in) live in `gateway/tests/common` on top of
//! these pieces. Several gateways on one chain (federation) are several [`TestDb`]s and
//! [`TestIndexer`]s on one [`TestChain`]; a TLS-terminating proxy would sit next to
//! [`TcpProxy`].
//!
//! Test code: failures panic with a message that says what did not work.

mod names;
mod net;
mod paths;
mod rng;
mod serve;
mod wait;

#[cfg(feature = "chain")]
mod anvil;
#[cfg(feature = "chain")]
mod chain;
#[cfg(feature = "chain")]
mod deploy;
#[cfg(feature = "chain")]
mod keys;

#[cfg(feature = "postgres")]
mod db;

#[cfg(feature = "indexer")]
mod indexer;

pub use names::{TempDir, unique_name};
pub use net::{TcpProxy, free_port, port_open};
pub use paths::{anvil_bin, cast_bin, forge_bin, repo_root};
pub use rng::SeededRng;
pub use serve::{BackgroundServer, ShutdownSignal};
pub use wait::eventually;

#[cfg(feature = "chain")]
pub use anvil::{Anvil, AnvilOptions};
#[cfg(feature = "chain")]
pub use chain::{Custodian, TestChain, service_key_setting};
#[cfg(feature = "chain")]
pub use deploy::{Deployment, ForgeLock, forge_lock};
#[cfg(feature = "chain")]
pub use keys::{
    DEV_KEYS, GOVERNANCE_KEY, dev_address, dev_signer, random_bytes, random_hex, signer_at,
    wallet_provider,
};

#[cfg(feature = "postgres")]
pub use db::{TestDb, fresh_database};

#[cfg(feature = "indexer")]
pub use indexer::{TestIndexer, indexed_block, wait_until_indexed};
