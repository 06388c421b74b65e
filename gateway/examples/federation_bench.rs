//! `bench/federation`: a patient's records spread over three custodians (Hospital A, Hospital
//! B, a lab: each its own gateway, database and indexer), searched from Hospital B's gateway
//! (50 entries a page, merged from the three), against the same search at one gateway holding
//! all the records, in the same run; and a remote record read by id.
//!
//! Needs what the integration tests need (`DATABASE_URL` server, anvil, forge); prints
//! `FIGURE <name> <value> <unit>` lines.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "bench_support/mod.rs"]
mod bench_support;
#[path = "../tests/common/mod.rs"]
mod common;

use alloy::primitives::{B256, aliases::U40};
use bench_support::{Load, figure, load, load_spread};
use carechain_contracts::{Action, Purpose, ResourceType};
use carechain_testkit::Custodian;
use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::{Value, json};

/// Records of the patient at each custodian (and all of them at the baseline gateway).
const PER_CUSTODIAN: usize = 100;

struct Member {
    custodian: Custodian,
    gw: TestGateway,
    _indexer: TestIndexer,
}

async fn member(chain: &TestChain) -> Member {
    let custodian = chain.custodian().await;
    let db = fresh_database().await;
    let indexer = TestIndexer::start(chain, &db).await;
    let gw = TestGateway::start_with(chain, &db, |c| {
        custodian.configure(c);
        c.federation.peer_allow_plain_http_loopback = true;
        c.max_index_lag_blocks = 100_000;
        c.user_limits = carechain_gateway::config::UserLimits {
            reads_per_minute: u32::MAX,
            searches_per_minute: u32::MAX,
            writes_per_minute: u32::MAX,
        };
    })
    .await;
    Member {
        custodian,
        gw,
        _indexer: indexer,
    }
}

