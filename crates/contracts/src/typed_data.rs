//! ConsentRegistry's EIP-712 typed data: the one definition of what a patient (or delegate)
//! signs for gas-free consent, used by the CLI (to show and sign), the gateway's relay (to check
//! and submit) and the patient portal (which gets it from the gateway), and checked against the
//! contract's own type strings (`ConsentRegistry.sol`) and the Solidity test base
//! (`contracts/test/base/ConsentTypedData.sol`).
//!
//! - [`ConsentMessage`]: the five signed requests (grant, revoke, appoint a guardian or
//!   caregiver, appoint a proxy, remove a delegate), as the `sol!` structs whose
//!   `eip712_signing_hash` is the contract's digest.
//! - [`ConsentMessage::to_wallet_json`]: the object `eth_signTypedData_v4` takes (types with
//!   `EIP712Domain`, integers as decimal strings, so a wallet shows them exactly).
//! - [`ConsentMessage::from_wallet_json`]: the same object as any wallet or client writes it back
//!   (integers as JSON numbers, decimal strings or `0x` hex), its field list checked against the
//!   contract's type, and the domain it claims ([`ClaimedDomain`]) for the caller to compare with
//!   the deployment.

use crate::bindings::IConsentRegistry::Grant;
use alloy::{
    primitives::{Address, B256, U256, aliases::U40},
    sol,
    sol_types::{Eip712Domain, SolStruct},
};
use serde_json::{Map, Value, json};
use std::str::FromStr;

/// The EIP-712 domain name of ConsentRegistry.
pub const DOMAIN_NAME: &str = "carechain ConsentRegistry";
/// The EIP-712 domain version of ConsentRegistry.
pub const DOMAIN_VERSION: &str = "1";

sol! {
    /// EIP-712 `Revoke` (the contract's `REVOKE_TYPEHASH`).
    #[derive(Debug, PartialEq, Eq)]
    struct Revoke {
        address patient;
        address grantee;
        uint256 nonce;
        uint256 deadline;
    }

    /// EIP-712 `SetDelegate`: appoint a guardian or caregiver (`relationship` is the word
    /// `guardian` or `caregiver`, so a wallet shows it).
    #[derive(Debug, PartialEq, Eq)]
    struct SetDelegate {
        address patient;
        address delegate;
        string relationship;
        uint40 validUntil;
        uint256 nonce;
        uint256 deadline;
    }

    /// EIP-712 `SetProxy`: appoint a proxy with the scope it may grant within.
    #[derive(Debug, PartialEq, Eq)]
    struct SetProxy {
        address patient;
        address proxy;
        uint40 validUntil;
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
        uint256 nonce;
        uint256 deadline;
    }

    /// EIP-712 `RemoveDelegate`.
    #[derive(Debug, PartialEq, Eq)]
    struct RemoveDelegate {
        address patient;
        address delegate;
        uint256 nonce;
        uint256 deadline;
    }
}

/// Why typed data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypedDataError {
    /// A required member is missing or has the wrong JSON type.
    #[error("typedData.{0} is missing or malformed")]
    Missing(String),
    /// `primaryType` is none of ConsentRegistry's signed requests.
    #[error(
        "typedData.primaryType `{0}` is not one of Grant, Revoke, SetDelegate, SetProxy, RemoveDelegate"
    )]
    UnknownType(String),
    /// The field list differs from the contract's type.
    #[error("typedData.types.{0} differs from ConsentRegistry's {0} type")]
    WrongFields(String),
    /// A message field does not hold a value of its type.
    #[error("typedData.message.{field} must be {expected}")]
    BadValue {
        /// The field.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
}

/// The domain a contract deployment signs under (read from its ERC-5267 `eip712Domain()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentDomain {
    /// The chain.
    pub chain_id: u64,
    /// The ConsentRegistry.
    pub verifying_contract: Address,
}

impl ConsentDomain {
    /// The EIP-712 domain.
    pub fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(DOMAIN_NAME.into()),
            Some(DOMAIN_VERSION.into()),
            Some(U256::from(self.chain_id)),
            Some(self.verifying_contract),
            None,
        )
    }

    fn json(&self) -> Value {
        json!({
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract.to_checksum(None),
        })
    }
}

