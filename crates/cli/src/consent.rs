//! `consent grant | revoke | list | submit`: consent in the patient's words, the EIP-712 typed
//! data a browser wallet signs, and the transactions that carry it.
//!
//! The typed data is `carechain_contracts::typed_data`'s, the one definition the gateway's
//! relay and the portal use too, written as the JSON that `eth_signTypedData_v4` takes (the
//! domain read from the contract's ERC-5267 `eip712Domain()`); the digest signed is computed from
//! that very JSON and checked against the contract's own `grantDigest` / `revokeDigest` before
//! any signature is made, so what is shown, what is signed and what the chain verifies agree.

use crate::{
    chain::{self, Chain},
    prompt, time,
};
use alloy::{
    primitives::{Address, B256, Signature, U256, aliases::U40},
    signers::{SignerSync, local::PrivateKeySigner},
};
use alloy_dyn_abi::TypedData;
use carechain_contracts::{
    Action, ConsentRegistry, Purpose, ResourceType,
    bindings::IConsentRegistry::Grant,
    codes::{parse_actions, parse_purposes, parse_resource_types},
    typed_data::{ClaimedDomain, ConsentDomain, ConsentMessage, Revoke},
};
use eyre::{WrapErr, bail, eyre};
use serde_json::{Value, json};

/// The scope of a grant, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) resource_types: u64,
    pub(crate) actions: u8,
    pub(crate) purposes: u16,
    pub(crate) valid_from: u64,
    pub(crate) valid_until: u64,
}

impl Scope {
    /// Parses the command-line words into bitmaps.
    pub(crate) fn parse(
        types: &str,
        actions: &str,
        purposes: &str,
        valid_from: u64,
        valid_until: u64,
    ) -> eyre::Result<Self> {
        let scope = Self {
            resource_types: parse_resource_types(types)?,
            actions: parse_actions(actions)?,
            purposes: parse_purposes(purposes)?,
            valid_from,
            valid_until,
        };
        if scope.resource_types == 0 {
            bail!(
                "--types names no resource type: e.g. --types Observation,Condition (see `carechain codes`)"
            );
        }
        if scope.actions == 0 {
            bail!("--actions names no action: e.g. --actions read,search");
        }
        if scope.purposes == 0 {
            bail!(
                "--purpose names no purpose of use: e.g. --purpose TREAT (see `carechain codes`)"
            );
        }
        if valid_until <= valid_from {
            bail!("the consent would end before it starts: check --for / --until");
        }
        Ok(scope)
    }

    fn type_names(&self) -> Vec<&'static str> {
        ResourceType::from_bits(self.resource_types)
            .into_iter()
            .map(ResourceType::code)
            .collect()
    }

    fn action_names(&self) -> Vec<&'static str> {
        Action::from_bits(self.actions)
            .into_iter()
            .map(Action::long_name)
            .collect()
    }

    fn purpose_names(&self) -> Vec<String> {
        Purpose::from_bits(self.purposes)
            .into_iter()
            .map(|p| format!("{} ({})", p.code(), p.display()))
            .collect()
    }
}

/// Reads the ConsentRegistry's ERC-5267 `eip712Domain()` and checks it is this deployment's
/// (chain, contract, and the domain name and version the typed data is defined for).
pub(crate) async fn read_domain(chain: &Chain) -> eyre::Result<ConsentDomain> {
    let d = chain
        .consents()
        .eip712Domain()
        .call()
        .await
        .wrap_err("cannot read the ConsentRegistry's EIP-712 domain (eip712Domain)")?;
    let chain_id =
        u64::try_from(d.chainId).map_err(|_| eyre!("the domain's chainId does not fit"))?;
    let domain = ConsentDomain {
        chain_id,
        verifying_contract: d.verifyingContract,
    };
    let claimed = ClaimedDomain {
        name: Some(d.name),
        version: Some(d.version),
        chain_id: Some(U256::from(chain_id)),
        verifying_contract: Some(d.verifyingContract),
    };
    if chain_id != chain.manifest.chain_id
        || d.verifyingContract != chain.manifest.contracts.consent_registry
        || !claimed.is(&domain)
    {
        bail!(
            "the ConsentRegistry reports an EIP-712 domain for chain {chain_id} / {} that is not this deployment's: refusing to sign",
            d.verifyingContract
        );
    }
    Ok(domain)
}

