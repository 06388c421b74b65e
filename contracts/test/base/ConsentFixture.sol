// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IConsentRegistry} from "../../interfaces/IConsentRegistry.sol";
import {CarechainFixture} from "./CarechainFixture.sol";

/// @title ConsentFixture
/// @notice Shared helpers of the ConsentRegistry suites: a test-side EIP-712 encoder written from
/// the type strings (not from the contract's own `grantDigest`, so a wrong hash in the contract
/// fails the tests instead of agreeing with itself), signing helpers and short aliases for the
/// `Basis` and break-glass codes.
abstract contract ConsentFixture is CarechainFixture {
    /// @dev Every argument of `grantBySig` but the signer and signature, kept in memory so that
    /// tests stay below the legacy code generator's stack limit.
    struct GrantArgs {
        address patient;
        address grantee;
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
        uint40 validFrom;
        uint40 validUntil;
        bytes32 consentHash;
        uint256 deadline;
    }

    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant GRANT_TYPEHASH = keccak256(
        "Grant(address patient,address grantee,uint64 resourceTypes,uint8 actions,uint16 purposes,"
        "uint40 validFrom,uint40 validUntil,bytes32 consentHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant REVOKE_TYPEHASH =
        keccak256("Revoke(address patient,address grantee,uint256 nonce,uint256 deadline)");

    /// @dev Order of the secp256k1 group: `s` above half of it is the malleable twin of a signature.
    uint256 internal constant SECP256K1_N =
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    bytes32 internal constant CONSENT_HASH = keccak256("canonical FHIR Consent JSON");

    uint8 internal constant ALL_ACTIONS = 0x1f;
    uint16 internal constant ETREAT = uint16(1) << 1;

    // ------------------------------------------------------------------------------------------
    // EIP-712, from the specification
    // ------------------------------------------------------------------------------------------

    function _domainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                DOMAIN_TYPEHASH,
                keccak256("carechain ConsentRegistry"),
                keccak256("1"),
                chainId,
                verifyingContract
            )
        );
    }

    function _typedDigest(address verifyingContract, uint256 chainId, bytes32 structHash)
        internal
        pure
        returns (bytes32)
    {
        return
            keccak256(abi.encodePacked("\x19\x01", _domainSeparator(verifyingContract, chainId), structHash));
    }

    function _grantStructHash(GrantArgs memory g, uint256 nonce) internal pure returns (bytes32) {
        // Two halves because every field is one 32-byte word: their concatenation is `abi.encode`
        // of the whole struct, and the legacy code generator cannot hold eleven values at once.
        return keccak256(
            bytes.concat(
                abi.encode(GRANT_TYPEHASH, g.patient, g.grantee, g.resourceTypes, g.actions, g.purposes),
                abi.encode(g.validFrom, g.validUntil, g.consentHash, nonce, g.deadline)
            )
        );
    }

    function _grantDigestFor(GrantArgs memory g, uint256 nonce, address verifyingContract, uint256 chainId)
        internal
        pure
        returns (bytes32)
    {
        return _typedDigest(verifyingContract, chainId, _grantStructHash(g, nonce));
    }

    /// @dev Digest of `g` for the fixture's registry on the current chain at the patient's current nonce.
    function _grantDigest(GrantArgs memory g) internal view returns (bytes32) {
        return _grantDigestFor(g, consents.nonces(g.patient), address(consents), block.chainid);
    }

    function _revokeDigestFor(
        address patient_,
        address grantee,
        uint256 nonce,
        uint256 deadline,
        address verifyingContract,
        uint256 chainId
    ) internal pure returns (bytes32) {
        return _typedDigest(
            verifyingContract,
            chainId,
            keccak256(abi.encode(REVOKE_TYPEHASH, patient_, grantee, nonce, deadline))
        );
    }

    function _revokeDigest(address patient_, address grantee, uint256 deadline)
        internal
        view
        returns (bytes32)
    {
        return _revokeDigestFor(
            patient_, grantee, consents.nonces(patient_), deadline, address(consents), block.chainid
        );
    }

    // ------------------------------------------------------------------------------------------
    // Building and submitting
    // ------------------------------------------------------------------------------------------

    /// @dev The default signed grant: read/search Observation for TREAT to the doctor for a year.
    function _grantArgs(address grantee) internal view returns (GrantArgs memory) {
        return GrantArgs({
            patient: patient,
            grantee: grantee,
            resourceTypes: OBSERVATION,
            actions: READ_SEARCH,
            purposes: TREAT,
            validFrom: 0,
            validUntil: uint40(block.timestamp) + 365 days,
            consentHash: CONSENT_HASH,
            deadline: block.timestamp + 1 hours
        });
    }

    function _grantBySig(GrantArgs memory g, address signer, bytes memory signature) internal {
        consents.grantBySig(
            g.patient,
            g.grantee,
            g.resourceTypes,
            g.actions,
            g.purposes,
            g.validFrom,
            g.validUntil,
            g.consentHash,
            g.deadline,
            signer,
            signature
        );
    }

    function _grantBySigOn(
        IConsentRegistry registry,
        GrantArgs memory g,
        address signer,
        bytes memory signature
    ) internal {
        registry.grantBySig(
            g.patient,
            g.grantee,
            g.resourceTypes,
            g.actions,
            g.purposes,
            g.validFrom,
            g.validUntil,
            g.consentHash,
            g.deadline,
            signer,
            signature
        );
    }

    /// @dev A direct grant by `actor` for `patient_` with the given scope, valid for a year.
    function _grantAs(
        address actor,
        address patient_,
        address grantee,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes
    ) internal {
        vm.prank(actor);
        consents.grant(
            patient_,
            grantee,
            resourceTypes,
            actions,
            purposes,
            0,
            uint40(block.timestamp) + 365 days,
            CONSENT_HASH
        );
    }

    /// @dev The same signature with `s` replaced by `n - s` and `v` flipped: valid for plain
    /// `ecrecover`, and exactly the malleable form EIP-2 and OpenZeppelin reject.
    function _highS(bytes memory signature) internal pure returns (bytes memory) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
    }

    function _isAllowedBasis(IConsentRegistry.Basis basis) internal pure returns (bool) {
        return basis == IConsentRegistry.Basis.OwnData || basis == IConsentRegistry.Basis.Delegate
            || basis == IConsentRegistry.Basis.MemberConsent
            || basis == IConsentRegistry.Basis.OrganisationConsent
            || basis == IConsentRegistry.Basis.BreakGlass;
    }

    /// @dev Asserts the decision and its basis, and that `allowed` agrees with the basis table.
    function _assertDecision(
        bool allowed,
        IConsentRegistry.Basis basis,
        bool expectedAllowed,
        IConsentRegistry.Basis expectedBasis,
        string memory what
    ) internal pure {
        assertEq(uint256(basis), uint256(expectedBasis), string.concat(what, ": basis"));
        assertEq(allowed, expectedAllowed, string.concat(what, ": allowed"));
        assertEq(allowed, _isAllowedBasis(basis), string.concat(what, ": allowed agrees with basis"));
    }
}