/// The domain a piece of typed data says it was signed for (compare with the deployment's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimedDomain {
    /// `domain.name`.
    pub name: Option<String>,
    /// `domain.version`.
    pub version: Option<String>,
    /// `domain.chainId`.
    pub chain_id: Option<U256>,
    /// `domain.verifyingContract`.
    pub verifying_contract: Option<Address>,
}

impl ClaimedDomain {
    /// Whether this is exactly `domain` (name, version, chain and contract).
    pub fn is(&self, domain: &ConsentDomain) -> bool {
        self.name.as_deref() == Some(DOMAIN_NAME)
            && self.version.as_deref() == Some(DOMAIN_VERSION)
            && self.chain_id == Some(U256::from(domain.chain_id))
            && self.verifying_contract == Some(domain.verifying_contract)
    }
}

/// One of ConsentRegistry's signed requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentMessage {
    /// `grantBySig`.
    Grant(Grant),
    /// `revokeBySig`.
    Revoke(Revoke),
    /// `setDelegateBySig` (guardian or caregiver).
    SetDelegate(SetDelegate),
    /// `setProxyBySig`.
    SetProxy(SetProxy),
    /// `removeDelegateBySig`.
    RemoveDelegate(RemoveDelegate),
}

/// `(name, type)` of each field, in the contract's order.
type Fields = &'static [(&'static str, &'static str)];

const GRANT_FIELDS: Fields = &[
    ("patient", "address"),
    ("grantee", "address"),
    ("resourceTypes", "uint64"),
    ("actions", "uint8"),
    ("purposes", "uint16"),
    ("validFrom", "uint40"),
    ("validUntil", "uint40"),
    ("consentHash", "bytes32"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
];
const REVOKE_FIELDS: Fields = &[
    ("patient", "address"),
    ("grantee", "address"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
];
const SET_DELEGATE_FIELDS: Fields = &[
    ("patient", "address"),
    ("delegate", "address"),
    ("relationship", "string"),
    ("validUntil", "uint40"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
];
const SET_PROXY_FIELDS: Fields = &[
    ("patient", "address"),
    ("proxy", "address"),
    ("validUntil", "uint40"),
    ("resourceTypes", "uint64"),
    ("actions", "uint8"),
    ("purposes", "uint16"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
];
const REMOVE_DELEGATE_FIELDS: Fields = &[
    ("patient", "address"),
    ("delegate", "address"),
    ("nonce", "uint256"),
    ("deadline", "uint256"),
];

/// The primary types and their fields.
const TYPES: &[(&str, Fields)] = &[
    ("Grant", GRANT_FIELDS),
    ("Revoke", REVOKE_FIELDS),
    ("SetDelegate", SET_DELEGATE_FIELDS),
    ("SetProxy", SET_PROXY_FIELDS),
    ("RemoveDelegate", REMOVE_DELEGATE_FIELDS),
];

fn fields_of(primary: &str) -> Option<Fields> {
    TYPES.iter().find(|(n, _)| *n == primary).map(|(_, f)| *f)
}

/// A message's fields as wallet JSON values: addresses checksummed, bytes32 as hex, integers
/// as decimal strings.
struct Writer(Map<String, Value>);

impl Writer {
    fn address(mut self, name: &str, value: Address) -> Self {
        self.0.insert(name.into(), json!(value.to_checksum(None)));
        self
    }
    fn int(mut self, name: &str, value: impl ToString) -> Self {
        self.0.insert(name.into(), json!(value.to_string()));
        self
    }
    fn text(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.into(), json!(value));
        self
    }
}

/// Reads message fields as any client writes them back.
struct Reader<'a>(&'a Value);

impl Reader<'_> {
    fn get(&self, name: &str) -> Result<&Value, TypedDataError> {
        self.0
            .get(name)
            .ok_or_else(|| TypedDataError::Missing(format!("message.{name}")))
    }
    fn address(&self, name: &str) -> Result<Address, TypedDataError> {
        self.get(name)?
            .as_str()
            .and_then(|s| Address::from_str(s).ok())
            .ok_or(TypedDataError::BadValue {
                field: name.into(),
                expected: "an address",
            })
    }
    fn bytes32(&self, name: &str) -> Result<B256, TypedDataError> {
        self.get(name)?
            .as_str()
            .and_then(|s| B256::from_str(s).ok())
            .ok_or(TypedDataError::BadValue {
                field: name.into(),
                expected: "32 bytes of hex",
            })
    }
    fn text(&self, name: &str) -> Result<String, TypedDataError> {
        self.get(name)?
            .as_str()
            .map(str::to_owned)
            .ok_or(TypedDataError::BadValue {
                field: name.into(),
                expected: "a string",
            })
    }
    /// A JSON number, a decimal string or a `0x` hex string.
    fn uint(&self, name: &str) -> Result<U256, TypedDataError> {
        parse_uint(self.get(name)?).ok_or(TypedDataError::BadValue {
            field: name.into(),
            expected: "an unsigned integer",
        })
    }
    fn small<T: TryFrom<U256>>(&self, name: &str) -> Result<T, TypedDataError> {
        T::try_from(self.uint(name)?).map_err(|_| TypedDataError::BadValue {
            field: name.into(),
            expected: "an integer in range",
        })
    }
    fn uint40(&self, name: &str) -> Result<U40, TypedDataError> {
        U40::try_from(self.small::<u64>(name)?).map_err(|_| TypedDataError::BadValue {
            field: name.into(),
            expected: "an integer below 2^40",
        })
    }
}

/// An unsigned integer as wallets write them: a JSON number, a decimal string or `0x` hex.
pub fn parse_uint(value: &Value) -> Option<U256> {
    match value {
        Value::Number(n) => n.as_u64().map(U256::from),
        Value::String(s) => match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => U256::from_str_radix(hex, 16).ok(),
            None => U256::from_str_radix(s, 10).ok(),
        },
        _ => None,
    }
}