/// The `Grant` typed data, exactly as `eth_signTypedData_v4` takes it.
pub(crate) fn grant_typed_data(
    domain: &ConsentDomain,
    patient: Address,
    grantee: Address,
    scope: &Scope,
    consent_hash: B256,
    nonce: U256,
    deadline: u64,
) -> Value {
    ConsentMessage::Grant(Grant {
        patient,
        grantee,
        resourceTypes: scope.resource_types,
        actions: scope.actions,
        purposes: scope.purposes,
        validFrom: U40::from(scope.valid_from),
        validUntil: U40::from(scope.valid_until),
        consentHash: consent_hash,
        nonce,
        deadline: U256::from(deadline),
    })
    .to_wallet_json(domain)
}

/// The `Revoke` typed data, exactly as `eth_signTypedData_v4` takes it.
pub(crate) fn revoke_typed_data(
    domain: &ConsentDomain,
    patient: Address,
    grantee: Address,
    nonce: U256,
    deadline: u64,
) -> Value {
    ConsentMessage::Revoke(Revoke {
        patient,
        grantee,
        nonce,
        deadline: U256::from(deadline),
    })
    .to_wallet_json(domain)
}

/// The EIP-712 digest of typed data given as wallet JSON.
pub(crate) fn digest(typed_data: &Value) -> eyre::Result<B256> {
    let parsed: TypedData = serde_json::from_value(typed_data.clone())
        .wrap_err("the typed data is not EIP-712 typed data JSON")?;
    parsed
        .eip712_signing_hash()
        .map_err(|e| eyre!("cannot hash the typed data: {e}"))
}

/// The FHIR R4 Consent this grant mirrors (`carechain_contracts::consent_document`'s, the
/// one definition the gateway's portal endpoint uses too); its canonical JSON's keccak-256 is
/// the `consentHash` that rides in the `ConsentGranted` event.
pub(crate) fn fhir_consent(
    chain_id: u64,
    patient: Address,
    grantee: Address,
    scope: &Scope,
) -> Value {
    carechain_contracts::consent_document::fhir_consent(
        chain_id,
        patient,
        grantee,
        &carechain_contracts::consent_document::GrantScope {
            resource_types: scope.resource_types,
            actions: scope.actions,
            purposes: scope.purposes,
            valid_from: scope.valid_from,
            valid_until: scope.valid_until,
        },
    )
}

/// keccak-256 of the canonical (RFC 8785) JSON.
pub(crate) fn consent_hash(consent: &Value) -> B256 {
    carechain_formats::canonical::canonical_hash(consent)
}

fn signature_hex(signature: &Signature) -> String {
    format!("0x{}", alloy::hex::encode(signature.as_bytes()))
}

/// What `grant` and `revoke` should do with the typed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Send `grant` / `revoke` from the key (the key pays gas).
    Direct,
    /// Sign and print JSON; send nothing.
    SignOnly,
    /// Print the typed data for a wallet to sign; needs no key.
    Unsigned,
}

impl Mode {
    /// The signing key (none when only unsigned typed data is printed) and the patient: as
    /// named, else the key's own address.
    fn signer_and_patient(
        self,
        key: &crate::keys::KeyArgs,
        patient: Option<Address>,
    ) -> eyre::Result<(Option<PrivateKeySigner>, Address)> {
        let signer = match self {
            Mode::Unsigned => None,
            Mode::Direct | Mode::SignOnly => Some(key.signer()?),
        };
        let patient = patient
            .or_else(|| signer.as_ref().map(PrivateKeySigner::address))
            .ok_or_else(|| eyre!("--unsigned needs --patient (the wallet that will sign)"))?;
        Ok((signer, patient))
    }
}

/// One grant, as asked for on the command line.
pub(crate) struct GrantRequest {
    pub(crate) patient: Option<Address>,
    pub(crate) grantee: Address,
    pub(crate) scope: Scope,
    pub(crate) deadline_secs: u64,
    pub(crate) mode: Mode,
    pub(crate) yes: bool,
}

