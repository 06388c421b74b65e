//! Gas-free consent through the gateway (`POST /relay/consent`): a patient (or delegate) with
//! no ether signs EIP-712 typed data; the gateway checks it and submits it with its own key.
//! Refusals (replay, other chain or contract, expired, wrong signer, rate limit) happen before
//! any gas is spent: the relayer's transaction count does not move.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use alloy::{
    primitives::{Address, B256, U256, aliases::U40},
    providers::Provider,
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::{SolStruct, eip712_domain},
};
use carechain_contracts::ConsentRegistry;
use carechain_contracts::{
    bindings::IConsentRegistry::Grant,
    typed_data::{DOMAIN_NAME, DOMAIN_VERSION, Revoke},
};
use common::*;
use serde_json::{Value, json};

struct Setup {
    chain: TestChain,
    gateway: TestGateway,
    relayer: PrivateKeySigner,
}

async fn setup(per_hour: u32, per_client_per_minute: u32) -> Setup {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let relayer = chain.wallet().await;
    let key = format!("0x{}", alloy::hex::encode(relayer.to_bytes()));
    let gateway = TestGateway::start_with(&chain, &db, |c| {
        c.relay_key = Some(key);
        c.relay_per_patient_per_hour = per_hour;
        c.relay_per_client_per_minute = per_client_per_minute;
    })
    .await;
    Setup {
        chain,
        gateway,
        relayer,
    }
}

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap()
}

/// The typed data exactly as a wallet's `eth_signTypedData_v4` takes it, and its signature.
fn signed(
    signer: &PrivateKeySigner,
    chain_id: u64,
    registry: Address,
    primary: &str,
    message: Value,
    typed: &impl SolStruct,
) -> Value {
    let domain = eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: registry,
    };
    let digest = typed.eip712_signing_hash(&domain);
    let signature = signer.sign_hash_sync(&digest).unwrap();
    let grant_fields = json!([
        {"name": "patient", "type": "address"},
        {"name": "grantee", "type": "address"},
        {"name": "resourceTypes", "type": "uint64"},
        {"name": "actions", "type": "uint8"},
        {"name": "purposes", "type": "uint16"},
        {"name": "validFrom", "type": "uint40"},
        {"name": "validUntil", "type": "uint40"},
        {"name": "consentHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"}
    ]);
    let revoke_fields = json!([
        {"name": "patient", "type": "address"},
        {"name": "grantee", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"}
    ]);
    let fields = if primary == "Grant" {
        grant_fields
    } else {
        revoke_fields
    };
    json!({
        "typedData": {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"}
                ],
                primary: fields
            },
            "primaryType": primary,
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": chain_id,
                "verifyingContract": format!("{registry:#x}")
            },
            "message": message
        },
        "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes()))
    })
}

/// Who signs a grant, for which patient, to which grantee.
struct Grantor<'a> {
    signer: &'a PrivateKeySigner,
    patient: Address,
    grantee: Address,
}

impl Grantor<'_> {
    /// A grant of Observations (bit 1) read+search (0b10010) for TREAT (bit 0), bound to
    /// (`chain_id`, `registry`) as given.
    fn grant(&self, nonce: u64, deadline: u64, chain_id: u64, registry: Address) -> Value {
        grant_body(
            self.signer,
            self.patient,
            self.grantee,
            nonce,
            deadline,
            chain_id,
            registry,
        )
    }
}

fn grant_body(
    signer: &PrivateKeySigner,
    patient: Address,
    grantee: Address,
    nonce: u64,
    deadline: u64,
    chain_id: u64,
    registry: Address,
) -> Value {
    let grant = Grant {
        patient,
        grantee,
        resourceTypes: 0b10,
        actions: 0b10010,
        purposes: 1,
        validFrom: U40::ZERO,
        validUntil: U40::from(now() + 86_400),
        consentHash: B256::repeat_byte(7),
        nonce: U256::from(nonce),
        deadline: U256::from(deadline),
    };
    let message = json!({
        "patient": format!("{patient:#x}"),
        "grantee": format!("{grantee:#x}"),
        "resourceTypes": "2",
        "actions": "18",
        "purposes": "1",
        "validFrom": "0",
        "validUntil": grant.validUntil.to_string(),
        "consentHash": format!("{:#x}", grant.consentHash),
        "nonce": nonce.to_string(),
        "deadline": deadline.to_string()
    });
    signed(signer, chain_id, registry, "Grant", message, &grant)
}

