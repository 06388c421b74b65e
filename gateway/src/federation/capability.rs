//! The user's capability for the other custodians: an ERC-5573 ("ReCap") resource in the
//! user's EIP-4361 sign-in.
//!
//! At sign-in the gateway offers (`POST /auth/nonce`, the portal's sign-in text) a `Resources:`
//! entry `urn:recap:<base64url(JSON)>` whose JSON is
//! `{"att":{"eip155:<chain>:<org>":{"fhir/read":[{}]},...},"prf":[]}` (canonical JSON, one
//! target per custodian organisation of the directory), and the statement line ERC-5573 asks
//! for, so the wallet shows the user what they authorise. A custodian serves a federated
//! request only when the user's signed sign-in grants `fhir/read` for its own organisation.

use crate::auth::siwe::SiweMessage;
use alloy::primitives::Address;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

/// The ReCap URI scheme prefix.
pub const RECAP_PREFIX: &str = "urn:recap:";
/// The ability a custodian requires: reading FHIR records.
pub const ABILITY: &str = "fhir/read";
/// The statement every carechain sign-in starts with.
pub const BASE_STATEMENT: &str = "Sign in to carechain.";

/// The ReCap target naming a custodian organisation on a chain (CAIP-10).
pub fn target(chain_id: u64, org: Address) -> String {
    format!("eip155:{chain_id}:{org:#x}")
}

/// The `urn:recap:` resource granting [`ABILITY`] for each of `targets`.
pub fn recap_uri(targets: &[String]) -> String {
    let mut att = Map::new();
    for target in targets {
        att.insert(target.clone(), json!({ABILITY: [{}]}));
    }
    let body = json!({"att": att, "prf": []});
    let canonical = carechain_formats::canonical::canonicalize(&body);
    format!("{RECAP_PREFIX}{}", URL_SAFE_NO_PAD.encode(canonical))
}

/// The statement ERC-5573 appends for `targets` (in the order the recap lists them).
pub fn recap_statement(targets: &[String]) -> String {
    let mut out = String::from(
        "I further authorize the stated URI to perform the following actions on my behalf:",
    );
    let (namespace, name) = ABILITY.split_once('/').unwrap_or((ABILITY, ""));
    for (i, target) in targets.iter().enumerate() {
        out.push_str(&format!(
            " ({}) '{namespace}': '{name}' for '{target}'.",
            i + 1
        ));
    }
    out
}

/// The sign-in statement and resources a gateway offers for `targets` (none: the plain
/// statement, no resources).
pub fn offer(targets: &[String]) -> (String, Vec<String>) {
    if targets.is_empty() {
        return (BASE_STATEMENT.to_owned(), Vec::new());
    }
    // The recap's JSON lists its targets sorted (canonical JSON); the statement follows it.
    let mut targets = targets.to_vec();
    targets.sort();
    targets.dedup();
    (
        format!("{BASE_STATEMENT} {}", recap_statement(&targets)),
        vec![recap_uri(&targets)],
    )
}

/// The targets a `urn:recap:` resource grants [`ABILITY`] for, in its (sorted) order; `None`
/// when the resource is not a well-formed recap.
fn granted_targets(uri: &str) -> Option<Vec<String>> {
    let encoded = uri.strip_prefix(RECAP_PREFIX)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let body: Value = serde_json::from_slice(&bytes).ok()?;
    let att = body.get("att")?.as_object()?;
    let mut targets = Vec::new();
    for (target, abilities) in att {
        if abilities.as_object()?.contains_key(ABILITY) {
            targets.push(target.clone());
        }
    }
    Some(targets)
}

/// Whether the signed sign-in `message` grants [`ABILITY`] for `target`: one of its resources
/// is a recap naming it, and the statement carries that recap's ERC-5573 line (what the user
/// was shown is what they signed).
pub fn grants(message: &SiweMessage, target: &str) -> bool {
    let statement = message.statement.as_deref().unwrap_or("");
    message.resources.iter().any(|uri| {
        granted_targets(uri).is_some_and(|targets| {
            targets.iter().any(|t| t == target) && statement.ends_with(&recap_statement(&targets))
        })
    })
}

/// Whether the sign-in carries any carechain capability (a recap the gateway may forward).
pub fn carries_any(message: &SiweMessage) -> bool {
    message
        .resources
        .iter()
        .any(|uri| granted_targets(uri).is_some_and(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn message(statement: String, resources: Vec<String>) -> SiweMessage {
        let now = Utc::now();
        SiweMessage {
            domain: "gw.example".into(),
            address: Address::repeat_byte(1),
            statement: Some(statement),
            uri: "https://gw.example".into(),
            version: "1".into(),
            chain_id: 31337,
            nonce: "abcdefgh12".into(),
            issued_at: now,
            expiration_time: None,
            not_before: None,
            resources,
        }
    }

    #[test]
    fn an_offered_capability_grants_exactly_its_targets() {
        let a = target(31337, Address::repeat_byte(0xaa));
        let b = target(31337, Address::repeat_byte(0xbb));
        let (statement, resources) = offer(&[b.clone(), a.clone()]);
        assert!(statement.starts_with(BASE_STATEMENT));
        assert!(statement.contains(&format!("'fhir': 'read' for '{a}'")));
        let signed = message(statement.clone(), resources.clone());
        let text = signed.to_text();
        let parsed = SiweMessage::parse(&text).expect("parses");
        assert!(grants(&parsed, &a) && grants(&parsed, &b) && carries_any(&parsed));
        assert!(
            !grants(&parsed, &target(1, Address::repeat_byte(0xaa))),
            "other chain"
        );
        assert!(!grants(&parsed, &target(31337, Address::repeat_byte(0xcc))));
        // The statement must show what the recap grants.
        let hidden = message(BASE_STATEMENT.into(), resources);
        assert!(!grants(&hidden, &a));
        // A recap listing another organisation is not stretched to cover this one.
        let (other_statement, other) = offer(std::slice::from_ref(&b));
        assert!(!grants(&message(other_statement, other), &a));
        assert!(!grants(
            &message(statement, vec!["urn:recap:!!".into()]),
            &a
        ));
        assert_eq!(offer(&[]), (BASE_STATEMENT.to_owned(), Vec::new()));
    }
}