fn summary_grant(
    chain: &Chain,
    patient: Address,
    grantee: Address,
    scope: &Scope,
    consent_hash: B256,
) -> String {
    let from = if scope.valid_from == 0 {
        "now".to_owned()
    } else {
        time::show(scope.valid_from)
    };
    format!(
        "Consent to be granted (chain {}, ConsentRegistry {}):\n  \
         patient          {}\n  \
         grantee          {}\n  \
         resource types   {}\n  \
         actions          {}\n  \
         purposes of use  {}\n  \
         valid            from {from} until {}\n  \
         FHIR Consent     keccak-256 {consent_hash}",
        chain.manifest.chain_id,
        chain::show(chain.manifest.contracts.consent_registry),
        chain::show(patient),
        chain::show(grantee),
        scope.type_names().join(", "),
        scope.action_names().join(", "),
        scope.purpose_names().join(", "),
        time::show(scope.valid_until),
    )
}

/// `consent grant`.
pub(crate) async fn grant(
    chain: &Chain,
    key: &crate::keys::KeyArgs,
    request: GrantRequest,
) -> eyre::Result<()> {
    let (signer, patient) = request.mode.signer_and_patient(key, request.patient)?;
    if request.grantee == patient {
        bail!(
            "--grantee is the patient: a patient always has access to their own data; name an organisation or member key"
        );
    }
    let scope = &request.scope;
    let fhir = fhir_consent(chain.manifest.chain_id, patient, request.grantee, scope);
    let hash = consent_hash(&fhir);
    eprintln!(
        "{}",
        summary_grant(chain, patient, request.grantee, scope, hash)
    );
    let registry = chain.consents();
    let consent = carechain_contracts::bindings::IConsentRegistry::Consent {
        resourceTypes: scope.resource_types,
        actions: scope.actions,
        purposes: scope.purposes,
        validFrom: U40::from(scope.valid_from),
        validUntil: U40::from(scope.valid_until),
    };

    if request.mode == Mode::Direct {
        let registry = sending_registry(
            chain,
            signer.as_ref(),
            "Grant this consent?",
            "grant consent",
            request.yes,
        )?;
        let tx = chain::mined(
            registry
                .grant(
                    patient,
                    request.grantee,
                    scope.resource_types,
                    scope.actions,
                    scope.purposes,
                    consent.validFrom,
                    consent.validUntil,
                    hash,
                )
                .send()
                .await,
            "granting consent",
        )
        .await?;
        println!("granted: transaction {tx}");
        return Ok(());
    }

    let (nonce, deadline, domain) = signing_context(chain, patient, request.deadline_secs).await?;
    let typed = grant_typed_data(
        &domain,
        patient,
        request.grantee,
        scope,
        hash,
        nonce,
        deadline,
    );
    let digest = digest(&typed)?;
    let on_chain = registry
        .grantDigest(
            patient,
            request.grantee,
            consent,
            hash,
            nonce,
            U256::from(deadline),
        )
        .call()
        .await
        .wrap_err("cannot read grantDigest from the ConsentRegistry")?;
    let out = json!({"typedData": typed, "digest": digest.to_string(), "fhirConsent": fhir});
    let signing = Signing {
        digest,
        on_chain,
        nonce,
        deadline,
    };
    signing.finish(out, signer.as_ref(), "Sign this consent?", request.yes)
}

/// For a direct transaction: shows who sends it, asks, and gives the ConsentRegistry bound to
/// that key.
fn sending_registry(
    chain: &Chain,
    signer: Option<&PrivateKeySigner>,
    question: &str,
    what: &str,
    yes: bool,
) -> eyre::Result<ConsentRegistry::ConsentRegistryInstance<alloy::providers::DynProvider>> {
    let signer = signer.ok_or_else(|| eyre!("no signing key"))?;
    eprintln!(
        "  sent by          {} as a transaction (it pays the gas)",
        chain::show(signer.address())
    );
    prompt::confirm(question, what, yes)?;
    let provider = chain.with_signer(signer)?;
    Ok(ConsentRegistry::new(
        chain.manifest.contracts.consent_registry,
        provider,
    ))
}