fn revoke_body(
    signer: &PrivateKeySigner,
    patient: Address,
    grantee: Address,
    nonce: u64,
    chain_id: u64,
    registry: Address,
) -> Value {
    let deadline = now() + 600;
    let revoke = Revoke {
        patient,
        grantee,
        nonce: U256::from(nonce),
        deadline: U256::from(deadline),
    };
    let message = json!({
        "patient": format!("{patient:#x}"),
        "grantee": format!("{grantee:#x}"),
        "nonce": nonce,
        "deadline": deadline
    });
    signed(signer, chain_id, registry, "Revoke", message, &revoke)
}

async fn post(gateway: &TestGateway, body: &Value) -> (u16, Value) {
    let response = gateway
        .http
        .post(gateway.url("/relay/consent"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn assert_outcome(body: &Value, code: &str, mentions: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
    let text = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(
        text.contains(mentions),
        "{text:?} should mention {mentions:?}"
    );
}

async fn sent_by(chain: &TestChain, relayer: &PrivateKeySigner) -> u64 {
    chain
        .providers()
        .provider()
        .get_transaction_count(relayer.address())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_patient_without_ether_grants_and_revokes_through_the_gateway() {
    let Setup {
        chain,
        gateway,
        relayer,
    } = setup(20, 60).await;
    let registry_address = chain.manifest.contracts.consent_registry;
    let chain_id = chain.manifest.chain_id;
    let patient = PrivateKeySigner::random(); // never funded
    let grantee = Address::repeat_byte(0xb0);
    let by_patient = Grantor {
        signer: &patient,
        patient: patient.address(),
        grantee,
    };
    let registry = ConsentRegistry::new(registry_address, chain.providers().provider().clone());
    let audit_before = gateway.audit_rows().await;

    let body = by_patient.grant(0, now() + 600, chain_id, registry_address);
    let (status, answer) = post(&gateway, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "grant");
    let tx: B256 = answer["transactionHash"].as_str().unwrap().parse().unwrap();
    let receipt = chain
        .providers()
        .provider()
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert_eq!(receipt.from, relayer.address(), "the gateway paid the gas");
    let consent = registry
        .consentOf(patient.address(), grantee)
        .call()
        .await
        .unwrap();
    assert_eq!(consent.resourceTypes, 0b10);
    assert_eq!(
        chain
            .providers()
            .provider()
            .get_balance(patient.address())
            .await
            .unwrap(),
        U256::ZERO
    );

    // The same signature again: refused as used, nothing sent.
    let sent = sent_by(&chain, &relayer).await;
    let (status, answer) = post(&gateway, &body).await;
    assert_eq!(status, 409, "{answer}");
    assert_outcome(&answer, "conflict", "nonce 0");
    assert_eq!(sent_by(&chain, &relayer).await, sent);

    // Revocation, gas-free too.
    let (status, answer) = post(
        &gateway,
        &revoke_body(
            &patient,
            patient.address(),
            grantee,
            1,
            chain_id,
            registry_address,
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "revoke");
    let consent = registry
        .consentOf(patient.address(), grantee)
        .call()
        .await
        .unwrap();
    assert_eq!(consent.resourceTypes, 0);

    // One audit row per request, and one recorded submission per accepted one.
    assert_eq!(gateway.audit_rows().await, audit_before + 3);
    let mined: i64 =
        sqlx::query_scalar("SELECT count(*) FROM relay_submissions WHERE status = 'mined'")
            .fetch_one(&gateway.pool)
            .await
            .unwrap();
    assert_eq!(mined, 2);
}

#[tokio::test]
async fn bad_submissions_are_refused_before_any_gas_is_spent() {
    let Setup {
        chain,
        gateway,
        relayer,
    } = setup(20, 60).await;
    let registry = chain.manifest.contracts.consent_registry;
    let chain_id = chain.manifest.chain_id;
    let patient = PrivateKeySigner::random();
    let grantee = Address::repeat_byte(0xb1);
    let by_patient = Grantor {
        signer: &patient,
        patient: patient.address(),
        grantee,
    };
    let sent = sent_by(&chain, &relayer).await;

    // Signed for another chain.
    let (status, answer) = post(
        &gateway,
        &by_patient.grant(0, now() + 600, chain_id + 1, registry),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_outcome(&answer, "invalid", "chain");

    // Signed for another contract.
    let (status, answer) = post(
        &gateway,
        &by_patient.grant(0, now() + 600, chain_id, Address::repeat_byte(0x99)),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_outcome(&answer, "invalid", "contract");

    // Past its deadline.
    let (status, answer) = post(
        &gateway,
        &by_patient.grant(0, now() - 1, chain_id, registry),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_outcome(&answer, "invalid", "deadline");

    // Signed by someone who is neither the patient nor a delegate.
    let stranger = PrivateKeySigner::random();
    let by_stranger = Grantor {
        signer: &stranger,
        ..by_patient
    };
    let (status, answer) = post(
        &gateway,
        &by_stranger.grant(0, now() + 600, chain_id, registry),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_outcome(&answer, "forbidden", "nothing was sent");

    // Not typed data at all.
    let (status, answer) = post(&gateway, &json!({"signature": "0x00"})).await;
    assert_eq!(status, 400, "{answer}");
    assert_outcome(&answer, "invalid", "typedData");

    assert_eq!(
        sent_by(&chain, &relayer).await,
        sent,
        "no refused submission may cost gas"
    );
}

#[tokio::test]
async fn a_delegate_signs_for_the_patient_and_submissions_are_rate_limited() {
    let Setup {
        chain,
        gateway,
        relayer: _,
    } = setup(2, 60).await;
    let registry_address = chain.manifest.contracts.consent_registry;
    let chain_id = chain.manifest.chain_id;
    let patient = chain.wallet().await;
    let delegate = PrivateKeySigner::random();
    let delegate_address = delegate.address();
    let appoint = |kind: u8| {
        let registry = chain.consents_as(&patient);
        async move {
            registry
                .setDelegate(delegate_address, kind, U40::from(now() + 2 * 86_400))
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
        }
    };
    let grantee = Address::repeat_byte(0xb2);
    let by_delegate = Grantor {
        signer: &delegate,
        patient: patient.address(),
        grantee,
    };

    // A caregiver reads but never consents: refused in words, before anything is sent.
    appoint(2).await;
    let (status, answer) = post(
        &gateway,
        &by_delegate.grant(0, now() + 600, chain_id, registry_address),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let text = answer["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("a caregiver may read") && text.contains("cannot change their consent"),
        "{answer}"
    );
    // A guardian signs for the patient.
    appoint(1).await;

    let (status, answer) = post(
        &gateway,
        &by_delegate.grant(0, now() + 600, chain_id, registry_address),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["signer"].as_str().unwrap(),
        format!("{:#x}", delegate.address())
    );

    // A replay is refused and does not count; a second valid grant within the hour is sent;
    // the third valid one is throttled, before anything is sent.
    let (status, _) = post(
        &gateway,
        &by_delegate.grant(0, now() + 600, chain_id, registry_address),
    )
    .await;
    assert_eq!(status, 409);
    let (status, answer) = post(
        &gateway,
        &by_delegate.grant(1, now() + 600, chain_id, registry_address),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post(
        &gateway,
        &by_delegate.grant(2, now() + 600, chain_id, registry_address),
    )
    .await;
    assert_eq!(status, 429, "{answer}");
    assert_outcome(&answer, "throttled", "too many");
}

/// The patient's own signature (the shared typed data of `carechain_contracts::typed_data`)
/// over `message`, as the relay takes it.
fn patient_signed(
    patient: &PrivateKeySigner,
    chain: &TestChain,
    message: carechain_contracts::typed_data::ConsentMessage,
) -> Value {
    use alloy::signers::SignerSync;
    let domain = carechain_contracts::typed_data::ConsentDomain {
        chain_id: chain.manifest.chain_id,
        verifying_contract: chain.manifest.contracts.consent_registry,
    };
    let signature = patient
        .sign_hash_sync(&message.signing_hash(&domain))
        .unwrap();
    json!({
        "typedData": message.to_wallet_json(&domain),
        "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
    })
}

/// A patient without ether appoints a guardian and removes them, gas-free; only the patient's
/// own signature may change their delegates.
#[tokio::test]
async fn a_patient_manages_delegates_gas_free() {
    use carechain_contracts::typed_data::{ConsentMessage, RemoveDelegate, SetDelegate};
    let Setup {
        chain,
        gateway,
        relayer: _,
    } = setup(20, 60).await;
    let patient = PrivateKeySigner::random();
    let guardian = PrivateKeySigner::random();
    let consents = chain.consents_as(&chain.wallet().await);
    let appoint = |nonce: u64, who: &PrivateKeySigner| {
        let message = ConsentMessage::SetDelegate(SetDelegate {
            patient: patient.address(),
            delegate: guardian.address(),
            relationship: "guardian".into(),
            validUntil: U40::from(now() + 86_400),
            nonce: alloy::primitives::U256::from(nonce),
            deadline: alloy::primitives::U256::from(now() + 600),
        });
        patient_signed(who, &chain, message)
    };
    let active = || async {
        consents
            .isActiveDelegate(patient.address(), guardian.address())
            .call()
            .await
            .unwrap()
    };
    // A stranger's signature over the patient's delegates is refused, nothing sent.
    let (status, answer) = post(&gateway, &appoint(0, &guardian)).await;
    assert!(matches!(status, 403 | 422), "{status} {answer}");
    assert!(!active().await);

    let (status, answer) = post(&gateway, &appoint(0, &patient)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "set-delegate");
    assert!(active().await);

    let remove = patient_signed(
        &patient,
        &chain,
        ConsentMessage::RemoveDelegate(RemoveDelegate {
            patient: patient.address(),
            delegate: guardian.address(),
            nonce: alloy::primitives::U256::from(1),
            deadline: alloy::primitives::U256::from(now() + 600),
        }),
    );
    let (status, answer) = post(&gateway, &remove).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "remove-delegate");
    assert!(!active().await);
}

/// The relay needs no sign-in, so every submission, valid or not, counts against its client
/// address before any check reaches the chain.
#[tokio::test]
async fn submissions_are_limited_per_client_before_any_check() {
    let Setup { gateway, .. } = setup(20, 3).await;
    for _ in 0..3 {
        let (status, answer) = post(&gateway, &json!({"signature": "0x00"})).await;
        assert_eq!(status, 400, "{answer}");
    }
    let response = gateway
        .http
        .post(gateway.url("/relay/consent"))
        .header("content-type", "application/json")
        .body(json!({"signature": "0x00"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let answer: Value = response.json().await.unwrap();
    assert_outcome(&answer, "throttled", "");
}

#[tokio::test]
async fn without_a_relay_key_gas_free_consent_is_switched_off() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let gateway = TestGateway::start(&chain, &db).await;
    let patient = PrivateKeySigner::random();
    let by_patient = Grantor {
        signer: &patient,
        patient: patient.address(),
        grantee: Address::repeat_byte(1),
    };
    let (status, answer) = post(
        &gateway,
        &by_patient.grant(
            0,
            now() + 600,
            chain.manifest.chain_id,
            chain.manifest.contracts.consent_registry,
        ),
    )
    .await;
    assert!((400..500).contains(&status), "{status} {answer}");
    assert_outcome(&answer, "not-supported", "relay key");
}
