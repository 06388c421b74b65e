//! A private anvil on a free loopback port.

use crate::{keys::signer_at, net::free_port, paths::anvil_bin};
use alloy::{
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
};
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How to start an [`Anvil`]; the default is anvil's own (instant mining, 10 accounts, chain id
/// 31337).
#[derive(Debug, Clone, Default)]
pub struct AnvilOptions {
    block_time: Option<Duration>,
    accounts: Option<u32>,
    chain_id: Option<u64>,
    slots_in_an_epoch: Option<u64>,
    extra_args: Vec<String>,
}

impl AnvilOptions {
    /// anvil's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mines a block every `interval` instead of one per transaction.
    pub fn block_time(mut self, interval: Duration) -> Self {
        self.block_time = Some(interval);
        self
    }

    /// How many funded development accounts anvil creates.
    pub fn accounts(mut self, accounts: u32) -> Self {
        self.accounts = Some(accounts);
        self
    }

    /// The chain id.
    pub fn chain_id(mut self, chain_id: u64) -> Self {
        self.chain_id = Some(chain_id);
        self
    }

    /// Slots in an epoch: anvil's `safe` and `finalized` blocks trail the head by one and two
    /// epochs (default 32 slots), so 1 makes nearly every block final at once.
    pub fn slots_in_an_epoch(mut self, slots: u64) -> Self {
        self.slots_in_an_epoch = Some(slots);
        self
    }

    /// Any other anvil argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Starts anvil with these options.
    pub async fn start(self) -> Anvil {
        Anvil::start_with(self).await
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(interval) = self.block_time {
            args.extend(["--block-time".into(), interval.as_secs_f64().to_string()]);
        }
        if let Some(accounts) = self.accounts {
            args.extend(["--accounts".into(), accounts.to_string()]);
        }
        if let Some(chain_id) = self.chain_id {
            args.extend(["--chain-id".into(), chain_id.to_string()]);
        }
        if let Some(slots) = self.slots_in_an_epoch {
            args.extend(["--slots-in-an-epoch".into(), slots.to_string()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A private anvil on a free loopback port; killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its JSON-RPC URL.
    pub url: String,
}

impl Anvil {
    /// Starts anvil with its defaults and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(AnvilOptions::default()).await
    }

    /// Starts anvil with `options` and waits until it answers (at most 20 s).
    pub async fn start_with(options: AnvilOptions) -> Self {
        let port = free_port();
        let child = Command::new(anvil_bin())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .args(options.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start anvil {} (set ANVIL_BIN): {e}", anvil_bin().display())
            });
        let anvil = Self {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
        };
        let provider = anvil.provider();
        let deadline = Instant::now() + Duration::from_secs(20);
        while provider.get_chain_id().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "anvil did not answer on {}",
                anvil.url
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anvil
    }

    /// A provider that does not sign.
    pub fn provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .connect_http(self.url.parse().expect("anvil's URL is a URL"))
            .erased()
    }

    /// A provider signing with development key `i`.
    pub fn signer(&self, i: usize) -> DynProvider {
        signer_at(&self.url, i)
    }

    /// The head block number.
    pub async fn head(&self) -> u64 {
        self.provider()
            .get_block_number()
            .await
            .expect("eth_blockNumber")
    }

    /// The hash of block `number`.
    pub async fn block_hash(&self, number: u64) -> B256 {
        self.provider()
            .get_block_by_number(number.into())
            .await
            .expect("eth_getBlockByNumber")
            .unwrap_or_else(|| panic!("block {number} exists"))
            .header
            .hash
    }

    /// Mines `blocks` empty blocks at once (`anvil_mine`); returns the new head.
    pub async fn mine(&self, blocks: u64) -> u64 {
        let _: serde_json::Value = self
            .provider()
            .raw_request("anvil_mine".into(), (U256::from(blocks),))
            .await
            .expect("anvil_mine");
        self.head().await
    }

    /// Switches mining a block per transaction on or off (`evm_setAutomine`); off, transactions
    /// wait in the pool until [`Anvil::mine`].
    pub async fn set_automine(&self, on: bool) {
        let _: serde_json::Value = self
            .provider()
            .raw_request("evm_setAutomine".into(), (on,))
            .await
            .expect("evm_setAutomine");
    }

    /// Removes a pending transaction from the pool, as a node that drops it would
    /// (`anvil_dropTransaction`).
    pub async fn drop_transaction(&self, tx_hash: B256) {
        let _: serde_json::Value = self
            .provider()
            .raw_request("anvil_dropTransaction".into(), (tx_hash,))
            .await
            .expect("anvil_dropTransaction");
    }

    /// Replaces the last `depth` blocks with empty ones (`anvil_reorg`).
    pub async fn reorg(&self, depth: u64) {
        let _: serde_json::Value = self
            .provider()
            .raw_request(
                "anvil_reorg".into(),
                (depth, Vec::<serde_json::Value>::new()),
            )
            .await
            .expect("anvil_reorg");
    }

    /// Sets the balance of `address` to `wei` (`anvil_setBalance`).
    pub async fn set_balance(&self, address: Address, wei: U256) {
        let _: serde_json::Value = self
            .provider()
            .raw_request("anvil_setBalance".into(), (address, wei))
            .await
            .expect("anvil_setBalance");
    }

    /// Kills anvil now (the chain goes away mid-test) and reaps it.
    pub async fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_anvil_arguments() {
        let args = AnvilOptions::new()
            .block_time(Duration::from_millis(500))
            .accounts(3)
            .chain_id(1337)
            .slots_in_an_epoch(1)
            .arg("--no-mining")
            .args();
        assert_eq!(
            args,
            [
                "--block-time",
                "0.5",
                "--accounts",
                "3",
                "--chain-id",
                "1337",
                "--slots-in-an-epoch",
                "1",
                "--no-mining"
            ]
        );
        assert!(AnvilOptions::new().args().is_empty());
    }
}
