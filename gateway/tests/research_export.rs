//! FHIR Bulk Data export for research organisations, end to end: real Synthea records imported
//! into a real gateway (real anvil, real PostgreSQL, the indexer in process), consent for
//! HRESCH granted on chain by some patients only, and exports kicked off, polled and downloaded
//! over HTTP. Checked: the output holds exactly the consenting patients and types; a PHI scanner
//! finds nothing in any line; every line is valid R4; pseudonyms differ between studies; the
//! wrong requesters are refused or get nothing; cancel, expiry and a gateway restart.

#![allow(clippy::unwrap_used)]

mod client;
mod common;

use alloy::{
    primitives::{Address, B256, aliases::U40},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{Action, MemberRole, OrgKind, Purpose, ResourceType};
use carechain_deid::{DeidSecret, Deidentifier, Rules, scan::PhiScanner};
use carechain_fhir::import::{WalletLinks, link_patients};
use client::Client;
use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const SECRET: [u8; 32] = [7u8; 32];

fn synthea(file: &str) -> Value {
    let path = format!(
        "{}/../tests/data/synthea/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

async fn grant(
    chain: &TestChain,
    patient: &PrivateKeySigner,
    grantee: Address,
    types: u64,
    actions: u8,
    purposes: u16,
) -> u64 {
    chain
        .consents_as(patient)
        .grant(
            patient.address(),
            grantee,
            types,
            actions,
            purposes,
            U40::ZERO,
            U40::from(4_000_000_000u64),
            B256::repeat_byte(5),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .block_number
        .unwrap()
}

/// A research organisation with one member key.
async fn research_org(chain: &TestChain, name: &str) -> (PrivateKeySigner, PrivateKeySigner) {
    let org = chain.wallet().await;
    let key = chain.wallet().await;
    chain
        .admit_organisation(org.address(), OrgKind::Research, name)
        .await;
    chain
        .add_member(org.address(), key.address(), MemberRole::Practitioner)
        .await;
    (org, key)
}

/// What one patient's import put in the store: resources by type, and the sources the PHI
/// scanner learns from (the Bundle as sent, and each resource under the id the gateway gave it).
struct Imported {
    counts: BTreeMap<String, usize>,
    sources: Vec<Value>,
}

async fn import(doctor: &Client<'_>, file: &str, wallet: &str) -> Imported {
    let mut bundle = synthea(file);
    link_patients(&mut bundle, &WalletLinks::One(wallet.to_owned())).unwrap();
    let (status, _, answer) = doctor.post_bundle(bundle.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let mut counts = BTreeMap::new();
    let mut sources = Vec::new();
    for (entry, response) in bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .zip(answer["entry"].as_array().unwrap())
    {
        let resource = &entry["resource"];
        let rt = resource["resourceType"].as_str().unwrap().to_owned();
        let location = response["response"]["location"].as_str().unwrap();
        let mut stored = resource.clone();
        stored["id"] = json!(location.split('/').nth(1).unwrap());
        sources.push(resource.clone());
        sources.push(stored);
        *counts.entry(rt).or_insert(0) += 1;
    }
    Imported { counts, sources }
}

/// Kicks off, polls until the job ends; the final status and body.
async fn run_export(client: &Client<'_>, path: &str) -> (u16, Value, String) {
    let (status, headers, body) = client
        .send(
            reqwest::Method::GET,
            path,
            None,
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let location = headers["content-location"].to_str().unwrap().to_owned();
    let status_path = location.strip_prefix(&client.gw.base).unwrap().to_owned();
    loop {
        let (status, headers, body) = client.get(&status_path).await;
        if status != 202 {
            return (status, body, status_path);
        }
        assert!(headers.contains_key("x-progress"));
        assert!(headers.contains_key("retry-after"));
        // Polled faster than Retry-After asks, to keep the test short.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Downloads every file of a manifest: lines by type.
async fn download(client: &Client<'_>, manifest: &Value) -> BTreeMap<String, Vec<String>> {
    let mut files = BTreeMap::new();
    for output in manifest["output"].as_array().unwrap() {
        let url = output["url"].as_str().unwrap();
        let response = client
            .gw
            .http
            .get(url)
            .bearer_auth(&client.token)
            .header("accept", "application/fhir+ndjson")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/fhir+ndjson"
        );
        let text = response.text().await.unwrap();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        assert_eq!(lines.len() as u64, output["count"].as_u64().unwrap());
        files.insert(output["type"].as_str().unwrap().to_owned(), lines);
    }
    files
}

/// The Patient pseudonyms the lines reference or are.
fn patients_in(files: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (rt, lines) in files {
        for line in lines {
            let resource: Value = serde_json::from_str(line).unwrap();
            if rt == "Patient" {
                found.insert(resource["id"].as_str().unwrap().to_owned());
            }
            let text = line.as_str();
            let mut rest = text;
            while let Some(at) = rest.find("\"Patient/") {
                let tail = &rest[at + 9..];
                let end = tail.find('"').unwrap();
                found.insert(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_research_export_holds_exactly_the_consenting_patients_de_identified() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (research, researcher) = research_org(&chain, "Cohort Institute").await;
    let (_, other_researcher) = research_org(&chain, "Other Institute").await;
    let db = fresh_database().await;
    let (_export_tmp, export_dir) = tempfile_dir();
    let configure = |c: &mut carechain_gateway::GatewayConfig| {
        custodian.configure(c);
        c.research.deid_secret = Some(alloy::hex::encode(SECRET));
        c.research.export_dir = Some(export_dir.clone());
    };
    let gw = TestGateway::start_with(&chain, &db, configure).await;
    let indexer = TestIndexer::start(&chain, &db).await;
    let requests = std::cell::Cell::new(0i64);

    // Four patients, each imported from a Synthea Bundle by the hospital. Research consent:
    // P1 every type for HRESCH; P2 Observation and Condition for HRESCH; P3 every type but
    // for TREAT only; P4 none.
    let wallets: Vec<PrivateKeySigner> = vec![
        chain.wallet().await,
        chain.wallet().await,
        chain.wallet().await,
        chain.wallet().await,
    ];
    let hospital = custodian.org.address();
    let crs = Action::Create.bit() | Action::Read.bit() | Action::Search.bit();
    for w in &wallets {
        grant(
            &chain,
            w,
            hospital,
            ResourceType::ALL_BITS,
            crs,
            Purpose::Treat.bit(),
        )
        .await;
    }
    let read = Action::Read.bit();
    let research_bit = Purpose::Research.bit();
    grant(
        &chain,
        &wallets[0],
        research.address(),
        ResourceType::ALL_BITS,
        read,
        research_bit,
    )
    .await;
    grant(
        &chain,
        &wallets[1],
        research.address(),
        ResourceType::Observation.bit() | ResourceType::Condition.bit(),
        read,
        research_bit,
    )
    .await;
    let block = grant(
        &chain,
        &wallets[2],
        research.address(),
        ResourceType::ALL_BITS,
        read,
        Purpose::Treat.bit(),
    )
    .await;
    gw.wait_indexed(block).await;

    let doctor = Client::sign_in(&gw, &custodian.practitioner, &requests).await;
    let addr = |w: &PrivateKeySigner| format!("{:#x}", w.address());
    let files = [
        "bundle-afhir.json",
        "bundle-cfhir.json",
        "bundle-afhir.json",
        "bundle-cfhir.json",
    ];
    let mut imported = Vec::new();
    for (w, file) in wallets.iter().zip(files) {
        imported.push(import(&doctor, file, &addr(w)).await);
    }

    // The export, de-identified for study "study-a".
    let scientist = Client::sign_in(&gw, &researcher, &requests).await;
    let (status, manifest, status_path) = run_export(&scientist, "/Group/study-a/$export").await;
    assert_eq!(status, 200, "{manifest}");
    let start_block = manifest["extension"]["urn:carechain:consent-block"]
        .as_u64()
        .unwrap();
    assert!(start_block >= block);
    assert_eq!(manifest["extension"]["urn:carechain:study"], "study-a");
    assert_eq!(manifest["extension"]["urn:carechain:patients"], 2);
    assert_eq!(manifest["requiresAccessToken"], true);
    let output = download(&scientist, &manifest).await;

    // Exactly the consenting patients and types: P1 whole, P2's Observations and Conditions.
    let mut expected: BTreeMap<String, usize> = imported[0]
        .counts
        .iter()
        .filter(|(rt, _)| !matches!(rt.as_str(), "Organization" | "Practitioner"))
        .map(|(rt, n)| (rt.clone(), *n))
        .collect();
    for rt in ["Observation", "Condition"] {
        *expected.entry(rt.into()).or_insert(0) += imported[1].counts[rt];
    }
    let got: BTreeMap<String, usize> = output.iter().map(|(rt, l)| (rt.clone(), l.len())).collect();
    assert_eq!(got, expected);
    let deid = |study: &str| {
        Deidentifier::new(
            Rules::safe_harbor(),
            &DeidSecret::from_bytes(&SECRET).unwrap(),
            study,
            "any",
        )
        .unwrap()
    };
    let study_a = deid("study-a");
    let pseudonyms: Vec<String> = wallets
        .iter()
        .map(|w| study_a.pseudonym(&addr(w)).unwrap())
        .collect();
    assert_eq!(
        patients_in(&output),
        BTreeSet::from([pseudonyms[0].clone(), pseudonyms[1].clone()])
    );

    // No PHI in any line (names, telecom, address lines, postal codes beyond three digits,
    // full dates, wallets, the source's and the gateway's ids); every line is valid R4 and
    // tagged de-identified.
    let sources: Vec<&Value> = imported.iter().flat_map(|i| i.sources.iter()).collect();
    let scanner = PhiScanner::new(sources, true);
    let mut lines = 0;
    for text in output.values().flatten() {
        let findings = scanner.scan_line(text);
        assert!(findings.is_empty(), "{findings:?} in {text}");
        for w in &wallets {
            assert!(!text.contains(&addr(w)[2..]));
        }
        let resource: Value = serde_json::from_str(text).unwrap();
        carechain_fhir::validate(&resource).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(!resource["meta"]["security"].as_array().unwrap().is_empty());
        lines += 1;
    }
    assert!(lines > 500);

    // One AuditEvent for the job: who, the study, the counts, the start block; no PHI.
    let jobs: Vec<String> = sqlx::query_scalar(
        "SELECT event::text FROM gateway_audit_log WHERE event::text LIKE '%export-job%' ORDER BY seq",
    )
    .fetch_all(&gw.pool)
    .await
    .unwrap();
    assert_eq!(jobs.len(), 1);
    let job_event = &jobs[0];
    assert!(
        job_event.contains("study study-a: completed, 2 patients"),
        "{job_event}"
    );
    assert!(job_event.contains(&format!("{:#x}", researcher.address())));
    assert!(job_event.contains(&start_block.to_string()));
    for w in &wallets {
        assert!(!job_event.contains(&addr(w)[2..]));
    }

    // Another study: other pseudonyms for the same patients.
    let (status, manifest_b, _) =
        run_export(&scientist, "/Patient/$export?study=study-b&_type=Patient").await;
    assert_eq!(status, 200, "{manifest_b}");
    let output_b = download(&scientist, &manifest_b).await;
    assert_eq!(output_b.keys().collect::<Vec<_>>(), ["Patient"]);
    let in_b = patients_in(&output_b);
    assert_eq!(
        in_b,
        BTreeSet::from([deid("study-b").pseudonym(&addr(&wallets[0])).unwrap()])
    );
    assert!(!in_b.contains(&pseudonyms[0]));

    // Refused: the hospital's practitioner (not research), a patient; a kick-off without
    // `Prefer: respond-async`. A research organisation nobody consented to gets nothing.
    let patient = Client::sign_in(&gw, &wallets[0], &requests).await;
    for who in [&doctor, &patient] {
        let (status, _, body) = who
            .send(
                reqwest::Method::GET,
                "/$export?study=s",
                None,
                &[("prefer", "respond-async")],
            )
            .await;
        assert_eq!(status, 403, "{body}");
    }
    let (status, _, _) = scientist.get("/$export?study=s").await;
    assert_eq!(status, 400);
    let stranger = Client::sign_in(&gw, &other_researcher, &requests).await;
    let (status, empty, _) = run_export(&stranger, "/$export?study=s").await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["output"], json!([]));
    assert_eq!(empty["extension"]["urn:carechain:patients"], 0);
    // Nobody else polls or downloads a job.
    let (status, _, _) = stranger.get(&status_path).await;
    assert_eq!(status, 404);

    // A revocation: P1 is absent from the next export.
    let revoked = chain
        .consents_as(&wallets[0])
        .revoke(wallets[0].address(), research.address())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap()
        .block_number
        .unwrap();
    gw.wait_indexed(revoked).await;
    let (status, after, _) = run_export(&scientist, "/Group/study-a/$export").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        patients_in(&download(&scientist, &after).await),
        BTreeSet::from([pseudonyms[1].clone()])
    );

    // Cancel: a job (running or done) deleted is gone, files and all.
    let (status, headers, _) = scientist
        .send(
            reqwest::Method::GET,
            "/Group/study-a/$export",
            None,
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(status, 202);
    let cancelled = headers["content-location"]
        .to_str()
        .unwrap()
        .strip_prefix(&gw.base)
        .unwrap()
        .to_owned();
    let (status, _, _) = scientist
        .send(reqwest::Method::DELETE, &cancelled, None, &[])
        .await;
    assert_eq!(status, 202);
    let (status, _, _) = scientist.get(&cancelled).await;
    assert_eq!(status, 404);
    let job_id = cancelled.rsplit('/').next().unwrap();
    common::eventually(|| async { !export_dir.join(job_id).exists() }).await;

    // A restart: the completed job is still served by the next gateway on the database; a job
    // the stopped gateway was running is failed visibly (500 with the reason), never left
    // running.
    let (status, headers, _) = scientist
        .send(
            reqwest::Method::GET,
            "/Group/study-a/$export",
            None,
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(status, 202);
    let interrupted = headers["content-location"]
        .to_str()
        .unwrap()
        .strip_prefix(&gw.base)
        .unwrap()
        .to_owned();
    gw.stop().await;
    let gw = TestGateway::start_with(&chain, &db, configure).await;
    let scientist = Client::sign_in(&gw, &researcher, &requests).await;
    let (status, _, again) = scientist.get(&status_path).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(download(&scientist, &again).await.len(), output.len());
    // The old gateway's worker may still be ending the job: wait until it is not running.
    let (status, body) = loop {
        let (status, _, body) = scientist.get(&interrupted).await;
        if status != 202 {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    match status {
        200 => assert!(body["output"].is_array()),
        500 => assert!(
            body["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("kick off a new export")
        ),
        other => panic!("an interrupted job answered {other}: {body}"),
    }
    drop(indexer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_expire_a_crashed_job_fails_visibly_and_running_jobs_are_limited() {
    let chain = TestChain::start().await;
    let custodian = chain.custodian().await;
    let (research, researcher) = research_org(&chain, "Cohort Institute").await;
    let db = fresh_database().await;
    let (_export_tmp, export_dir) = tempfile_dir();
    let gw = TestGateway::start_with(&chain, &db, |c| {
        custodian.configure(c);
        c.research.deid_secret = Some(alloy::hex::encode(SECRET));
        c.research.export_dir = Some(export_dir.clone());
        c.research.export_ttl_secs = 1;
    })
    .await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let requests = std::cell::Cell::new(0i64);
    let p = chain.wallet().await;
    grant(
        &chain,
        &p,
        custodian.org.address(),
        ResourceType::ALL_BITS,
        Action::Create.bit() | Action::Read.bit(),
        Purpose::Treat.bit(),
    )
    .await;
    let block = grant(
        &chain,
        &p,
        research.address(),
        ResourceType::ALL_BITS,
        Action::Read.bit(),
        Purpose::Research.bit(),
    )
    .await;
    gw.wait_indexed(block).await;
    let doctor = Client::sign_in(&gw, &custodian.practitioner, &requests).await;
    import(&doctor, "bundle-afhir.json", &format!("{:#x}", p.address())).await;
    let scientist = Client::sign_in(&gw, &researcher, &requests).await;
    let (status, manifest, status_path) =
        run_export(&scientist, "/$export?study=s1&_type=Observation").await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["output"][0]["count"], 187);
    let job_id = status_path.rsplit('/').next().unwrap().to_owned();
    // Past its time the job is expired at the next look: 404, and its files are gone.
    common::eventually(|| async { scientist.get(&status_path).await.0 == 404 }).await;
    assert!(!export_dir.join(&job_id).exists());

    // A job left running by a gateway that crashed (its row says running, its heartbeat is old)
    // is failed at the next poll, with the reason, never answered 202 forever.
    sqlx::query(
        "INSERT INTO research_export_jobs
           (id, requester, org, study, level, types, deidentified, request_url, state, start_block,
            heartbeat_at)
         VALUES ('crashed', $1, $2, 's1', 'system', '{Observation}', true, 'x', 'running', 1,
                 now() - interval '1 hour')",
    )
    .bind(format!("{:#x}", researcher.address()))
    .bind(format!("{:#x}", research.address()))
    .execute(&gw.pool)
    .await
    .unwrap();
    let (status, _, outcome) = scientist.get("/$export-status/crashed").await;
    assert_eq!(status, 500, "{outcome}");
    let why = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(why.contains("stopped before it finished"), "{why}");

    // At most --export-max-jobs (2) run at once on the database: with two running (here, as
    // another gateway's would be), a kick-off is answered 429 with Retry-After.
    for id in ["busy-1", "busy-2"] {
        sqlx::query(
            "INSERT INTO research_export_jobs
               (id, requester, org, study, level, types, deidentified, request_url, state,
                start_block)
             VALUES ($1, $2, $2, 's1', 'system', '{Observation}', true, 'x', 'running', 1)",
        )
        .bind(id)
        .bind(format!("{:#x}", research.address()))
        .execute(&gw.pool)
        .await
        .unwrap();
    }
    let (status, headers, _) = scientist
        .send(
            reqwest::Method::GET,
            "/$export?study=s1",
            None,
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    sqlx::query("UPDATE research_export_jobs SET state = 'cancelled' WHERE id LIKE 'busy-%'")
        .execute(&gw.pool)
        .await
        .unwrap();
    let (status, _, body) = scientist
        .send(
            reqwest::Method::GET,
            "/$export?study=s1",
            None,
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

/// The gateway's export directory: removed with its contents when the first value drops.
fn tempfile_dir() -> (carechain_testkit::TempDir, std::path::PathBuf) {
    let dir = carechain_testkit::TempDir::new("export-test");
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// Two custodians (each its own database and gateway, the same consortium secret) export the
/// same patient for one study: the pseudonyms agree, so a researcher can join the two; in
/// another study they are other pseudonyms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonyms_agree_across_custodians_within_a_study() {
    let chain = TestChain::start().await;
    let (hospital_a, hospital_b) = (chain.custodian().await, chain.custodian().await);
    let (research, researcher) = research_org(&chain, "Cohort Institute").await;
    let patient = chain.wallet().await;
    let crs = Action::Create.bit() | Action::Read.bit() | Action::Search.bit();
    for hospital in [&hospital_a, &hospital_b] {
        grant(
            &chain,
            &patient,
            hospital.org.address(),
            ResourceType::ALL_BITS,
            crs,
            Purpose::Treat.bit(),
        )
        .await;
    }
    let block = grant(
        &chain,
        &patient,
        research.address(),
        ResourceType::ALL_BITS,
        Action::Read.bit(),
        Purpose::Research.bit(),
    )
    .await;
    let requests = std::cell::Cell::new(0i64);
    let wallet = format!("{:#x}", patient.address());
    let mut studies: Vec<BTreeMap<String, BTreeSet<String>>> = Vec::new();
    let mut keep = Vec::new();
    for (hospital, file) in [
        (&hospital_a, "bundle-afhir.json"),
        (&hospital_b, "bundle-cfhir.json"),
    ] {
        let db = fresh_database().await;
        let (_export_tmp, export_dir) = tempfile_dir();
        let gw = TestGateway::start_with(&chain, &db, |c| {
            hospital.configure(c);
            c.research.deid_secret = Some(alloy::hex::encode(SECRET));
            c.research.export_dir = Some(export_dir.clone());
        })
        .await;
        let indexer = TestIndexer::start(&chain, &db).await;
        gw.wait_indexed(block).await;
        let doctor = Client::sign_in(&gw, &hospital.practitioner, &requests).await;
        import(&doctor, file, &wallet).await;
        let scientist = Client::sign_in(&gw, &researcher, &requests).await;
        let mut by_study = BTreeMap::new();
        for study in ["study-x", "study-y"] {
            let (status, manifest, _) = run_export(
                &scientist,
                &format!("/Group/{study}/$export?_type=Patient,Observation"),
            )
            .await;
            assert_eq!(status, 200, "{manifest}");
            by_study.insert(
                study.to_owned(),
                patients_in(&download(&scientist, &manifest).await),
            );
        }
        studies.push(by_study);
        keep.push((gw, indexer));
    }
    let (at_a, at_b) = (&studies[0], &studies[1]);
    assert_eq!(at_a["study-x"].len(), 1);
    assert_eq!(
        at_a["study-x"], at_b["study-x"],
        "one patient, one pseudonym per study"
    );
    assert_eq!(at_a["study-y"], at_b["study-y"]);
    assert_ne!(
        at_a["study-x"], at_a["study-y"],
        "another study, another pseudonym"
    );
}
