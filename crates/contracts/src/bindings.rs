//! `sol!` bindings generated from the committed ABI files in `abi/`.
//!
//! The ABI files are the contract interfaces today and the full implementations later (a
//! superset that adds AccessControl and EIP-712 functions), so code in this workspace only
//! names items that the interfaces declare. Solidity enums appear as `u8` in a JSON ABI; the
//! typed mirrors live in [`crate::enums`].
#![allow(missing_docs, unreachable_pub, clippy::too_many_arguments)]

use alloy::sol;

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    ProviderRegistry,
    "../../abi/ProviderRegistry.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    ConsentRegistry,
    "../../abi/ConsentRegistry.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    RecordRegistry,
    "../../abi/RecordRegistry.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    AuditAnchor,
    "../../abi/AuditAnchor.json"
);

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolEvent;

    #[test]
    fn event_signatures_match_the_interfaces() {
        assert_eq!(
            ConsentRegistry::ConsentGranted::SIGNATURE,
            "ConsentGranted(address,address,address,uint64,uint8,uint16,uint40,uint40,bytes32)"
        );
        assert_eq!(
            ProviderRegistry::OrganisationAdmitted::SIGNATURE,
            "OrganisationAdmitted(address,uint8,string)"
        );
        assert_eq!(
            RecordRegistry::RecordBatchAnchored::SIGNATURE,
            "RecordBatchAnchored(address,bytes32,uint32,address)"
        );
        assert_eq!(
            AuditAnchor::AuditBatchAnchored::SIGNATURE,
            "AuditBatchAnchored(uint64,address,uint64,uint64,bytes32)"
        );
    }
}