/// For typed data: the patient's current nonce, the signature's deadline and the domain.
async fn signing_context(
    chain: &Chain,
    patient: Address,
    deadline_secs: u64,
) -> eyre::Result<(U256, u64, ConsentDomain)> {
    let nonce = chain
        .consents()
        .nonces(patient)
        .call()
        .await
        .wrap_err("cannot read the patient's signature nonce")?;
    let deadline = time::now().saturating_add(deadline_secs);
    Ok((nonce, deadline, read_domain(chain).await?))
}

/// The EIP-712 digest of typed data about to be printed, checked against the contract's own.
struct Signing {
    digest: B256,
    on_chain: B256,
    nonce: U256,
    deadline: u64,
}

impl Signing {
    /// Refuses when the digests differ; with a signer, shows who signs, asks, and adds the
    /// signature; prints the JSON.
    fn finish(
        &self,
        mut out: Value,
        signer: Option<&PrivateKeySigner>,
        question: &str,
        yes: bool,
    ) -> eyre::Result<()> {
        let Self {
            digest,
            on_chain,
            nonce,
            deadline,
        } = self;
        if on_chain != digest {
            bail!(
                "the typed data's digest {digest} differs from the contract's {on_chain}: refusing to sign (is the manifest for this deployment?)"
            );
        }
        if let Some(signer) = signer {
            eprintln!(
                "  signed by        {} (EIP-712, nonce {nonce}, signature valid until {})",
                chain::show(signer.address()),
                time::show(*deadline)
            );
            prompt::confirm(question, "sign", yes)?;
            let signature = signer.sign_hash_sync(digest)?;
            out["signature"] = Value::String(signature_hex(&signature));
            out["signer"] = Value::String(chain::show(signer.address()));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        Ok(())
    }
}

/// One revocation, as asked for on the command line.
pub(crate) struct RevokeRequest {
    pub(crate) patient: Option<Address>,
    pub(crate) grantee: Address,
    pub(crate) deadline_secs: u64,
    pub(crate) mode: Mode,
    pub(crate) yes: bool,
}

/// `consent revoke`.
pub(crate) async fn revoke(
    chain: &Chain,
    key: &crate::keys::KeyArgs,
    request: RevokeRequest,
) -> eyre::Result<()> {
    let (signer, patient) = request.mode.signer_and_patient(key, request.patient)?;
    let registry = chain.consents();
    let stored = registry
        .consentOf(patient, request.grantee)
        .call()
        .await
        .wrap_err("cannot read the stored consent")?;
    if stored.validUntil == U40::ZERO {
        bail!(
            "patient {} has no consent stored for {}: nothing to revoke (see `carechain consent list --patient {}`)",
            chain::show(patient),
            chain::show(request.grantee),
            chain::show(patient)
        );
    }
    let scope = Scope {
        resource_types: stored.resourceTypes,
        actions: stored.actions,
        purposes: stored.purposes,
        valid_from: stored.validFrom.to::<u64>(),
        valid_until: stored.validUntil.to::<u64>(),
    };
    eprintln!(
        "Consent to be revoked (chain {}, ConsentRegistry {}):\n  \
         patient          {}\n  \
         grantee          {}\n  \
         now covering     {} / {} / {}, until {}",
        chain.manifest.chain_id,
        chain::show(chain.manifest.contracts.consent_registry),
        chain::show(patient),
        chain::show(request.grantee),
        scope.type_names().join(", "),
        scope.action_names().join(", "),
        scope.purpose_names().join(", "),
        time::show(scope.valid_until),
    );

    if request.mode == Mode::Direct {
        let registry = sending_registry(
            chain,
            signer.as_ref(),
            "Revoke this consent?",
            "revoke consent",
            request.yes,
        )?;
        let tx = chain::mined(
            registry.revoke(patient, request.grantee).send().await,
            "revoking consent",
        )
        .await?;
        println!("revoked: transaction {tx}");
        return Ok(());
    }

    let (nonce, deadline, domain) = signing_context(chain, patient, request.deadline_secs).await?;
    let typed = revoke_typed_data(&domain, patient, request.grantee, nonce, deadline);
    let digest = digest(&typed)?;
    let on_chain = registry
        .revokeDigest(patient, request.grantee, nonce, U256::from(deadline))
        .call()
        .await
        .wrap_err("cannot read revokeDigest from the ConsentRegistry")?;
    let out = json!({"typedData": typed, "digest": digest.to_string()});
    let signing = Signing {
        digest,
        on_chain,
        nonce,
        deadline,
    };
    signing.finish(out, signer.as_ref(), "Sign this revocation?", request.yes)
}

/// `consent submit`: sends a signed grant or revocation (`--sign-only` output, or typed data
/// signed in any wallet plus its signature) with the submitting key paying the gas.
pub(crate) async fn submit(
    chain: &Chain,
    key: &crate::keys::KeyArgs,
    signed: &Value,
) -> eyre::Result<()> {
    let typed = signed
        .get("typedData")
        .ok_or_else(|| eyre!("the file has no `typedData` (expected the JSON of `carechain consent grant --sign-only`)"))?;
    let signature_text = signed
        .get("signature")
        .and_then(Value::as_str)
        .ok_or_else(|| eyre!("the file has no `signature`: sign `typedData` with eth_signTypedData_v4 and add it as \"signature\""))?;
    let signature_bytes = alloy::hex::decode(signature_text.trim_start_matches("0x"))
        .map_err(|_| eyre!("`signature` is not hex"))?;
    let (message, claimed) = ConsentMessage::from_wallet_json(typed)
        .map_err(|e| eyre!("{e} (expected the JSON of `carechain consent grant --sign-only`)"))?;
    let expected = read_domain(chain).await?;
    if !claimed.is(&expected) {
        bail!(
            "the typed data is for chain {:?} / contract {:?}, not this deployment (chain {}, ConsentRegistry {}): it cannot be submitted here",
            claimed.chain_id,
            claimed.verifying_contract,
            expected.chain_id,
            chain::show(expected.verifying_contract)
        );
    }
    let digest = digest(typed)?;
    let signer_address = match signed.get("signer").and_then(Value::as_str) {
        // A contract wallet (ERC-1271) cannot be recovered from the signature: it is named.
        Some(s) => s
            .parse::<Address>()
            .map_err(|_| eyre!("`signer` is not an address"))?,
        None => Signature::from_raw(&signature_bytes)
            .map_err(|e| eyre!("`signature` is not a 65-byte signature: {e}"))?
            .recover_address_from_prehash(&digest)
            .map_err(|e| eyre!("cannot recover the signer from `signature`: {e}"))?,
    };
    let (patient, grantee, nonce, deadline) = (
        message.patient(),
        message.counterparty(),
        message.nonce(),
        message.deadline(),
    );
    let current = chain
        .consents()
        .nonces(patient)
        .call()
        .await
        .wrap_err("cannot read the patient's nonce")?;
    if nonce != current {
        bail!(
            "the signature is for nonce {nonce} but the patient is at nonce {current} (already used or cancelled): sign again"
        );
    }
    if deadline < U256::from(time::now()) {
        bail!("the signature's deadline has passed: sign again with a later deadline");
    }
    let what = match &message {
        ConsentMessage::Grant(g) => {
            let scope = Scope {
                resource_types: g.resourceTypes,
                actions: g.actions,
                purposes: g.purposes,
                valid_from: g.validFrom.to::<u64>(),
                valid_until: g.validUntil.to::<u64>(),
            };
            format!(
                "grant of {} / {} / {} until {}",
                scope.type_names().join(", "),
                scope.action_names().join(", "),
                scope.purpose_names().join(", "),
                time::show(scope.valid_until)
            )
        }
        ConsentMessage::Revoke(_) => "revocation".to_owned(),
        other => bail!(
            "a signed {} changes the patient's delegates: submit it through a gateway (`consent submit --via-gateway`)",
            other.primary_type()
        ),
    };
    eprintln!(
        "Submitting the {what}\n  patient {}, grantee {}, signed by {}",
        chain::show(patient),
        chain::show(grantee),
        chain::show(signer_address)
    );
    let submitter = key.signer()?;
    let provider = chain.with_signer(&submitter)?;
    let registry = ConsentRegistry::new(chain.manifest.contracts.consent_registry, &provider);
    let signature = alloy::primitives::Bytes::from(signature_bytes);
    let tx = match message {
        ConsentMessage::Grant(g) => {
            chain::mined(
                registry
                    .grantBySig(g, signer_address, signature)
                    .send()
                    .await,
                "submitting the signed grant",
            )
            .await?
        }
        _ => {
            chain::mined(
                registry
                    .revokeBySig(patient, grantee, nonce, deadline, signer_address, signature)
                    .send()
                    .await,
                "submitting the signed revocation",
            )
            .await?
        }
    };
    println!(
        "submitted {} signed by {} for patient {}: transaction {tx}",
        if what == "revocation" {
            "revocation"
        } else {
            "grant"
        },
        chain::show(signer_address),
        chain::show(patient)
    );
    Ok(())
}

/// One current consent.
#[derive(Debug, serde::Serialize)]
struct Listed {
    grantee: String,
    #[serde(rename = "resourceTypes")]
    resource_types: Vec<&'static str>,
    actions: Vec<&'static str>,
    purposes: Vec<&'static str>,
    #[serde(rename = "validFrom")]
    valid_from: u64,
    #[serde(rename = "validUntil")]
    valid_until: u64,
    status: &'static str,
}

/// `consent list`: the grantees named in the patient's `ConsentGranted` events, each read back
/// with `consentOf` (the chain's current state; revoked consents are gone).
pub(crate) async fn list(chain: &Chain, patient: Address, json_out: bool) -> eyre::Result<()> {
    use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
    let head = chain
        .provider
        .get_block_number()
        .await
        .wrap_err("cannot read the chain head")?;
    let mut grantees: Vec<Address> = Vec::new();
    let step = 10_000u64;
    let mut from = chain.manifest.deployment_block;
    while from <= head {
        let to = head.min(from + step - 1);
        let filter = Filter::new()
            .address(chain.manifest.contracts.consent_registry)
            .event_signature(ConsentRegistry::ConsentGranted::SIGNATURE_HASH)
            .topic1(patient.into_word())
            .from_block(from)
            .to_block(to);
        let logs = chain
            .provider
            .get_logs(&filter)
            .await
            .wrap_err("cannot read ConsentGranted events from the chain")?;
        for log in logs {
            if let Some(grantee) = log.topics().get(2) {
                let grantee = Address::from_word(*grantee);
                if !grantees.contains(&grantee) {
                    grantees.push(grantee);
                }
            }
        }
        from = to + 1;
    }
    let now = time::now();
    let registry = chain.consents();
    let mut listed = Vec::new();
    for grantee in grantees {
        let c = registry
            .consentOf(patient, grantee)
            .call()
            .await
            .wrap_err("cannot read consentOf")?;
        let valid_until = c.validUntil.to::<u64>();
        if valid_until == 0 {
            continue;
        }
        let valid_from = c.validFrom.to::<u64>();
        let status = if valid_until <= now {
            "expired"
        } else if valid_from > now {
            "not yet valid"
        } else {
            "active"
        };
        listed.push(Listed {
            grantee: chain::show(grantee),
            resource_types: ResourceType::from_bits(c.resourceTypes)
                .into_iter()
                .map(ResourceType::code)
                .collect(),
            actions: Action::from_bits(c.actions)
                .into_iter()
                .map(Action::long_name)
                .collect(),
            purposes: Purpose::from_bits(c.purposes)
                .into_iter()
                .map(Purpose::code)
                .collect(),
            valid_from,
            valid_until,
            status,
        });
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"patient": chain::show(patient), "consents": listed})
            )?
        );
        return Ok(());
    }
    if listed.is_empty() {
        println!("patient {} has no stored consents", chain::show(patient));
        return Ok(());
    }
    println!("consents of patient {}:", chain::show(patient));
    for c in listed {
        println!(
            "  {}  [{}]\n    {} / {} / {}\n    until {}",
            c.grantee,
            c.status,
            c.resource_types.join(", "),
            c.actions.join(", "),
            c.purposes.join(", "),
            time::show(c.valid_until)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{address, keccak256};

    fn domain() -> ConsentDomain {
        ConsentDomain {
            chain_id: 31337,
            verifying_contract: address!("e7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_has_no_spaces() {
        let v = json!({"b": [1, {"d": "x", "c": "\u{1}é"}], "a": true});
        assert_eq!(
            carechain_formats::canonical::canonicalize(&v),
            "{\"a\":true,\"b\":[1,{\"c\":\"\\u0001é\",\"d\":\"x\"}]}"
        );
    }

    #[test]
    fn typed_data_hashes_like_the_solidity_struct() {
        // The struct hash written out as the contract computes it (abi.encode of the type hash
        // and the ten words), so the JSON's types and decimal strings are checked end to end.
        let d = domain();
        let patient = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let grantee = address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
        let scope = Scope::parse(
            "Observation,Condition",
            "read,search",
            "TREAT",
            0,
            2_000_000_000,
        )
        .expect("scope");
        let hash = B256::repeat_byte(7);
        let typed = grant_typed_data(
            &d,
            patient,
            grantee,
            &scope,
            hash,
            U256::from(3),
            1_900_000_000,
        );
        let type_hash = keccak256(
            "Grant(address patient,address grantee,uint64 resourceTypes,uint8 actions,uint16 purposes,uint40 validFrom,uint40 validUntil,bytes32 consentHash,uint256 nonce,uint256 deadline)",
        );
        let mut words = Vec::new();
        words.extend_from_slice(type_hash.as_slice());
        words.extend_from_slice(patient.into_word().as_slice());
        words.extend_from_slice(grantee.into_word().as_slice());
        for n in [0b110u64, 0b10010, 1, 0, 2_000_000_000] {
            words.extend_from_slice(&U256::from(n).to_be_bytes::<32>());
        }
        words.extend_from_slice(hash.as_slice());
        words.extend_from_slice(&U256::from(3).to_be_bytes::<32>());
        words.extend_from_slice(&U256::from(1_900_000_000u64).to_be_bytes::<32>());
        let struct_hash = keccak256(&words);
        let domain_type = keccak256(
            "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
        );
        let mut dom = Vec::new();
        dom.extend_from_slice(domain_type.as_slice());
        dom.extend_from_slice(keccak256("carechain ConsentRegistry").as_slice());
        dom.extend_from_slice(keccak256("1").as_slice());
        dom.extend_from_slice(&U256::from(31337).to_be_bytes::<32>());
        dom.extend_from_slice(d.verifying_contract.into_word().as_slice());
        let separator = keccak256(&dom);
        let mut full = vec![0x19, 0x01];
        full.extend_from_slice(separator.as_slice());
        full.extend_from_slice(struct_hash.as_slice());
        assert_eq!(digest(&typed).expect("digest"), keccak256(&full));
        // Numbers are decimal strings, as wallets expect.
        assert_eq!(typed["message"]["resourceTypes"], json!("6"));
        assert_eq!(typed["message"]["deadline"], json!("1900000000"));
    }

    #[test]
    fn the_fhir_consent_names_the_scope() {
        let scope =
            Scope::parse("Observation", "r", "TREAT,HRESCH", 0, 2_000_000_000).expect("scope");
        let patient = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let grantee = address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
        let c = fhir_consent(31337, patient, grantee, &scope);
        assert_eq!(c["provision"]["class"][0]["code"], "Observation");
        assert_eq!(c["provision"]["purpose"][1]["code"], "HRESCH");
        assert_eq!(
            c["patient"]["reference"],
            "Patient/0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
        );
        assert_eq!(consent_hash(&c), consent_hash(&c.clone()));
        let other = fhir_consent(31337, patient, patient, &scope);
        assert_ne!(consent_hash(&c), consent_hash(&other));
    }

    #[test]
    fn scopes_need_content() {
        assert!(Scope::parse("", "r", "TREAT", 0, 10).is_err());
        assert!(Scope::parse("Observation", "r", "TREAT", 10, 10).is_err());
        assert!(Scope::parse("observation", "r", "TREAT", 0, 10).is_err());
    }
}
