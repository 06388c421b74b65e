//! Every contract event lands in its table with the right decoded fields, the derived state
//! matches the contracts' own views, listeners are notified, and bad configuration is refused
//! with a clear message.

mod common;

use alloy::{
    primitives::{Address, B256, U256, aliases::U40},
    providers::Provider,
};
use carechain_contracts::{AuditAnchor, ConsentRegistry, ProviderRegistry, RecordRegistry};
use carechain_testkit::{Anvil, Deployment, TestDb, dev_address, free_port};
use common::*;
use sqlx::{Row, postgres::PgListener};
use std::time::Duration;

fn hex(a: impl AsRef<[u8]>) -> String {
    format!("0x{}", alloy::hex::encode(a))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_lands_decoded_and_derived_state_matches_the_views() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let c = deployment.manifest.contracts;
    let gov = anvil.signer(0);
    let (hospital, lab, gateway, practitioner, service, rotated, patient, delegate, gateway2) = (
        dev_address(1),
        dev_address(2),
        dev_address(3),
        dev_address(4),
        dev_address(5),
        dev_address(6),
        dev_address(7),
        dev_address(8),
        dev_address(9),
    );
    let lab_key = Address::repeat_byte(0x11);
    let now = anvil
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .expect("block")
        .expect("latest")
        .header
        .timestamp;
    let until = U40::from(now + 1_000_000);

    // Membership.
    let providers_gov = ProviderRegistry::new(c.provider_registry, &gov);
    providers_gov
        .admitOrganisation(hospital, 1, "St Mary's".into())
        .send()
        .await
        .expect("admit")
        .tx_hash();
    providers_gov
        .admitOrganisation(lab, 3, "City Lab".into())
        .send()
        .await
        .expect("admit")
        .tx_hash();
    let hospital_signer = anvil.signer(1);
    let providers_hospital = ProviderRegistry::new(c.provider_registry, &hospital_signer);
    providers_hospital
        .addMember(hospital, practitioner, 0)
        .send()
        .await
        .expect("add")
        .tx_hash();
    providers_hospital
        .addMember(hospital, service, 1)
        .send()
        .await
        .expect("add")
        .tx_hash();
    providers_hospital
        .suspendMember(service)
        .send()
        .await
        .expect("suspend")
        .tx_hash();
    providers_hospital
        .reinstateMember(service)
        .send()
        .await
        .expect("reinstate")
        .tx_hash();
    providers_hospital
        .rotateMemberKey(service, rotated)
        .send()
        .await
        .expect("rotate")
        .tx_hash();
    // The directory: the hospital publishes its endpoint, then moves it.
    providers_hospital
        .setEndpoint(hospital, "https://fhir.st-marys.example/r4".into())
        .send()
        .await
        .expect("endpoint")
        .tx_hash();
    providers_hospital
        .setEndpoint(hospital, "https://fhir2.st-marys.example".into())
        .send()
        .await
        .expect("endpoint moved")
        .tx_hash();
    providers_gov
        .suspendOrganisation(lab)
        .send()
        .await
        .expect("suspend org")
        .tx_hash();
    providers_gov
        .reinstateOrganisation(lab)
        .send()
        .await
        .expect("reinstate org")
        .tx_hash();
    let lab_signer = anvil.signer(2);
    let providers_lab = ProviderRegistry::new(c.provider_registry, &lab_signer);
    providers_lab
        .addMember(lab, lab_key, 0)
        .send()
        .await
        .expect("add lab key")
        .tx_hash();
    providers_lab
        .retireMember(lab_key)
        .send()
        .await
        .expect("retire")
        .tx_hash();
    let governor_role = providers_gov.GOVERNOR_ROLE().call().await.expect("role");
    providers_gov
        .grantRole(governor_role, gateway2)
        .send()
        .await
        .expect("grantRole")
        .tx_hash();
    providers_gov
        .revokeRole(governor_role, gateway2)
        .send()
        .await
        .expect("revokeRole")
        .tx_hash();

    // Audit gateways.
    let audit_gov = AuditAnchor::new(c.audit_anchor, &gov);
    audit_gov
        .registerGateway(gateway)
        .send()
        .await
        .expect("register")
        .tx_hash();
    audit_gov
        .registerGateway(gateway2)
        .send()
        .await
        .expect("register")
        .tx_hash();
    audit_gov
        .removeGateway(gateway2)
        .send()
        .await
        .expect("remove")
        .tx_hash();

    // Consent.
    let consents_gov = ConsentRegistry::new(c.consent_registry, &gov);
    consents_gov
        .setMaxBreakGlassDuration(7200)
        .send()
        .await
        .expect("max duration")
        .tx_hash();
    let patient_signer = anvil.signer(7);
    let consents_patient = ConsentRegistry::new(c.consent_registry, &patient_signer);
    let h1 = B256::repeat_byte(0xa1);
    consents_patient
        .grant(
            patient,
            hospital,
            0b1011,
            0b00011,
            0b1,
            U40::ZERO,
            until,
            h1,
        )
        .send()
        .await
        .expect("grant hospital")
        .tx_hash();
    consents_patient
        .grant(
            patient,
            practitioner,
            0b1,
            0b00010,
            0b11,
            U40::from(now),
            until,
            B256::repeat_byte(0xa2),
        )
        .send()
        .await
        .expect("grant practitioner")
        .tx_hash();
    consents_patient
        .revoke(patient, practitioner)
        .send()
        .await
        .expect("revoke")
        .tx_hash();
    consents_patient
        .setDelegate(delegate, 1, until)
        .send()
        .await
        .expect("delegate")
        .tx_hash();
    let delegate_signer = anvil.signer(8);
    let consents_delegate = ConsentRegistry::new(c.consent_registry, &delegate_signer);
    let h3 = B256::repeat_byte(0xa3);
    consents_delegate
        .grant(patient, lab, 0b100, 0b00001, 0b100, U40::ZERO, until, h3)
        .send()
        .await
        .expect("grant by delegate")
        .tx_hash();
    // Only the patient cancels their signatures.
    consents_patient
        .invalidateNonces(patient, U256::from(5))
        .send()
        .await
        .expect("nonces")
        .tx_hash();
    // The Guardian becomes a Proxy for Observation reads and searches for TREAT.
    consents_patient
        .setProxy(delegate, until, 0b10, 0b10010, 0b1)
        .send()
        .await
        .expect("proxy")
        .tx_hash();
    consents_patient
        .removeDelegate(delegate)
        .send()
        .await
        .expect("remove delegate")
        .tx_hash();
    let practitioner_signer = anvil.signer(4);
    let consents_practitioner = ConsentRegistry::new(c.consent_registry, &practitioner_signer);
    consents_practitioner
        .openBreakGlass(patient, 1, 600)
        .send()
        .await
        .expect("open")
        .tx_hash();
    consents_practitioner
        .closeBreakGlass(patient)
        .send()
        .await
        .expect("close")
        .tx_hash();
    consents_practitioner
        .openBreakGlass(patient, 2, 900)
        .send()
        .await
        .expect("open again")
        .tx_hash();

    // Anchors.
    let records = RecordRegistry::new(c.record_registry, &practitioner_signer);
    let version = B256::repeat_byte(0xb1);
    let root = B256::repeat_byte(0xb2);
    records
        .anchor(version)
        .send()
        .await
        .expect("anchor")
        .tx_hash();
    records
        .anchorBatch(root, 10)
        .send()
        .await
        .expect("anchor batch")
        .tx_hash();
    let gateway_signer = anvil.signer(3);
    let audit_gateway = AuditAnchor::new(c.audit_anchor, &gateway_signer);
    let from_seq = audit_gateway
        .nextSeq(alloy::signers::Signer::address(
            &carechain_testkit::dev_signer(3),
        ))
        .call()
        .await
        .expect("nextSeq");
    let audit_root = B256::repeat_byte(0xc1);
    audit_gateway
        .anchorBatch(from_seq, from_seq + 9, audit_root)
        .send()
        .await
        .expect("audit batch")
        .tx_hash();

    // Index, listening to the notifications.
    let db = TestDb::create().await;
    let pool = db.pool().await;
    sqlx::migrate!("../migrations")
        .run(&pool)
        .await
        .expect("migrate");
    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener
        .listen_all([
            "carechain_consent",
            "carechain_membership",
            "carechain_anchor",
        ])
        .await
        .expect("listen");
    run_to_sync(&indexer_args(&anvil.url, &deployment, &db.url)).await;
    let mut notifications = Vec::new();
    while let Ok(Ok(Some(n))) =
        tokio::time::timeout(Duration::from_millis(500), listener.try_recv()).await
    {
        notifications.push((n.channel().to_owned(), n.payload().to_owned()));
    }

    // Row counts per event table.
    let expected_counts = [
        ("ev_organisation_admitted", 2),
        ("ev_organisation_status_changed", 2),
        ("ev_member_added", 3),
        ("ev_member_status_changed", 3),
        ("ev_member_key_rotated", 1),
        ("ev_membership_mirror_set", 1),
        ("ev_endpoint_set", 2),
        ("ev_role_granted", 7),
        ("ev_role_revoked", 1),
        ("ev_role_admin_changed", 0),
        ("ev_consent_granted", 3),
        ("ev_consent_revoked", 1),
        ("ev_nonces_invalidated", 1),
        ("ev_delegate_set", 2),
        ("ev_proxy_scope_set", 1),
        ("ev_delegate_removed", 1),
        ("ev_break_glass_opened", 2),
        ("ev_break_glass_closed", 1),
        ("ev_break_glass_max_duration_set", 2),
        ("ev_record_anchored", 1),
        ("ev_record_batch_anchored", 1),
        ("ev_gateway_registered", 2),
        ("ev_gateway_removed", 1),
        ("ev_audit_batch_anchored", 1),
    ];
    for (table, want) in expected_counts {
        let got: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&pool)
                .await
                .expect("count");
        assert_eq!(got, want, "{table}");
    }
    assert_eq!(
        expected_counts.len(),
        carechain_indexer::events::EVENT_TABLES.len(),
        "every event table is checked"
    );

    // Decoded fields against what was sent, and the transaction hash against the chain.
    let row = sqlx::query(
        "SELECT patient, grantee, actor, resource_types, actions, purposes, valid_from, valid_until, \
         consent_hash, tx_hash, block_number FROM ev_consent_granted WHERE grantee = $1",
    )
    .bind(lab.as_slice())
    .fetch_one(&pool)
    .await
    .expect("grant row");
    assert_eq!(row.get::<Vec<u8>, _>(0), patient.to_vec());
    assert_eq!(
        row.get::<Vec<u8>, _>(2),
        delegate.to_vec(),
        "actor is the delegate"
    );
    assert_eq!(row.get::<i64, _>(3), 0b100);
    assert_eq!(row.get::<i16, _>(4), 0b1);
    assert_eq!(row.get::<i32, _>(5), 0b100);
    assert_eq!(row.get::<i64, _>(6), 0);
    assert_eq!(row.get::<i64, _>(7), (now + 1_000_000) as i64);
    assert_eq!(row.get::<Vec<u8>, _>(8), h3.to_vec());
    let tx_hash = B256::from_slice(&row.get::<Vec<u8>, _>(9));
    let receipt = anvil
        .provider()
        .get_transaction_receipt(tx_hash)
        .await
        .expect("receipt")
        .expect("tx exists");
    assert_eq!(receipt.block_number, Some(row.get::<i64, _>(10) as u64));

    let row = sqlx::query(
        "SELECT org, kind, name FROM ev_organisation_admitted ORDER BY block_number LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("admitted");
    assert_eq!(row.get::<Vec<u8>, _>(0), hospital.to_vec());
    assert_eq!(row.get::<i16, _>(1), 1);
    assert_eq!(row.get::<String, _>(2), "St Mary's");
    let (org, url): (Vec<u8>, String) =
        sqlx::query_as("SELECT org, url FROM organisation_endpoints")
            .fetch_one(&pool)
            .await
            .expect("the current endpoint");
    assert_eq!(
        (org, url.as_str()),
        (hospital.to_vec(), "https://fhir2.st-marys.example"),
        "the last endpoint published is the current one"
    );
    let row = sqlx::query("SELECT org, old_key, new_key FROM ev_member_key_rotated")
        .fetch_one(&pool)
        .await
        .expect("rotated");
    assert_eq!(
        (
            row.get::<Vec<u8>, _>(0),
            row.get::<Vec<u8>, _>(1),
            row.get::<Vec<u8>, _>(2)
        ),
        (hospital.to_vec(), service.to_vec(), rotated.to_vec())
    );
    let row = sqlx::query("SELECT batch_id::text, gateway, from_seq::text, to_seq::text, root FROM ev_audit_batch_anchored")
        .fetch_one(&pool)
        .await
        .expect("audit batch");
    assert_eq!(row.get::<String, _>(2), from_seq.to_string());
    assert_eq!(row.get::<String, _>(3), (from_seq + 9).to_string());
    assert_eq!(row.get::<Vec<u8>, _>(4), audit_root.to_vec());
    let row = sqlx::query("SELECT contract, account FROM ev_role_revoked")
        .fetch_one(&pool)
        .await
        .expect("role revoked");
    assert_eq!(row.get::<Vec<u8>, _>(0), c.provider_registry.to_vec());
    assert_eq!(row.get::<Vec<u8>, _>(1), gateway2.to_vec());

    // Derived state against the views.
    let view = ProviderRegistry::new(c.provider_registry, anvil.provider());
    let orgs = sqlx::query("SELECT org, kind, status, name FROM organisations ORDER BY org")
        .fetch_all(&pool)
        .await
        .expect("organisations");
    assert_eq!(orgs.len(), 2);
    for row in orgs {
        let org = Address::from_slice(&row.get::<Vec<u8>, _>(0));
        let on_chain = view.organisation(org).call().await.expect("organisation");
        assert_eq!(
            row.get::<i16, _>(1),
            i16::from(on_chain.kind),
            "kind of {org}"
        );
        assert_eq!(
            row.get::<i16, _>(2),
            i16::from(on_chain.status),
            "status of {org}"
        );
    }
    let members = sqlx::query("SELECT member_key, org, role, status FROM members")
        .fetch_all(&pool)
        .await
        .expect("members");
    assert_eq!(
        members.len(),
        4,
        "practitioner, service (retired by rotation), rotated key, lab key"
    );
    for row in members {
        let key = Address::from_slice(&row.get::<Vec<u8>, _>(0));
        let on_chain = view.member(key).call().await.expect("member");
        assert_eq!(
            row.get::<Vec<u8>, _>(1),
            on_chain.org.to_vec(),
            "org of {key}"
        );
        assert_eq!(
            row.get::<i16, _>(2),
            i16::from(on_chain.role),
            "role of {key}"
        );
        assert_eq!(
            row.get::<i16, _>(3),
            i16::from(on_chain.status),
            "status of {key}"
        );
    }
    let consents_view = ConsentRegistry::new(c.consent_registry, anvil.provider());
    for grantee in [hospital, practitioner, lab] {
        let on_chain = consents_view
            .consentOf(patient, grantee)
            .call()
            .await
            .expect("consentOf");
        let row = sqlx::query(
            "SELECT resource_types, actions, purposes, valid_from, valid_until FROM consents \
             WHERE patient = $1 AND grantee = $2",
        )
        .bind(patient.as_slice())
        .bind(grantee.as_slice())
        .fetch_optional(&pool)
        .await
        .expect("consent");
        match row {
            None => assert_eq!(
                on_chain.validUntil,
                U40::ZERO,
                "{grantee} has a consent on chain but none indexed"
            ),
            Some(row) => {
                assert_eq!(row.get::<i64, _>(0) as u64, on_chain.resourceTypes);
                assert_eq!(row.get::<i16, _>(1), i16::from(on_chain.actions));
                assert_eq!(row.get::<i32, _>(2), i32::from(on_chain.purposes));
                assert_eq!(row.get::<i64, _>(3) as u64, on_chain.validFrom.to::<u64>());
                assert_eq!(row.get::<i64, _>(4) as u64, on_chain.validUntil.to::<u64>());
            }
        }
    }
    let consent_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM consents")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(consent_rows, 2, "the revoked consent is gone");
    let proxy_row = sqlx::query(
        "SELECT patient, delegate, resource_types, actions, purposes FROM ev_proxy_scope_set",
    )
    .fetch_one(&pool)
    .await
    .expect("proxy scope row");
    assert_eq!(proxy_row.get::<Vec<u8>, _>("patient"), patient.to_vec());
    assert_eq!(proxy_row.get::<Vec<u8>, _>("delegate"), delegate.to_vec());
    assert_eq!(proxy_row.get::<i64, _>("resource_types"), 0b10);
    assert_eq!(proxy_row.get::<i16, _>("actions"), 0b10010);
    assert_eq!(proxy_row.get::<i32, _>("purposes"), 0b1);
    let delegate_view = consents_view
        .delegateOf(patient, delegate)
        .call()
        .await
        .expect("delegateOf");
    let delegate_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM delegates")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(delegate_view.kind, 0);
    assert_eq!(delegate_rows, 0, "the removed delegate is gone");
    let session = consents_view
        .breakGlassOf(patient, hospital)
        .call()
        .await
        .expect("breakGlassOf");
    let open = sqlx::query(
        "SELECT session_id::text, opener, reason, expires_at FROM break_glass_sessions \
         WHERE patient = $1 AND org = $2 AND closed_block IS NULL",
    )
    .bind(patient.as_slice())
    .bind(hospital.as_slice())
    .fetch_one(&pool)
    .await
    .expect("open session");
    assert_eq!(open.get::<String, _>(0), session.id.to_string());
    assert_eq!(open.get::<Vec<u8>, _>(1), session.opener.to_vec());
    assert_eq!(open.get::<i16, _>(2), i16::from(session.reason));
    assert_eq!(open.get::<i64, _>(3) as u64, session.expiresAt.to::<u64>());
    let closed: (String, Vec<u8>) = sqlx::query_as(
        "SELECT session_id::text, closer FROM break_glass_sessions WHERE closed_block IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .expect("closed session");
    assert_eq!(closed, ("1".to_owned(), practitioner.to_vec()));
    let max: i64 = sqlx::query_scalar("SELECT max_duration FROM break_glass_max_duration")
        .fetch_one(&pool)
        .await
        .expect("max duration");
    assert_eq!(
        max as u32,
        consents_view
            .maxBreakGlassDuration()
            .call()
            .await
            .expect("view")
    );
    let records_view = RecordRegistry::new(c.record_registry, anvil.provider());
    // Anchors are per organisation: the practitioner anchored for the hospital.
    let anchored: Vec<u8> =
        sqlx::query_scalar("SELECT org FROM record_anchors WHERE version_hash = $1")
            .bind(version.as_slice())
            .fetch_one(&pool)
            .await
            .expect("anchor");
    assert_eq!(anchored, hospital.to_vec());
    assert_eq!(
        anchored,
        records_view
            .anchorOf(version, hospital)
            .call()
            .await
            .expect("anchorOf")
            .org
            .to_vec()
    );
    let (org, count): (Vec<u8>, i64) =
        sqlx::query_as("SELECT org, leaf_count FROM record_batches WHERE root = $1")
            .bind(root.as_slice())
            .fetch_one(&pool)
            .await
            .expect("batch");
    let batch = records_view
        .batchOf(root, hospital)
        .call()
        .await
        .expect("batchOf");
    assert_eq!(org, hospital.to_vec());
    assert_eq!((org, count), (batch.org.to_vec(), i64::from(batch.count)));
    let audit_view = AuditAnchor::new(c.audit_anchor, anvil.provider());
    let gateways: Vec<Vec<u8>> = sqlx::query_scalar("SELECT gateway FROM audit_gateways")
        .fetch_all(&pool)
        .await
        .expect("gateways");
    assert_eq!(gateways, vec![gateway.to_vec()]);
    assert!(
        audit_view
            .isGateway(gateway)
            .call()
            .await
            .expect("isGateway")
    );
    assert!(
        !audit_view
            .isGateway(gateway2)
            .call()
            .await
            .expect("isGateway")
    );
    let (batch_id, root_db): (String, Vec<u8>) =
        sqlx::query_as("SELECT batch_id::text, root FROM audit_batches")
            .fetch_one(&pool)
            .await
            .expect("audit batch");
    let on_chain = audit_view
        .batch(batch_id.parse().expect("id"))
        .call()
        .await
        .expect("batch");
    assert_eq!(root_db, on_chain.root.to_vec());
    assert_eq!(on_chain.gateway, gateway);

    // Notifications name the patient, the organisations and the gateway.
    let has = |channel: &str, needle: &str| {
        notifications
            .iter()
            .any(|(c, p)| c == channel && p.to_lowercase().contains(&needle.to_lowercase()))
    };
    assert!(has("carechain_consent", &hex(patient)), "{notifications:?}");
    assert!(
        has("carechain_membership", &hex(hospital)),
        "{notifications:?}"
    );
    assert!(has("carechain_membership", &hex(lab)), "{notifications:?}");
    assert!(has("carechain_anchor", &hex(hospital)), "{notifications:?}");
    assert!(has("carechain_anchor", &hex(gateway)), "{notifications:?}");
    for (_, payload) in &notifications {
        let json: serde_json::Value = serde_json::from_str(payload).expect("JSON payload");
        assert_eq!(json["chainId"], 31337);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_with_a_clear_message() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let db = TestDb::create().await;

    // Manifest for another chain id than the RPC's.
    let text = std::fs::read_to_string(&deployment.manifest_path).expect("manifest");
    let other = deployment.manifest_path.with_file_name("other-chain.json");
    std::fs::write(&other, text.replace("31337", "4242")).expect("write");
    let mut args = indexer_args(&anvil.url, &deployment, &db.url);
    args[3] = other.display().to_string();
    let mut proc = IndexerProc::spawn(&args);
    let status = proc.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success());
    assert!(
        proc.log_text().contains("is for chain id 4242"),
        "{}",
        proc.log_text()
    );
    assert!(
        proc.log_text().contains("serves chain id 31337"),
        "{}",
        proc.log_text()
    );

    // Unreadable manifest.
    args[3] = "/nonexistent/manifest.json".into();
    let mut proc = IndexerProc::spawn(&args);
    assert!(!proc.wait_exit(Duration::from_secs(30)).await.success());
    assert!(
        proc.log_text()
            .contains("cannot read deployment manifest /nonexistent/manifest.json"),
        "{}",
        proc.log_text()
    );

    // Unreachable database.
    let mut args = indexer_args(&anvil.url, &deployment, &db.url);
    args[5] = format!("postgres://nobody:secret@127.0.0.1:{}/x", free_port());
    let mut proc = IndexerProc::spawn(&args);
    assert!(!proc.wait_exit(Duration::from_secs(30)).await.success());
    let log = proc.log_text();
    assert!(
        log.contains("cannot connect to PostgreSQL at postgres://nobody:***@127.0.0.1"),
        "{log}"
    );
    assert!(!log.contains("secret"), "the password is not logged: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_cursor_and_head() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    consent_load(
        &anvil.url,
        deployment.manifest.contracts.consent_registry,
        0,
        5,
    )
    .await;
    let db = TestDb::create().await;
    let port = free_port();
    let mut args = indexer_args(&anvil.url, &deployment, &db.url);
    args.extend(["--metrics-listen".into(), format!("127.0.0.1:{port}")]);
    let proc = IndexerProc::spawn(&args);
    let pool = db.pool().await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
    let head = anvil.head().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect metrics");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("response");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(&format!("carechain_indexer_cursor {head}\n")),
        "{body}"
    );
    assert!(
        body.contains(&format!("carechain_indexer_chain_head {head}\n")),
        "{body}"
    );
    assert!(body.contains("carechain_indexer_lag_blocks 0\n"), "{body}");
    assert!(
        body.contains("carechain_indexer_reorgs_handled_total 0\n"),
        "{body}"
    );
    assert!(
        !body.contains("carechain_indexer_events_indexed_total 0\n"),
        "{body}"
    );
    proc.kill9().await;
}
