// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IConsentRegistry} from "../../interfaces/IConsentRegistry.sol";
import {CarechainFixture} from "./CarechainFixture.sol";
import {ConsentTypedData} from "./ConsentTypedData.sol";

/// @title ConsentFixture
/// @notice Shared helpers of the ConsentRegistry suites: the test-side EIP-712 encoder bound to the
/// fixture's registry, building and submitting signed calls, and decision assertions.
abstract contract ConsentFixture is CarechainFixture {
    bytes32 internal constant GRANT_TYPEHASH = ConsentTypedData.GRANT_TYPEHASH;
    bytes32 internal constant REVOKE_TYPEHASH = ConsentTypedData.REVOKE_TYPEHASH;
    uint256 internal constant SECP256K1_N = ConsentTypedData.SECP256K1_N;

    bytes32 internal constant CONSENT_HASH = keccak256("canonical FHIR Consent JSON");

    uint8 internal constant ALL_ACTIONS = 0x1f;
    uint16 internal constant ETREAT = uint16(1) << 1;

    // ------------------------------------------------------------------------------------------
    // EIP-712, from the specification (see `ConsentTypedData`)
    // ------------------------------------------------------------------------------------------

    function _domainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return ConsentTypedData.domainSeparator(verifyingContract, chainId);
    }

    function _grantDigestFor(
        IConsentRegistry.Grant memory g,
        uint256 nonce,
        address verifyingContract,
        uint256 chainId
    ) internal pure returns (bytes32) {
        return ConsentTypedData.grantDigest(g, nonce, verifyingContract, chainId);
    }

    /// @dev Digest of `g` for the fixture's registry on the current chain at the nonce `g` names.
    function _grantDigest(IConsentRegistry.Grant memory g) internal view returns (bytes32) {
        return _grantDigestFor(g, g.nonce, address(consents), block.chainid);
    }

    function _revokeDigestFor(
        address patient_,
        address grantee,
        uint256 nonce,
        uint256 deadline,
        address verifyingContract,
        uint256 chainId
    ) internal pure returns (bytes32) {
        return ConsentTypedData.revokeDigest(patient_, grantee, nonce, deadline, verifyingContract, chainId);
    }

    /// @dev Digest of a revocation at the patient's current nonce.
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

    /// @dev The default signed grant: read/search Observation for TREAT to the doctor for a year,
    /// at the patient's current nonce.
    function _grantArgs(address grantee) internal view returns (IConsentRegistry.Grant memory) {
        return IConsentRegistry.Grant({
            patient: patient,
            grantee: grantee,
            resourceTypes: OBSERVATION,
            actions: READ_SEARCH,
            purposes: TREAT,
            validFrom: 0,
            validUntil: uint40(block.timestamp) + 365 days,
            consentHash: CONSENT_HASH,
            nonce: consents.nonces(patient),
            deadline: block.timestamp + 1 hours
        });
    }

    function _grantBySig(IConsentRegistry.Grant memory g, address signer, bytes memory signature) internal {
        consents.grantBySig(g, signer, signature);
    }

    function _grantBySigOn(
        IConsentRegistry registry,
        IConsentRegistry.Grant memory g,
        address signer,
        bytes memory signature
    ) internal {
        registry.grantBySig(g, signer, signature);
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

    function _highS(bytes memory signature) internal pure returns (bytes memory) {
        return ConsentTypedData.highS(signature);
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
