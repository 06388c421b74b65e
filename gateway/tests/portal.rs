//! The patient portal's gateway side (`/portal`): its files under a strict policy and
//! unaudited; the EIP-4361 text the gateway writes for a wallet to sign; typed data prepared by
//! the gateway that the relay then accepts, for a grant, a revocation and delegates; the
//! directory, delegates and custodians a patient (and nobody else) reads.
//! The page itself is driven in Chromium by `tests/tests/portal.rs`.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use alloy::signers::{SignerSync, local::PrivateKeySigner};
use carechain_contracts::{
    OrgKind,
    typed_data::{ConsentDomain, ConsentMessage},
};
use common::*;
use serde_json::{Value, json};

struct Setup {
    chain: TestChain,
    gateway: TestGateway,
    _indexer: TestIndexer,
}

async fn setup() -> Setup {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let relayer = chain.wallet().await;
    let key = format!("0x{}", alloy::hex::encode(relayer.to_bytes()));
    let indexer = TestIndexer::start(&chain, &db).await;
    let gateway = TestGateway::start_with(&chain, &db, |c| c.relay_key = Some(key)).await;
    Setup {
        chain,
        gateway,
        _indexer: indexer,
    }
}

impl Setup {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .gateway
            .http
            .post(self.gateway.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .gateway
            .http
            .get(self.gateway.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// Asks the gateway for typed data, signs it as a wallet would and relays it; returns the
    /// relay's answer and the typed data's words.
    async fn sign_and_relay(&self, signer: &PrivateKeySigner, request: Value) -> (Value, Value) {
        let (status, prepared) = self.post("/portal/api/typed-data", &request).await;
        assert_eq!(status, 200, "{prepared}");
        let typed = &prepared["typedData"];
        let (message, claimed) = ConsentMessage::from_wallet_json(typed).unwrap();
        let domain = ConsentDomain {
            chain_id: self.gateway.chain_id,
            verifying_contract: self.chain.manifest.contracts.consent_registry,
        };
        assert!(claimed.is(&domain), "the typed data names this deployment");
        let signature = signer
            .sign_hash_sync(&message.signing_hash(&domain))
            .unwrap();
        let (status, relayed) = self
            .post(
                "/relay/consent",
                &json!({"typedData": typed,
                        "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes()))}),
            )
            .await;
        assert_eq!(status, 200, "{relayed}");
        (relayed, prepared)
    }
}

fn words(prepared: &Value) -> String {
    prepared["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{}: {}", l["label"], l["text"]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_under_a_strict_policy_and_not_audited() {
    let s = setup().await;
    let rows = s.gateway.audit_rows().await;
    let page = s
        .gateway
        .http
        .get(s.gateway.url("/portal"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(page.text().await.unwrap().contains("/portal/js/main.js"));
    let script = s
        .gateway
        .http
        .get(s.gateway.url("/portal/js/main.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let missing = s
        .gateway
        .http
        .get(s.gateway.url("/portal/js/not-there.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        s.gateway.audit_rows().await,
        rows,
        "the page's files are not audited"
    );
    // Its API is.
    let (status, context) = s
        .post("/portal/api/sign-in", &json!({"address": "nope"}))
        .await;
    assert_eq!(status, 400, "{context}");
    assert_eq!(s.gateway.audit_rows().await, rows + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_sign_in_text_signs_in_a_lower_case_wallet_address() {
    let s = setup().await;
    let patient = PrivateKeySigner::random();
    let address = format!("{:#x}", patient.address());
    let (status, body) = s
        .post("/portal/api/sign-in", &json!({"address": address}))
        .await;
    assert_eq!(status, 200, "{body}");
    let text = body["message"].as_str().unwrap();
    assert!(
        text.contains(&patient.address().to_checksum(None)),
        "EIP-55 address: {text}"
    );
    let signature = patient.sign_message_sync(text.as_bytes()).unwrap();
    let (status, login) = s
        .gateway
        .login(
            text,
            &format!("0x{}", alloy::hex::encode(signature.as_bytes())),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["address"], address);
    // The same text signed by someone else is refused.
    let stranger = PrivateKeySigner::random()
        .sign_message_sync(text.as_bytes())
        .unwrap();
    let (status, _) = s
        .gateway
        .login(
            text,
            &format!("0x{}", alloy::hex::encode(stranger.as_bytes())),
        )
        .await;
    assert_ne!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_data_from_the_gateway_is_what_the_relay_submits() {
    let s = setup().await;
    let hospital = s.chain.wallet().await;
    s.chain
        .admit_organisation(hospital.address(), OrgKind::Hospital, "Hospital B")
        .await;
    // The words name it from the directory the indexer keeps.
    s.gateway.wait_indexed(s.chain.head().await).await;
    // A patient with no ether.
    let patient = PrivateKeySigner::random();
    let registry = s.chain.consents_as(&hospital);
    let in_a_month = u64::try_from(chrono::Utc::now().timestamp()).unwrap() + 30 * 86400;
    let (relayed, prepared) = s
        .sign_and_relay(
            &patient,
            json!({"kind": "grant", "patient": format!("{:#x}", patient.address()),
                   "grantee": format!("{:#x}", hospital.address()),
                   "resourceTypes": ["Observation", "Condition"], "actions": ["read", "search"],
                   "purposes": ["TREAT"], "validUntil": in_a_month}),
        )
        .await;
    assert_eq!(relayed["kind"], "grant");
    let said = words(&prepared);
    assert!(
        said.contains("Hospital B") && said.contains("Observation, Condition"),
        "{said}"
    );
    assert_eq!(
        prepared["typedData"]["message"]["consentHash"],
        format!(
            "{}",
            carechain_formats::canonical::canonical_hash(&prepared["fhirConsent"])
        ),
        "the grant carries the hash of the FHIR Consent it mirrors"
    );
    let stored = registry
        .consentOf(patient.address(), hospital.address())
        .call()
        .await
        .unwrap();
    assert_eq!(stored.resourceTypes, 0b110);
    assert_eq!(stored.validUntil.to::<u64>(), in_a_month);

    // The next request uses the next nonce; the revocation ends the consent.
    let (relayed, prepared) = s
        .sign_and_relay(
            &patient,
            json!({"kind": "revoke", "patient": format!("{:#x}", patient.address()),
                   "grantee": format!("{:#x}", hospital.address())}),
        )
        .await;
    assert_eq!(relayed["kind"], "revoke");
    assert_eq!(prepared["typedData"]["message"]["nonce"], "1");
    let stored = registry
        .consentOf(patient.address(), hospital.address())
        .call()
        .await
        .unwrap();
    assert_eq!(stored.validUntil.to::<u64>(), 0);

    // A caregiver appointed, listed for the patient (not for a stranger), then removed.
    let carer = PrivateKeySigner::random();
    let (_, prepared) = s
        .sign_and_relay(
            &patient,
            json!({"kind": "set-delegate", "patient": format!("{:#x}", patient.address()),
                   "delegate": format!("{:#x}", carer.address()), "relationship": "caregiver",
                   "validUntil": in_a_month}),
        )
        .await;
    assert!(words(&prepared).contains("caregiver"));
    let head = s.chain.head().await;
    s.gateway.wait_indexed(head).await;
    let token = s.gateway.sign_in(&patient).await;
    let delegates_path = format!("/portal/api/delegates?patient={:#x}", patient.address());
    let (status, listed) = s.get(&delegates_path, &token).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["delegates"][0]["address"],
        format!("{:#x}", carer.address())
    );
    assert_eq!(listed["delegates"][0]["kind"], "caregiver");
    assert_eq!(listed["delegates"][0]["active"], true);
    let stranger = s.gateway.sign_in(&PrivateKeySigner::random()).await;
    let (status, _) = s.get(&delegates_path, &stranger).await;
    assert_eq!(status, 403);
    let custodians_path = format!("/portal/api/custodians?patient={:#x}", patient.address());
    let (status, _) = s.get(&custodians_path, &stranger).await;
    assert_eq!(status, 403);
    let (status, custodians) = s.get(&custodians_path, &token).await;
    assert_eq!(status, 200, "{custodians}");
    s.sign_and_relay(
        &patient,
        json!({"kind": "remove-delegate", "patient": format!("{:#x}", patient.address()),
               "delegate": format!("{:#x}", carer.address())}),
    )
    .await;
    let gone = registry
        .delegateOf(patient.address(), carer.address())
        .call()
        .await
        .unwrap();
    assert_eq!(gone.validUntil.to::<u64>(), 0);

    // A proxy, within a scope of the patient's choosing.
    let proxy = PrivateKeySigner::random();
    let (relayed, prepared) = s
        .sign_and_relay(
            &patient,
            json!({"kind": "set-proxy", "patient": format!("{:#x}", patient.address()),
                   "delegate": format!("{:#x}", proxy.address()), "resourceTypes": ["Observation"],
                   "actions": "rs", "purposes": ["TREAT"], "validUntil": in_a_month}),
        )
        .await;
    assert_eq!(relayed["kind"], "set-proxy");
    let said = words(&prepared);
    assert!(
        said.contains("proxy") && said.contains("Observation"),
        "{said}"
    );
    let appointed = registry
        .delegateOf(patient.address(), proxy.address())
        .call()
        .await
        .unwrap();
    assert_eq!(appointed.kind, 3, "a proxy");
    assert_eq!(appointed.validUntil.to::<u64>(), in_a_month);

    // The directory names the organisation.
    let (status, directory) = s.get("/portal/api/directory", &token).await;
    assert_eq!(status, 200);
    assert!(
        directory["organisations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "Hospital B" && o["kind"] == "Hospital" && o["active"] == true),
        "{directory}"
    );
}
