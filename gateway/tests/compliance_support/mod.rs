//! Helpers shared by the compliance suites (included with `#[path]`, next to `common`).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use crate::common::{TestChain, TestGateway};
use alloy::signers::local::PrivateKeySigner;
use carechain_contracts::AuditAnchor;
use carechain_gateway::audit::verify::AnchorReader;
use serde_json::Value;
use std::time::Duration;

pub async fn mined<T: alloy::network::Network>(
    pending: Result<alloy::providers::PendingTransactionBuilder<T>, alloy::contract::Error>,
) -> T::ReceiptResponse {
    pending.unwrap().get_receipt().await.unwrap()
}

/// A new gateway key registered in AuditAnchor by governance.
pub async fn registered_anchor_key(chain: &TestChain) -> PrivateKeySigner {
    let key = chain.wallet().await;
    let anchor = AuditAnchor::new(
        chain.manifest.contracts.audit_anchor,
        chain.governance.clone(),
    );
    mined(anchor.registerGateway(key.address()).send().await).await;
    key
}

/// An organisation of kind Compliance (7) with one member key; returns (org, key).
pub async fn compliance_member(chain: &TestChain) -> (PrivateKeySigner, PrivateKeySigner) {
    let org = chain.wallet().await;
    let key = chain.wallet().await;
    let registry = chain.providers();
    mined(
        registry
            .admitOrganisation(org.address(), 7, "Compliance Office".into())
            .send()
            .await,
    )
    .await;
    mined(
        registry
            .addMember(org.address(), key.address(), 0)
            .send()
            .await,
    )
    .await;
    (org, key)
}

/// Starts a gateway anchoring with `key` in batches of `rows` (the age trigger is an hour, so
/// only the count cuts batches).
pub async fn anchoring_gateway(
    chain: &TestChain,
    db: &str,
    key: &PrivateKeySigner,
    rows: u64,
) -> TestGateway {
    let hex = alloy::hex::encode(key.to_bytes());
    TestGateway::start_with(chain, db, |c| {
        c.anchoring.audit_anchor_key = Some(hex);
        c.anchoring.audit_anchor_rows = rows;
        c.anchoring.audit_anchor_interval_ms = 3_600_000;
        c.anchoring.audit_anchor_poll_ms = 50;
    })
    .await
}

pub fn reader(chain: &TestChain) -> AnchorReader {
    AnchorReader::new(
        &chain.rpc_url,
        chain.manifest.contracts.audit_anchor,
        Duration::from_secs(5),
    )
    .unwrap()
}

/// Highest sequence number anchored according to the gateway's table (0 when none).
pub async fn anchored_to(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(max(to_seq), 0) FROM gateway_audit_anchors WHERE state = 'anchored'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

pub async fn metadata(gw: &TestGateway) {
    let status = gw
        .http
        .get(gw.url("/metadata"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

pub async fn get(gw: &TestGateway, token: &str, path: &str) -> (u16, Value) {
    let response = gw
        .http
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn post(gw: &TestGateway, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = gw
        .http
        .post(gw.url(path))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The value of a named parameter of a Parameters resource.
pub fn param<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["parameter"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .map(|p| {
            p.as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
                .map(|(_, v)| v)
                .unwrap_or(&Value::Null)
        })
        .unwrap_or(&Value::Null)
}
