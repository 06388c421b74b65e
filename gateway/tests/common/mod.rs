//! Test harness: the gateway served on a loopback port with a client, signed in by wallet
//! keys, on top of `carechain-testkit` (a private anvil with the contracts deployed by the
//! project's deploy script, a fresh PostgreSQL database per test, the indexer in process).
//!
//! Environment: `DATABASE_URL` (a server URL; each test creates its own database),
//! `ANVIL_BIN` / `FORGE_BIN` (default: the native binaries under the workspace's node_modules).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use alloy::signers::{SignerSync, local::PrivateKeySigner};
use carechain_gateway::{Gateway, GatewayConfig, auth::siwe::SiweMessage};
use carechain_testkit::{BackgroundServer, Custodian, random_hex, wait_until_indexed};
use serde_json::Value;
use std::time::Duration;

// What the suites take from the kit through this module (not every suite takes all of it).
#[allow(unused_imports)]
pub use carechain_testkit::{
    TestChain, TestIndexer, eventually, fresh_database, indexed_block, wallet_provider,
};

/// Eight random hex digits (a unique suffix for names a test creates).
pub fn rand_suffix() -> String {
    random_hex::<4>()
}

/// Makes a gateway act for a custodian organisation.
pub trait ConfigureCustodian {
    /// Makes the gateway anchor with the organisation's service key, also for records that
    /// patients write.
    fn configure(&self, config: &mut GatewayConfig);
}

impl ConfigureCustodian for Custodian {
    fn configure(&self, config: &mut GatewayConfig) {
        config.service_keys = vec![self.service_key_setting()];
        config.default_custodian = Some(self.org.address());
    }
}

/// A running gateway with a client.
pub struct TestGateway {
    pub base: String,
    pub http: reqwest::Client,
    pub pool: sqlx::PgPool,
    pub state: carechain_gateway::AppState,
    server: BackgroundServer<std::io::Result<()>>,
    pub chain_id: u64,
}

impl TestGateway {
    pub async fn start(chain: &TestChain, database_url: &str) -> Self {
        Self::start_with(chain, database_url, |_| {}).await
    }

    pub async fn start_with(
        chain: &TestChain,
        database_url: &str,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Self {
        let kek = random_hex::<32>();
        let mut config = GatewayConfig::with_defaults(
            database_url.to_owned(),
            chain.rpc_url.clone(),
            chain.manifest_path.clone(),
            kek,
        );
        tweak(&mut config);
        let gateway = Gateway::start(config).await.expect("gateway starts");
        let addr = gateway.local_addr().unwrap();
        let state = gateway.state().clone();
        let pool = state.pool().clone();
        let server = BackgroundServer::spawn(|shutdown| gateway.serve(shutdown));
        Self {
            // `https://` when the gateway serves TLS (a test then sets a client that trusts it).
            base: format!(
                "{}://{addr}",
                if state.config().serves_tls() {
                    "https"
                } else {
                    "http"
                }
            ),
            http: reqwest::Client::new(),
            pool,
            state,
            server,
            chain_id: chain.manifest.chain_id,
        }
    }

    /// Stops the gateway gracefully and waits for it.
    pub async fn stop(self) {
        self.server.stop().await.unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signs in `signer` and returns the response status and body.
    pub async fn sign_in_raw(
        &self,
        signer: &PrivateKeySigner,
        edit: impl FnOnce(&mut SiweMessage),
    ) -> (u16, Value) {
        let (text, signature) = self.signed_sign_in(signer, edit).await;
        self.login(&text, &signature).await
    }

    /// A fresh nonce's EIP-4361 message for `signer` (with the statement and resources the
    /// gateway offers), edited by `edit`, and its signature: not sent.
    pub async fn signed_sign_in(
        &self,
        signer: &PrivateKeySigner,
        edit: impl FnOnce(&mut SiweMessage),
    ) -> (String, String) {
        let nonce: Value = self
            .http
            .post(self.url("/auth/nonce"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let now = chrono::Utc::now();
        let mut message = SiweMessage {
            domain: nonce["domain"].as_str().unwrap().to_owned(),
            address: signer.address(),
            statement: Some(
                nonce["statement"]
                    .as_str()
                    .unwrap_or("Sign in to carechain")
                    .to_owned(),
            ),
            uri: nonce["uri"].as_str().unwrap().to_owned(),
            version: "1".into(),
            chain_id: self.chain_id,
            nonce: nonce["nonce"].as_str().unwrap().to_owned(),
            issued_at: now,
            expiration_time: Some(now + chrono::Duration::minutes(5)),
            not_before: None,
            resources: nonce["resources"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        };
        edit(&mut message);
        let text = message.to_text();
        let signature = signer.sign_message_sync(text.as_bytes()).unwrap();
        (
            text,
            format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        )
    }

    pub async fn login(&self, text: &str, signature: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/auth/login"))
            .json(&serde_json::json!({"message": text, "signature": signature}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn sign_in(&self, signer: &PrivateKeySigner) -> String {
        let (status, body) = self.sign_in_raw(signer, |_| {}).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Waits until the indexer has committed `block` and the gateway's health probe (every
    /// 250 ms) has seen a head at least that high, so decisions are not refused as stale.
    pub async fn wait_indexed(&self, block: u64) {
        wait_until_indexed(&self.pool, block).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }

    /// The indexer's cursor (the last block it committed), if it has one.
    pub async fn indexed_block(&self) -> Option<i64> {
        indexed_block(&self.pool).await
    }

    /// The audit row of the request whose response carried `headers` (its `X-Audit-Seq`).
    pub async fn audit_row(&self, headers: &reqwest::header::HeaderMap) -> AuditRow {
        let seq: i64 = headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
        let (http_status, outcome, consent_block, event): (i32, String, Option<i64>, String) =
            sqlx::query_as(
                "SELECT http_status, outcome, consent_block, event::text FROM gateway_audit_log WHERE seq = $1",
            )
            .bind(seq)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let event: Value = serde_json::from_str(&event).unwrap();
        let basis = event["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["detail"].as_array().into_iter().flatten())
            .find(|d| d["type"] == "consent-basis")
            .and_then(|d| d["valueString"].as_str())
            .map(str::to_owned);
        AuditRow {
            http_status,
            outcome,
            consent_block,
            basis,
            description: event["outcomeDesc"].as_str().unwrap_or_default().to_owned(),
        }
    }

    pub async fn audit_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM gateway_audit_log")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// What the audit log recorded for one request.
#[derive(Debug)]
pub struct AuditRow {
    pub http_status: i32,
    pub outcome: String,
    pub consent_block: Option<i64>,
    pub basis: Option<String>,
    pub description: String,
}