impl ConsentMessage {
    /// The EIP-712 primary type.
    pub fn primary_type(&self) -> &'static str {
        match self {
            Self::Grant(_) => "Grant",
            Self::Revoke(_) => "Revoke",
            Self::SetDelegate(_) => "SetDelegate",
            Self::SetProxy(_) => "SetProxy",
            Self::RemoveDelegate(_) => "RemoveDelegate",
        }
    }

    /// The patient whose consent or delegates this changes.
    pub fn patient(&self) -> Address {
        match self {
            Self::Grant(m) => m.patient,
            Self::Revoke(m) => m.patient,
            Self::SetDelegate(m) => m.patient,
            Self::SetProxy(m) => m.patient,
            Self::RemoveDelegate(m) => m.patient,
        }
    }

    /// The other party: the grantee, or the delegate.
    pub fn counterparty(&self) -> Address {
        match self {
            Self::Grant(m) => m.grantee,
            Self::Revoke(m) => m.grantee,
            Self::SetDelegate(m) => m.delegate,
            Self::SetProxy(m) => m.proxy,
            Self::RemoveDelegate(m) => m.delegate,
        }
    }

    /// The patient's nonce the signature uses up.
    pub fn nonce(&self) -> U256 {
        match self {
            Self::Grant(m) => m.nonce,
            Self::Revoke(m) => m.nonce,
            Self::SetDelegate(m) => m.nonce,
            Self::SetProxy(m) => m.nonce,
            Self::RemoveDelegate(m) => m.nonce,
        }
    }

    /// When the signature stops being accepted (unix seconds).
    pub fn deadline(&self) -> U256 {
        match self {
            Self::Grant(m) => m.deadline,
            Self::Revoke(m) => m.deadline,
            Self::SetDelegate(m) => m.deadline,
            Self::SetProxy(m) => m.deadline,
            Self::RemoveDelegate(m) => m.deadline,
        }
    }

    /// Only the patient may sign a delegate change; a grant or revocation may also be signed
    /// by an authorised delegate.
    pub fn patient_only(&self) -> bool {
        matches!(
            self,
            Self::SetDelegate(_) | Self::SetProxy(_) | Self::RemoveDelegate(_)
        )
    }

    /// The EIP-712 digest under `domain`: what the contract recovers the signer from.
    pub fn signing_hash(&self, domain: &ConsentDomain) -> B256 {
        let domain = domain.eip712();
        match self {
            Self::Grant(m) => m.eip712_signing_hash(&domain),
            Self::Revoke(m) => m.eip712_signing_hash(&domain),
            Self::SetDelegate(m) => m.eip712_signing_hash(&domain),
            Self::SetProxy(m) => m.eip712_signing_hash(&domain),
            Self::RemoveDelegate(m) => m.eip712_signing_hash(&domain),
        }
    }

    /// The object `eth_signTypedData_v4` takes.
    pub fn to_wallet_json(&self, domain: &ConsentDomain) -> Value {
        let w = Writer(Map::new());
        let message = match self {
            Self::Grant(m) => w
                .address("patient", m.patient)
                .address("grantee", m.grantee)
                .int("resourceTypes", m.resourceTypes)
                .int("actions", m.actions)
                .int("purposes", m.purposes)
                .int("validFrom", m.validFrom)
                .int("validUntil", m.validUntil)
                .text("consentHash", &m.consentHash.to_string())
                .int("nonce", m.nonce)
                .int("deadline", m.deadline),
            Self::Revoke(m) => w
                .address("patient", m.patient)
                .address("grantee", m.grantee)
                .int("nonce", m.nonce)
                .int("deadline", m.deadline),
            Self::SetDelegate(m) => w
                .address("patient", m.patient)
                .address("delegate", m.delegate)
                .text("relationship", &m.relationship)
                .int("validUntil", m.validUntil)
                .int("nonce", m.nonce)
                .int("deadline", m.deadline),
            Self::SetProxy(m) => w
                .address("patient", m.patient)
                .address("proxy", m.proxy)
                .int("validUntil", m.validUntil)
                .int("resourceTypes", m.resourceTypes)
                .int("actions", m.actions)
                .int("purposes", m.purposes)
                .int("nonce", m.nonce)
                .int("deadline", m.deadline),
            Self::RemoveDelegate(m) => w
                .address("patient", m.patient)
                .address("delegate", m.delegate)
                .int("nonce", m.nonce)
                .int("deadline", m.deadline),
        }
        .0;
        let primary = self.primary_type();
        let fields: Vec<Value> = fields_of(primary)
            .unwrap_or_default()
            .iter()
            .map(|(name, ty)| json!({"name": name, "type": ty}))
            .collect();
        json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                primary: fields,
            },
            "primaryType": primary,
            "domain": domain.json(),
            "message": message,
        })
    }

    /// Reads the object `eth_signTypedData_v4` was given (as any client writes it back): the
    /// message, and the domain it claims.
    pub fn from_wallet_json(typed: &Value) -> Result<(Self, ClaimedDomain), TypedDataError> {
        let primary = typed
            .get("primaryType")
            .and_then(Value::as_str)
            .ok_or_else(|| TypedDataError::Missing("primaryType".into()))?;
        let want = fields_of(primary).ok_or_else(|| TypedDataError::UnknownType(primary.into()))?;
        let got: Vec<(Option<&str>, Option<&str>)> = typed
            .pointer(&format!("/types/{primary}"))
            .and_then(Value::as_array)
            .ok_or_else(|| TypedDataError::Missing(format!("types.{primary}")))?
            .iter()
            .map(|f| {
                (
                    f.get("name").and_then(Value::as_str),
                    f.get("type").and_then(Value::as_str),
                )
            })
            .collect();
        if got
            != want
                .iter()
                .map(|(n, t)| (Some(*n), Some(*t)))
                .collect::<Vec<_>>()
        {
            return Err(TypedDataError::WrongFields(primary.into()));
        }
        let m = Reader(
            typed
                .get("message")
                .ok_or_else(|| TypedDataError::Missing("message".into()))?,
        );
        let message = match primary {
            "Grant" => Self::Grant(Grant {
                patient: m.address("patient")?,
                grantee: m.address("grantee")?,
                resourceTypes: m.small("resourceTypes")?,
                actions: m.small("actions")?,
                purposes: m.small("purposes")?,
                validFrom: m.uint40("validFrom")?,
                validUntil: m.uint40("validUntil")?,
                consentHash: m.bytes32("consentHash")?,
                nonce: m.uint("nonce")?,
                deadline: m.uint("deadline")?,
            }),
            "Revoke" => Self::Revoke(Revoke {
                patient: m.address("patient")?,
                grantee: m.address("grantee")?,
                nonce: m.uint("nonce")?,
                deadline: m.uint("deadline")?,
            }),
            "SetDelegate" => Self::SetDelegate(SetDelegate {
                patient: m.address("patient")?,
                delegate: m.address("delegate")?,
                relationship: m.text("relationship")?,
                validUntil: m.uint40("validUntil")?,
                nonce: m.uint("nonce")?,
                deadline: m.uint("deadline")?,
            }),
            "SetProxy" => Self::SetProxy(SetProxy {
                patient: m.address("patient")?,
                proxy: m.address("proxy")?,
                validUntil: m.uint40("validUntil")?,
                resourceTypes: m.small("resourceTypes")?,
                actions: m.small("actions")?,
                purposes: m.small("purposes")?,
                nonce: m.uint("nonce")?,
                deadline: m.uint("deadline")?,
            }),
            _ => Self::RemoveDelegate(RemoveDelegate {
                patient: m.address("patient")?,
                delegate: m.address("delegate")?,
                nonce: m.uint("nonce")?,
                deadline: m.uint("deadline")?,
            }),
        };
        let domain = typed.get("domain").unwrap_or(&Value::Null);
        let claimed = ClaimedDomain {
            name: domain
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            version: domain
                .get("version")
                .and_then(Value::as_str)
                .map(str::to_owned),
            chain_id: domain.get("chainId").and_then(parse_uint),
            verifying_contract: domain
                .get("verifyingContract")
                .and_then(Value::as_str)
                .and_then(|s| Address::from_str(s).ok()),
        };
        Ok((message, claimed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    fn domain() -> ConsentDomain {
        ConsentDomain {
            chain_id: 31337,
            verifying_contract: address!("e7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
        }
    }

    fn samples() -> Vec<ConsentMessage> {
        let (p, g) = (Address::repeat_byte(1), Address::repeat_byte(2));
        vec![
            ConsentMessage::Grant(Grant {
                patient: p,
                grantee: g,
                resourceTypes: 6,
                actions: 0b10010,
                purposes: 1,
                validFrom: U40::ZERO,
                validUntil: U40::from(4_000_000_000u64),
                consentHash: B256::repeat_byte(9),
                nonce: U256::from(3),
                deadline: U256::from(2_000_000_000u64),
            }),
            ConsentMessage::Revoke(Revoke {
                patient: p,
                grantee: g,
                nonce: U256::from(4),
                deadline: U256::from(2_000_000_000u64),
            }),
            ConsentMessage::SetDelegate(SetDelegate {
                patient: p,
                delegate: g,
                relationship: "guardian".into(),
                validUntil: U40::from(1_900_000_000u64),
                nonce: U256::from(5),
                deadline: U256::from(2_000_000_000u64),
            }),
            ConsentMessage::SetProxy(SetProxy {
                patient: p,
                proxy: g,
                validUntil: U40::from(1_900_000_000u64),
                resourceTypes: 2,
                actions: 2,
                purposes: 1,
                nonce: U256::from(6),
                deadline: U256::from(2_000_000_000u64),
            }),
            ConsentMessage::RemoveDelegate(RemoveDelegate {
                patient: p,
                delegate: g,
                nonce: U256::from(7),
                deadline: U256::from(2_000_000_000u64),
            }),
        ]
    }

    fn encode_type(message: &ConsentMessage) -> String {
        match message {
            ConsentMessage::Grant(_) => Grant::eip712_encode_type().into_owned(),
            ConsentMessage::Revoke(_) => Revoke::eip712_encode_type().into_owned(),
            ConsentMessage::SetDelegate(_) => SetDelegate::eip712_encode_type().into_owned(),
            ConsentMessage::SetProxy(_) => SetProxy::eip712_encode_type().into_owned(),
            ConsentMessage::RemoveDelegate(_) => RemoveDelegate::eip712_encode_type().into_owned(),
        }
    }

    /// A Solidity source with adjacent string literals joined (`"a,"\n  "b"` -> `"a,b"`), as
    /// the compiler joins them: long type strings are split over lines.
    fn joined_literals(path: &str) -> String {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(path),
        )
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find('"') {
            out.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
            let gap = rest.len() - rest.trim_start().len();
            let (space, after) = rest.split_at(gap);
            if space.contains('\n')
                && after.starts_with('"')
                && out.matches('"').count().is_multiple_of(2)
            {
                // The closing quote of one literal, then only space, then the next literal.
                out.pop();
                rest = &after[1..];
            }
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn the_types_are_the_contracts_and_the_solidity_test_bases() {
        let contract = joined_literals("contracts/ConsentRegistry.sol");
        let test_base = joined_literals("contracts/test/base/ConsentTypedData.sol");
        for message in samples() {
            let ty = encode_type(&message);
            assert!(
                contract.contains(&format!("\"{ty}\"")),
                "ConsentRegistry.sol has no {ty}"
            );
            assert!(
                test_base.contains(&format!("\"{ty}\"")),
                "ConsentTypedData.sol has no {ty}"
            );
            // The wallet JSON lists the same fields.
            let wallet = message.to_wallet_json(&domain());
            let listed: Vec<String> = wallet["types"][message.primary_type()]
                .as_array()
                .expect("fields")
                .iter()
                .map(|f| {
                    format!(
                        "{} {}",
                        f["type"].as_str().unwrap_or_default(),
                        f["name"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            assert_eq!(
                ty,
                format!("{}({})", message.primary_type(), listed.join(","))
            );
        }
    }

    #[test]
    fn wallet_json_round_trips_and_hashes_as_alloy_does() {
        for message in samples() {
            let wallet = message.to_wallet_json(&domain());
            let (back, claimed) = ConsentMessage::from_wallet_json(&wallet).expect("reads back");
            assert_eq!(back, message);
            assert!(claimed.is(&domain()));
            // alloy's own reading of the same JSON gives the same digest.
            let parsed: alloy_dyn_abi::TypedData =
                serde_json::from_value(wallet.clone()).expect("typed data");
            assert_eq!(
                parsed.eip712_signing_hash().expect("hash"),
                message.signing_hash(&domain())
            );
        }
    }

    #[test]
    fn numbers_are_read_as_wallets_write_them() {
        let mut wallet = samples()[1].to_wallet_json(&domain());
        wallet["message"]["nonce"] = json!(4);
        wallet["message"]["deadline"] = json!("0x773594000");
        wallet["domain"]["chainId"] = json!("0x7a69");
        let (message, claimed) = ConsentMessage::from_wallet_json(&wallet).expect("reads");
        assert_eq!(message.nonce(), U256::from(4));
        assert_eq!(message.deadline(), U256::from(0x7_7359_4000u64));
        assert!(claimed.is(&domain()));
    }

    #[test]
    fn other_shapes_are_refused() {
        let mut wallet = samples()[0].to_wallet_json(&domain());
        wallet["types"]["Grant"][2]["type"] = json!("uint256");
        assert_eq!(
            ConsentMessage::from_wallet_json(&wallet),
            Err(TypedDataError::WrongFields("Grant".into()))
        );
        let mut wallet = samples()[0].to_wallet_json(&domain());
        wallet["primaryType"] = json!("Transfer");
        assert!(matches!(
            ConsentMessage::from_wallet_json(&wallet),
            Err(TypedDataError::UnknownType(_))
        ));
        let mut wallet = samples()[0].to_wallet_json(&domain());
        wallet["message"]["actions"] = json!("300");
        assert!(matches!(
            ConsentMessage::from_wallet_json(&wallet),
            Err(TypedDataError::BadValue { .. })
        ));
        let mut other = samples()[1].to_wallet_json(&domain());
        other["domain"]["chainId"] = json!(1);
        let (_, claimed) = ConsentMessage::from_wallet_json(&other).expect("reads");
        assert!(!claimed.is(&domain()));
    }
}
