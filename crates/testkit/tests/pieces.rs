//! The kit's chain pieces against a real anvil (`ANVIL_BIN`, else the npm package's binary).
#![allow(missing_docs)]

use alloy::providers::Provider;
use carechain_testkit::{AnvilOptions, TcpProxy, dev_address, wallet_provider};
use std::time::Duration;

#[tokio::test]
async fn anvil_starts_with_its_options_and_mines_on_request() {
    let anvil = AnvilOptions::new()
        .chain_id(1337)
        .accounts(2)
        .block_time(Duration::from_secs(3600))
        .start()
        .await;
    let provider = anvil.provider();
    assert_eq!(provider.get_chain_id().await.expect("eth_chainId"), 1337);
    let accounts = provider.get_accounts().await.expect("eth_accounts");
    assert_eq!(accounts, [dev_address(0), dev_address(1)]);
    // An hour per block: only anvil_mine moves the head.
    assert_eq!(anvil.head().await, 0);
    assert_eq!(anvil.mine(3).await, 3);
    anvil.reorg(2).await;
    assert_eq!(anvil.head().await, 3);
}

#[tokio::test]
async fn the_proxy_goes_down_and_comes_back_on_its_port() {
    let anvil = AnvilOptions::new().start().await;
    let mut proxy = TcpProxy::start(anvil.port).await;
    let through = wallet_provider(
        &format!("http://127.0.0.1:{}", proxy.port),
        alloy::signers::local::PrivateKeySigner::random(),
    );
    assert_eq!(
        through.get_chain_id().await.expect("through the proxy"),
        31337
    );
    proxy.down().await;
    assert!(
        through.get_block_number().await.is_err(),
        "the proxy is down"
    );
    proxy.up().await;
    assert_eq!(through.get_block_number().await.expect("up again"), 0);
}
