//! `carechain import` and `carechain research export` against the real gateway and indexer (in
//! process), a private anvil and the PostgreSQL server of `DATABASE_URL`: a hospital imports a
//! Synthea Bundle for a patient's wallet, a research organisation the patient consented to
//! exports it de-identified and gets the files.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use alloy::primitives::{B256, aliases::U40};
use carechain_contracts::{Action, MemberRole, OrgKind, Purpose, ResourceType};
use carechain_testkit::{
    BackgroundServer, TempDir, TestChain, TestIndexer, fresh_database, random_hex,
};
use common::key_hex;
use serde_json::Value;

fn synthea(file: &str) -> String {
    format!(
        "{}/../../tests/data/synthea/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_a_synthea_bundle_then_export_it_for_research() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let research = chain.wallet().await;
    let researcher = chain.wallet().await;
    chain
        .admit_organisation(research.address(), OrgKind::Research, "Cohort Institute")
        .await;
    chain
        .add_member(
            research.address(),
            researcher.address(),
            MemberRole::Practitioner,
        )
        .await;
    let patient = chain.wallet().await;
    for (grantee, actions, purpose) in [
        (
            custodian.org.address(),
            Action::Create.bit() | Action::Read.bit(),
            Purpose::Treat.bit(),
        ),
        (
            research.address(),
            Action::Read.bit(),
            Purpose::Research.bit(),
        ),
    ] {
        chain
            .consents_as(&patient)
            .grant(
                patient.address(),
                grantee,
                ResourceType::ALL_BITS,
                actions,
                purpose,
                U40::ZERO,
                U40::from(4_000_000_000u64),
                B256::repeat_byte(2),
            )
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    let db = fresh_database().await;
    let indexer = TestIndexer::start(&chain, &db).await;
    let home = TempDir::new("research-cli");
    let mut config = carechain_gateway::GatewayConfig::with_defaults(
        db.clone(),
        chain.rpc_url.clone(),
        chain.manifest_path.clone(),
        random_hex::<32>(),
    );
    config.service_keys = vec![custodian.service_key_setting()];
    config.default_custodian = Some(custodian.org.address());
    config.research.deid_secret = Some(random_hex::<32>());
    config.research.export_dir = Some(home.path().join("gateway-exports"));
    let gateway = carechain_gateway::Gateway::start(config)
        .await
        .expect("gateway starts");
    let base = format!("http://{}", gateway.local_addr().unwrap());
    let served = BackgroundServer::spawn(|shutdown| gateway.serve(shutdown));
    let as_key = |key: &alloy::signers::local::PrivateKeySigner, name: &str| {
        let token_file = home.path().join(format!("{name}-token.json"));
        common::Cli::new()
            .env("CARECHAIN_PRIVATE_KEY", &format!("0x{}", key_hex(key)))
            .env("CARECHAIN_GATEWAY_URL", &base)
            .env("CARECHAIN_TOKEN_FILE", token_file.to_str().unwrap())
    };
    // The gateway answers 503 until its health probe has seen the chain and the index.
    let mut ready = false;
    for _ in 0..200 {
        if as_key(&custodian.practitioner, "doctor")
            .args(["login"])
            .run()
            .status
            .success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "login succeeds once the gateway is ready");

    // Whose records these are is the importer's to say.
    let err = as_key(&custodian.practitioner, "doctor")
        .args(["import", &synthea("bundle-afhir.json")])
        .fails();
    assert!(err.contains("--patient-wallet"), "{err}");
    let wallet = format!("{:#x}", patient.address());
    let imported = as_key(&custodian.practitioner, "doctor")
        .args([
            "import",
            "--patient-wallet",
            &wallet,
            &synthea("bundle-afhir.json"),
        ])
        .ok();
    assert!(
        imported.contains("319 of 319 entries imported"),
        "{imported}"
    );

    // The researcher exports for a study: progress, files, the manifest.
    as_key(&researcher, "researcher").args(["login"]).ok();
    let out = home.path().join("study-x");
    let exported = as_key(&researcher, "researcher")
        .args(["research", "export", "--study", "study-x"])
        .arg_path("--out", &out)
        .ok();
    assert!(exported.contains("of 1 patients"), "{exported}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["extension"]["urn:carechain:study"], "study-x");
    let observations = std::fs::read_to_string(out.join("Observation.ndjson")).unwrap();
    assert_eq!(observations.lines().count(), 187);
    assert!(!observations.contains(&wallet[2..]));
    // The hospital's practitioner is not a researcher.
    let refused = as_key(&custodian.practitioner, "doctor")
        .args(["research", "export", "--study", "study-x"])
        .arg_path("--out", &home.path().join("nope"))
        .fails();
    assert!(refused.contains("403"), "{refused}");
    let help = common::Cli::new()
        .args(["research", "export", "--help"])
        .ok();
    assert!(help.contains("HRESCH"), "{help}");

    served.stop().await.unwrap();
    drop(indexer);
}
