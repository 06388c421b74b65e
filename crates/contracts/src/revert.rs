//! ConsentRegistry refusals in plain words.
//!
//! [`explain`] turns the revert data of a ConsentRegistry call (a custom error) into a sentence
//! a patient, a delegate or an operator can act on, e.g. for a caregiver's `consent grant`:
//! "a caregiver may read alice's records but cannot change their consent". Addresses are shown
//! by the names a caller knows for them (keystore names, display names) and otherwise as
//! checksummed addresses. The CLI and the gateway's relay both use it, so a refusal reads the
//! same wherever it is met.

use crate::{
    bindings::ConsentRegistry::ConsentRegistryErrors as E,
    codes::{Action, Purpose, ResourceType},
    enums::DelegateKind,
};
use alloy::{primitives::Address, sol_types::SolInterface};

/// The name a caller knows for an address, if any.
pub type Names<'a> = &'a dyn Fn(Address) -> Option<String>;

/// No names known: every address is shown as such.
pub fn no_names(_: Address) -> Option<String> {
    None
}

/// `revert_data` (the custom error a ConsentRegistry call reverted with) in plain words, or
/// `None` when it is not one of the registry's errors.
pub fn explain(revert_data: &[u8], names: Names<'_>) -> Option<String> {
    let error = E::abi_decode(revert_data).ok()?;
    let who = |a: Address| names(a).unwrap_or_else(|| a.to_checksum(None));
    let whose = |a: Address| possessive(&who(a));
    Some(match error {
        E::ConsentUnauthorizedActor(e) => format!(
            "{} is neither {} nor an active delegate of {}, so it cannot change {} consent \
             (the patient can appoint a guardian or proxy with `delegate add`)",
            who(e.actor),
            who(e.patient),
            who(e.patient),
            whose(e.patient)
        ),
        E::ConsentUnauthorizedDelegate(e) => match DelegateKind::try_from(e.kind) {
            Ok(DelegateKind::Caregiver) => format!(
                "a caregiver may read {} records but cannot change their consent",
                whose(e.patient)
            ),
            _ => format!(
                "{} is a delegate of {} whose kind may not change consent",
                who(e.delegate),
                who(e.patient)
            ),
        },
        E::ConsentPatientOnly(e) => format!(
            "only {} may do this (cancel their outstanding signatures); {} may not, not even as a delegate",
            who(e.patient),
            who(e.actor)
        ),
        E::ConsentScopeExceedsDelegation(e) => format!(
            "a proxy grants only within what the patient delegated to it: {}, for {}, for {} ({} asked for more)",
            names_of(ResourceType::from_bits(e.resourceTypes)),
            names_of(
                Action::from_bits(e.actions)
                    .into_iter()
                    .map(Action::long_name)
                    .collect()
            ),
            names_of(
                Purpose::from_bits(e.purposes)
                    .into_iter()
                    .map(Purpose::code)
                    .collect()
            ),
            who(e.delegate)
        ),
        E::ConsentPeriodExceedsDelegation(e) => format!(
            "a delegate's grant cannot outlast its delegation, which ends at {}: choose an end no later than that (asked {})",
            show_time(e.delegationEnd.to()),
            show_time(e.validUntil.to())
        ),
        E::ConsentInvalidDelegateGrantee(e) => format!(
            "a delegate may not grant to itself, to its own organisation or to a member key of that organisation: {} may not name {}",
            who(e.delegate),
            who(e.grantee)
        ),
        E::ConsentNotGrantedByDelegate(e) => format!(
            "a proxy may change only the consents it granted itself; {} consent to {} was not granted by {}",
            whose(e.patient),
            who(e.grantee),
            who(e.delegate)
        ),
        E::ConsentNotFound(e) => format!(
            "{} has no consent stored for {}: nothing to revoke",
            who(e.patient),
            who(e.grantee)
        ),
        E::ConsentInvalidGrantee(e) => format!(
            "{} cannot be a grantee (the zero address or the patient themselves): name an organisation or a member key",
            who(e.grantee)
        ),
        E::ConsentInvalidScope(_) => "the scope is empty or outside the code tables: name at least one resource type, action and purpose".into(),
        E::ConsentInvalidPeriod(e) => format!(
            "the validity period {}..{} is empty or already over: choose a later end",
            show_time(e.validFrom.to()),
            show_time(e.validUntil.to())
        ),
        E::ConsentExpiredSignature(e) => format!(
            "the signature's deadline {} has passed: sign again",
            show_time(u64::try_from(e.deadline).unwrap_or(u64::MAX))
        ),
        E::ConsentInvalidSignature(e) => format!(
            "the signature does not verify for {} over this chain's typed data: sign the same typed data again, unchanged",
            who(e.signer)
        ),
        E::ConsentInvalidNonce(e) => format!(
            "the signature was made for another nonce than {} current one ({}): it was already used or cancelled; sign again",
            whose(e.patient),
            e.currentNonce
        ),
        E::ConsentInvalidNonceIncrease(e) => format!(
            "a new nonce must be above the current {} and at most 2^64 above it (asked {})",
            e.currentNonce, e.newNonce
        ),
        E::ConsentInvalidDelegate(e) => format!(
            "{} cannot be appointed this way: not the zero address or the patient, a kind is needed, and a proxy is appointed with its scope (`setProxy`)",
            who(e.delegate)
        ),
        E::ConsentDelegateNotFound(e) => format!(
            "{} is not a delegate of {}: nothing to remove",
            who(e.delegate),
            who(e.patient)
        ),
        E::ConsentInvalidPatient(_) => "the patient cannot be the zero address".into(),
        E::ConsentBreakGlassUnauthorized(e) => format!(
            "{} may not open or close break-glass: only an active member key of an active hospital or clinic may",
            who(e.requester)
        ),
        E::ConsentBreakGlassInvalid(e) => format!(
            "break-glass needs a coded reason and a duration from 1 second to the maximum of {} seconds (asked {})",
            e.maxDuration, e.duration
        ),
        E::ConsentBreakGlassNotOpen(e) => format!(
            "there is no open break-glass session of {} for {}",
            who(e.org),
            who(e.patient)
        ),
        E::ConsentInvalidConfiguration(_) => {
            "the registry or governor given to the constructor is the zero address".into()
        }
        E::AccessControlUnauthorizedAccount(e) => format!(
            "{} lacks the role this needs (governance)",
            who(e.account)
        ),
        other => format!("the ConsentRegistry refused: {other:?}"),
    })
}