/// Writes `n` of the patient's Observations at `member` in one transaction Bundle; their ids,
/// once anchored.
async fn write(
    member: &Member,
    token: &str,
    patient: &str,
    n: usize,
    offset: usize,
) -> Vec<String> {
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            let i = i + offset;
            json!({"fullUrl": format!("urn:uuid:{i}"),
                   "request": {"method": "POST", "url": "Observation"},
                   "resource": {"resourceType": "Observation", "status": "final",
                       "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                       "subject": {"reference": format!("Patient/{patient}")},
                       "effectiveDateTime": format!("2026-{:02}-{:02}T08:00:00Z", 1 + i % 12, 1 + i % 28),
                       "valueQuantity": {"value": 60 + i % 40, "unit": "/min"}}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let answer: Value = member
        .gw
        .http
        .post(member.gw.url("/"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<String> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["response"]["location"]
                .as_str()
                .unwrap()
                .split('/')
                .nth(1)
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), n, "{answer}");
    let pool = member.gw.pool.clone();
    common::eventually(|| async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM gateway_resource_versions WHERE anchor_pending",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
            == 0
    })
    .await;
    ids
}

#[tokio::main]
async fn main() {
    let chain = TestChain::start().await;
    let a = member(&chain).await;
    let b = member(&chain).await;
    let lab = member(&chain).await;
    // The baseline: one gateway holding all the records (its endpoint is not published, so no
    // federated search asks it).
    let all = member(&chain).await;
    for m in [&a, &b, &lab] {
        chain
            .providers()
            .setEndpoint(m.custodian.org.address(), m.gw.base.clone())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    let patient = chain.wallet().await;
    let me = format!("{:#x}", patient.address());
    let dr_b = b.custodian.practitioner.clone();
    chain
        .consents_as(&patient)
        .grant(
            patient.address(),
            dr_b.address(),
            ResourceType::Observation.bit(),
            Action::to_bits(&[Action::Read, Action::Search]),
            Purpose::Treat.bit(),
            U40::ZERO,
            U40::from(4_000_000_000u64),
            B256::repeat_byte(1),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let head = chain.head().await;
    for m in [&a, &b, &lab, &all] {
        m.gw.wait_indexed(head).await;
    }
    // A patient's history alternates between providers: the records are written in turns of
    // ten at each custodian, so the merged order interleaves them.
    let mut remote_ids = Vec::new();
    let tokens = [
        a.gw.sign_in(&patient).await,
        b.gw.sign_in(&patient).await,
        lab.gw.sign_in(&patient).await,
    ];
    for turn in 0..PER_CUSTODIAN / 10 {
        for (i, m) in [&a, &b, &lab].into_iter().enumerate() {
            let ids = write(m, &tokens[i], &me, 10, (turn * 3 + i) * 10).await;
            if i != 1 {
                remote_ids.extend(ids);
            }
        }
    }
    let token = all.gw.sign_in(&patient).await;
    for i in 0..3 {
        write(&all, &token, &me, PER_CUSTODIAN, i * PER_CUSTODIAN).await;
    }
    eprintln!(
        "{} records at each of three custodians, {} at the baseline gateway",
        PER_CUSTODIAN,
        3 * PER_CUSTODIAN
    );

    // The anchors become final (anvil's `finalized` is 64 blocks back), as a consortium's
    // records are long before anyone reads them: every gateway then verifies a root once.
    let head = chain.mine(70).await;
    for m in [&a, &b, &lab, &all] {
        m.gw.wait_indexed(head).await;
    }

    // Dr B: at Hospital B's gateway the search is federated; at the baseline gateway (another
    // organisation's, where Dr B is not a member) it is answered from its own records only.
    let federated_token = b.gw.sign_in(&dr_b).await;
    let local_token = all.gw.sign_in(&dr_b).await;
    let search = |gw: &TestGateway| gw.url(&format!("/Observation?patient={me}&_count=50"));
    for (gw, token) in [(&b.gw, &federated_token), (&all.gw, &local_token)] {
        let page: Value = gw
            .http
            .get(search(gw))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let matches = page["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .count();
        assert_eq!(matches, 50, "{page}");
        assert_eq!(
            page["total"],
            3 * PER_CUSTODIAN,
            "every record counted once"
        );
    }

    // Alternating rounds, so neither side always runs on the warmer machine.
    let mut federated: Vec<Load> = Vec::new();
    let mut local: Vec<Load> = Vec::new();
    for round in 0..2 {
        if round % 2 == 0 {
            local.push(load(&all.gw.http, &search(&all.gw), &local_token, 8).await);
            federated.push(load(&b.gw.http, &search(&b.gw), &federated_token, 8).await);
        } else {
            federated.push(load(&b.gw.http, &search(&b.gw), &federated_token, 8).await);
            local.push(load(&all.gw.http, &search(&all.gw), &local_token, 8).await);
        }
    }
    let rps = |loads: &[Load]| loads.iter().map(|l| l.rps).sum::<f64>() / loads.len() as f64;
    let p99 = |loads: &[Load]| loads.iter().map(|l| l.p99_ms).fold(0.0, f64::max);
    figure("federation.search.p99_ms.c8", p99(&federated), "ms");
    figure("federation.search.per_s.c8", rps(&federated), "searches/s");
    figure(
        "federation.search.local_per_s.c8",
        rps(&local),
        "searches/s",
    );
    figure("federation.search.local_p99_ms.c8", p99(&local), "ms");
    figure(
        "federation.search.ratio_vs_local",
        rps(&federated) / rps(&local),
        "ratio",
    );
    // Why: on one host the three custodians share the cores. A federated page is three
    // searches of a share each (B's own and the two others', every one decided, decrypted,
    // verified and audited) plus the merge; the same host serving one share-sized search
    // bounds what the three can do together.
    let share = 50usize.div_ceil(3) + 50usize.div_ceil(6);
    let share_search = all
        .gw
        .url(&format!("/Observation?patient={me}&_count={share}"));
    let shares = load(&all.gw.http, &share_search, &local_token, 8).await;
    figure("federation.search.share_per_s.c8", shares.rps, "searches/s");
    figure(
        "federation.search.bound_ratio_one_host",
        shares.rps / 3.0 / rps(&local),
        "ratio",
    );

    // A remote record by id at B (Hospital A's and the lab's records, drawn at random).
    let urls: Vec<String> = remote_ids
        .iter()
        .map(|id| b.gw.url(&format!("/Observation/{id}")))
        .collect();
    let reads = load_spread(&b.gw.http, &urls, &federated_token, 8).await;
    figure("federation.read.p99_ms.c8", reads.p99_ms, "ms");
    figure("federation.read.per_s.c8", reads.rps, "reads/s");
}
