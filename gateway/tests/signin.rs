//! Sign-in, the CapabilityStatement, error rendering, auditing and shutdown against a real
//! anvil (contracts deployed by the deploy script) and a real PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

type Edit = Box<dyn FnOnce(&mut carechain_gateway::auth::siwe::SiweMessage)>;

use common::{TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::Value;

fn assert_outcome(body: &Value, code: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_metadata_errors_and_audit() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let gw = TestGateway::start(&chain, &db).await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let mut requests = 0;

    // The CapabilityStatement needs no sign-in.
    let response = gw.http.get(gw.url("/metadata")).send().await.unwrap();
    requests += 1;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let cs: Value = response.json().await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");

    // Unknown endpoints and methods are OperationOutcomes.
    let response = gw.http.get(gw.url("/nope/x/y/z")).send().await.unwrap();
    requests += 1;
    assert_eq!(response.status(), 404);
    assert_outcome(&response.json().await.unwrap(), "not-found");
    let response = gw.http.delete(gw.url("/metadata")).send().await.unwrap();
    requests += 1;
    assert_eq!(response.status(), 405);
    assert_outcome(&response.json().await.unwrap(), "not-supported");

    // Malformed login bodies are 4xx, never 5xx.
    for (body, content_type, status) in [
        ("{not json", "application/json", 400),
        ("{}", "application/json", 400),
        ("{}", "text/plain", 415),
        (
            r#"{"message":"hello","signature":"0x00"}"#,
            "application/json",
            400,
        ),
    ] {
        let response = gw
            .http
            .post(gw.url("/auth/login"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        requests += 1;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let outcome: Value = response.json().await.unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["severity"], "error");
    }
    // Oversized bodies are refused with 413.
    let big = format!(r#"{{"message":"{}"}}"#, "a".repeat(9 * 1024 * 1024));
    let response = gw
        .http
        .post(gw.url("/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    requests += 1;
    assert_eq!(response.status(), 413);
    assert_outcome(&response.json().await.unwrap(), "too-costly");

    // A patient (any non-member wallet) signs in; each sign-in costs two requests.
    let patient = chain.wallet().await;
    let token = gw.sign_in(&patient).await;
    requests += 2;
    assert!(!token.is_empty());

    // An active member key of an active organisation signs in as a member.
    let (org, key) = chain.organisation_with_member().await;
    let (status, body) = gw.sign_in_raw(&key, |_| {}).await;
    requests += 2;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "member");
    assert_eq!(
        body["organisation"].as_str().unwrap(),
        format!("{:#x}", org.address())
    );

    // Suspended organisation: its keys are refused.
    chain
        .providers()
        .suspendOrganisation(org.address())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let (status, body) = gw.sign_in_raw(&key, |_| {}).await;
    requests += 2;
    assert_eq!(status, 403, "{body}");
    assert_outcome(&body, "forbidden");

    // Every EIP-4361 check.
    let checks: Vec<(&str, Edit)> = vec![
        ("domain", Box::new(|m| m.domain = "evil.example".into())),
        ("uri", Box::new(|m| m.uri = "http://evil.example".into())),
        ("chain", Box::new(|m| m.chain_id = 1)),
        (
            "expired",
            Box::new(|m| {
                m.expiration_time = Some(chrono::Utc::now() - chrono::Duration::seconds(1))
            }),
        ),
        (
            "issued in the future",
            Box::new(|m| m.issued_at = chrono::Utc::now() + chrono::Duration::minutes(10)),
        ),
        (
            "issued long ago",
            Box::new(|m| {
                m.issued_at = chrono::Utc::now() - chrono::Duration::hours(1);
                m.expiration_time = None;
            }),
        ),
        (
            "unknown nonce",
            Box::new(|m| m.nonce = "ffffffffffffffffffff".into()),
        ),
    ];
    for (what, edit) in checks {
        let (status, body) = gw.sign_in_raw(&patient, edit).await;
        requests += 2;
        assert_eq!(status, 401, "{what}: {body}");
        assert_outcome(&body, "login");
    }

    // A signature by another key is refused, and the nonce cannot be replayed.
    let other = chain.wallet().await;
    let nonce: Value = gw
        .http
        .post(gw.url("/auth/nonce"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    requests += 1;
    let now = chrono::Utc::now();
    let message = carechain_gateway::auth::siwe::SiweMessage {
        domain: nonce["domain"].as_str().unwrap().into(),
        address: patient.address(),
        statement: None,
        uri: nonce["uri"].as_str().unwrap().into(),
        version: "1".into(),
        chain_id: gw.chain_id,
        nonce: nonce["nonce"].as_str().unwrap().into(),
        issued_at: now,
        expiration_time: None,
        not_before: None,
        resources: Vec::new(),
    }
    .to_text();
    use alloy::signers::SignerSync;
    let forged = other.sign_message_sync(message.as_bytes()).unwrap();
    let (status, _) = gw
        .login(
            &message,
            &format!("0x{}", alloy::hex::encode(forged.as_bytes())),
        )
        .await;
    requests += 1;
    assert_eq!(status, 401);
    let good = patient.sign_message_sync(message.as_bytes()).unwrap();
    let (status, body) = gw
        .login(
            &message,
            &format!("0x{}", alloy::hex::encode(good.as_bytes())),
        )
        .await;
    requests += 1;
    assert_eq!(
        status, 401,
        "a nonce is single-use, even after a failed attempt: {body}"
    );

    // The role the audit writer uses may insert and read, never change or delete.
    let mut conn = gw.pool.acquire().await.unwrap();
    sqlx::query("SET ROLE carechain_gateway_audit")
        .execute(&mut *conn)
        .await
        .unwrap();
    for statement in [
        "UPDATE gateway_audit_log SET outcome = '0'",
        "DELETE FROM gateway_audit_log",
    ] {
        let err = sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .unwrap_or_default();
        assert_eq!(code, "42501", "{statement}: {err}");
    }
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
    drop(conn);

    // A contract wallet (ERC-1271) signs in through its owner's signature.
    let owner = chain.wallet().await;
    let wallet = chain
        .deploy_artifact(
            "MockERC1271Wallet.sol",
            "MockERC1271Wallet",
            &alloy::sol_types::SolValue::abi_encode(&owner.address()),
        )
        .await;
    let nonce: Value = gw
        .http
        .post(gw.url("/auth/nonce"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    requests += 1;
    let now = chrono::Utc::now();
    let text = carechain_gateway::auth::siwe::SiweMessage {
        domain: nonce["domain"].as_str().unwrap().into(),
        address: wallet,
        statement: Some("Sign in to carechain".into()),
        uri: nonce["uri"].as_str().unwrap().into(),
        version: "1".into(),
        chain_id: gw.chain_id,
        nonce: nonce["nonce"].as_str().unwrap().into(),
        issued_at: now,
        expiration_time: None,
        not_before: None,
        resources: Vec::new(),
    }
    .to_text();
    let by_owner = owner.sign_message_sync(text.as_bytes()).unwrap();
    let (status, body) = gw
        .login(
            &text,
            &format!("0x{}", alloy::hex::encode(by_owner.as_bytes())),
        )
        .await;
    requests += 1;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["address"].as_str().unwrap(), format!("{wallet:#x}"));
    assert_eq!(body["role"], "patient");

    // Every request above wrote exactly one audit row, and the chain of hashes verifies.
    assert_eq!(gw.audit_rows().await, requests);
    let verified = carechain_gateway::audit::verify_chain(&gw.pool)
        .await
        .unwrap();
    assert_eq!(verified, Ok(requests as u64));
    // The audit table is append-only.
    assert!(
        sqlx::query("UPDATE gateway_audit_log SET outcome = '0'")
            .execute(&gw.pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM gateway_audit_log")
            .execute(&gw.pool)
            .await
            .is_err()
    );

    // Nonces are rate-limited per client address: a gateway allowing two a minute answers
    // the third with 429 (an OperationOutcome with Retry-After), audited like any request.
    let limited = TestGateway::start_with(&chain, &db, |c| c.nonces_per_minute = 2).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let response = limited
            .http
            .post(limited.url("/auth/nonce"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        last = Some(response);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let refused = last.unwrap();
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let audited = limited.audit_row(refused.headers()).await;
    assert_eq!((audited.http_status, audited.outcome.as_str()), (429, "4"));
    assert_outcome(&refused.json().await.unwrap(), "throttled");
    limited.stop().await;

    // The chain goes away: consent cannot be decided, so requests fail closed with 503 and an
    // OperationOutcome that names no internals.
    let mut chain = chain;
    chain.anvil.kill().await.unwrap();
    let response = gw
        .http
        .get(gw.url(&format!("/Observation?patient={:#x}", patient.address())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let outcome: Value = response.json().await.unwrap();
    assert_outcome(&outcome, "transient");
    assert!(!outcome.to_string().contains("127.0.0.1"), "{outcome}");
    let (status, body) = gw.sign_in_raw(&patient, |_| {}).await;
    assert_eq!(status, 503, "{body}");
    // Two gateways appended to the one audit log (the second one's rows made the first one's
    // remembered tail stale): the chain still links every row.
    let rows = gw.audit_rows().await;
    assert_eq!(
        carechain_gateway::audit::verify_chain(&gw.pool)
            .await
            .unwrap(),
        Ok(rows as u64)
    );

    gw.stop().await;
    let _ = org;
}

/// A gateway connecting as its own database user (not the one that ran the migrations) writes
/// audit rows once that user is granted `carechain_gateway`, and cannot change or delete them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_its_own_database_user_audits_but_cannot_rewrite() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    // The owner migrates.
    TestGateway::start(&chain, &db).await.stop().await;
    let owner = sqlx::PgPool::connect(&db).await.unwrap();
    let suffix = common::rand_suffix();
    let url_as = |user: &str| {
        let mut url: reqwest::Url = db.parse().unwrap();
        url.set_username(user).unwrap();
        url.to_string()
    };
    let metadata = |gw: &TestGateway| {
        let url = gw.url("/metadata");
        let http = gw.http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };

    // Without the grant, no audit row can be written, so nothing is answered but a 500.
    let stranger = format!("gw_stranger_{suffix}");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {stranger} LOGIN")))
        .execute(&owner)
        .await
        .unwrap();
    let gw = TestGateway::start_with(&chain, &url_as(&stranger), |c| c.migrate = false).await;
    assert_eq!(metadata(&gw).await, 500);
    gw.stop().await;

    // With it, requests are audited as usual.
    let user = format!("gw_user_{suffix}");
    for sql in [
        format!("CREATE ROLE {user} LOGIN"),
        format!("GRANT carechain_gateway TO {user}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&owner)
            .await
            .unwrap();
    }
    let gw = TestGateway::start_with(&chain, &url_as(&user), |c| c.migrate = false).await;
    let before = gw.audit_rows().await;
    assert_eq!(metadata(&gw).await, 200);
    assert_eq!(gw.audit_rows().await, before + 1);
    // As that user (and as the audit role), the log cannot be changed.
    for sql in [
        "UPDATE gateway_audit_log SET outcome = '8'",
        "DELETE FROM gateway_audit_log",
        "TRUNCATE gateway_audit_log",
    ] {
        assert!(sqlx::query(sql).execute(&gw.pool).await.is_err(), "{sql}");
        let mut tx = gw.pool.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE carechain_gateway_audit")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert!(sqlx::query(sql).execute(&mut *tx).await.is_err(), "{sql}");
    }
    assert_eq!(
        carechain_gateway::audit::verify_chain(&owner)
            .await
            .unwrap(),
        Ok(before as u64 + 1)
    );
    gw.stop().await;
}