fn possessive(name: &str) -> String {
    if name.ends_with('s') {
        format!("{name}'")
    } else {
        format!("{name}'s")
    }
}

fn names_of<T: std::fmt::Display>(items: Vec<T>) -> String {
    if items.is_empty() {
        return "nothing".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_time(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{seconds} (unix)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::ConsentRegistry;
    use alloy::{primitives::address, sol_types::SolError};

    const ALICE: Address = address!("0x00000000000000000000000000000000000A11CE");
    const DAVE: Address = address!("0x0000000000000000000000000000000000000DA7");

    fn names(a: Address) -> Option<String> {
        (a == ALICE).then(|| "Alice".to_owned())
    }

    #[test]
    fn a_caregiver_is_told_it_reads_but_does_not_consent() {
        let data = ConsentRegistry::ConsentUnauthorizedDelegate {
            delegate: DAVE,
            patient: ALICE,
            kind: DelegateKind::Caregiver.into(),
        }
        .abi_encode();
        assert_eq!(
            explain(&data, &names).as_deref(),
            Some("a caregiver may read Alice's records but cannot change their consent")
        );
    }

    #[test]
    fn unknown_names_are_addresses_and_scopes_are_named() {
        let data = ConsentRegistry::ConsentScopeExceedsDelegation {
            delegate: DAVE,
            resourceTypes: ResourceType::Observation.bit(),
            actions: Action::Read.bit(),
            purposes: Purpose::Treat.bit(),
        }
        .abi_encode();
        let text = explain(&data, &no_names).expect("a registry error");
        assert!(text.contains("Observation, for read, for TREAT"), "{text}");
        assert!(text.contains(&DAVE.to_checksum(None)), "{text}");
        let nonce = ConsentRegistry::ConsentInvalidNonce {
            patient: ALICE,
            currentNonce: alloy::primitives::U256::from(3),
        }
        .abi_encode();
        assert!(
            explain(&nonce, &names)
                .expect("a registry error")
                .contains("Alice's current one (3)")
        );
    }

    #[test]
    fn other_revert_data_is_not_explained() {
        assert_eq!(explain(&[], &no_names), None);
        assert_eq!(explain(&[0xde, 0xad, 0xbe, 0xef], &no_names), None);
    }
}
