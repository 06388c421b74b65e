//! `carechain login` and `carechain records` against the real gateway and indexer (in
//! process), a private anvil and the PostgreSQL server of `DATABASE_URL`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use carechain_testkit::{
    BackgroundServer, TempDir, TestChain, TestIndexer, fresh_database, random_hex,
    service_key_setting,
};
use common::{CliChain, key_hex};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_records_through_the_gateway() {
    let chain = TestChain::start().await;
    let (org, _member) = chain.hospital_with_member().await;
    // The hospital's service key anchors the records patients write (default custodian).
    let service = chain.wallet().await;
    chain.add_member_with_cli(org, service.address(), "service");
    let db = fresh_database().await;

    let indexer = TestIndexer::start(&chain, &db).await;

    let mut config = carechain_gateway::GatewayConfig::with_defaults(
        db.clone(),
        chain.rpc_url.clone(),
        chain.manifest_path.clone(),
        random_hex::<32>(),
    );
    config.service_keys = vec![service_key_setting(org, &service)];
    config.default_custodian = Some(org);
    let gateway = carechain_gateway::Gateway::start(config)
        .await
        .expect("gateway starts");
    let base = format!("http://{}", gateway.local_addr().unwrap());
    let served = BackgroundServer::spawn(|shutdown| gateway.serve(shutdown));

    let patient = chain.wallet().await;
    let home = TempDir::new("gateway");
    let token_file = home.path().join("config/token.json");
    let as_patient = || {
        common::Cli::new()
            .env("CARECHAIN_PRIVATE_KEY", &format!("0x{}", key_hex(&patient)))
            .env("CARECHAIN_GATEWAY_URL", &base)
            .env("CARECHAIN_TOKEN_FILE", token_file.to_str().unwrap())
    };

    // Not signed in yet: says what to do.
    let err = as_patient().args(["records"]).fails();
    assert!(err.contains("carechain login"), "{err}");

    // The gateway answers 503 until its health probe has seen the chain and the index.
    let mut signed_in = None;
    for _ in 0..200 {
        let out = as_patient().args(["login"]).run();
        if out.status.success() {
            signed_in = Some(String::from_utf8(out.stdout).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let signed_in = signed_in.expect("login succeeds once the gateway is ready");
    assert!(
        signed_in.contains(&patient.address().to_string()),
        "{signed_in}"
    );
    assert!(signed_in.contains("(patient)"), "{signed_in}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    let token = stored["access_token"].as_str().unwrap().to_owned();
    assert!(
        !std::fs::read_to_string(&token_file)
            .unwrap()
            .contains(&key_hex(&patient))
    );

    // Nothing yet.
    let empty = as_patient().args(["records"]).ok();
    assert!(empty.contains("no records"), "{empty}");

    // The patient writes two records over HTTP (FHIR create), then reads them with the CLI.
    let http = reqwest::Client::new();
    for (code, display, value) in [
        ("4548-4", "Hemoglobin A1c", 6.1),
        ("8867-4", "Heart rate", 72.0),
    ] {
        let response = http
            .post(format!("{base}/Observation"))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(
                json!({
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                    "subject": {"reference": format!("Patient/{:#x}", patient.address())},
                    "effectiveDateTime": "2026-11-20T10:00:00Z",
                    "valueQuantity": {"value": value, "unit": "%"}
                })
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            201,
            "{}",
            response.text().await.unwrap()
        );
    }
    let readable = as_patient().args(["records"]).ok();
    assert!(readable.contains("2 records"), "{readable}");
    assert!(readable.contains("Hemoglobin A1c = 6.1 %"), "{readable}");
    assert!(readable.contains("Heart rate"), "{readable}");
    let bundle: Value = serde_json::from_str(
        &as_patient()
            .args(["records", "--type", "Observation", "--json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 2);
    let none: Value = serde_json::from_str(
        &as_patient()
            .args(["records", "--type", "Condition", "--json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(none["total"], 0);

    // A token for another gateway is not sent to this one.
    let err = as_patient()
        .env("CARECHAIN_GATEWAY_URL", "http://127.0.0.1:9")
        .args(["records"])
        .fails();
    assert!(err.contains("carechain login"), "{err}");

    served.stop().await.unwrap();
    drop(indexer);
}
