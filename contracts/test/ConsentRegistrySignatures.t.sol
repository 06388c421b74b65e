// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ConsentRegistry} from "../ConsentRegistry.sol";
import {IConsentRegistry} from "../interfaces/IConsentRegistry.sol";
import {ConsentFixture} from "./base/ConsentFixture.sol";
import {MockERC1271Wallet} from "./mocks/MockERC1271Wallet.sol";

/// @notice Unit tests of the gas-free path: EIP-712 domain and digests, `grantBySig`,
/// `revokeBySig`, nonces and their cancellation, EOA and ERC-1271 signers.
contract ConsentRegistrySignaturesTest is ConsentFixture {
    uint256 internal constant WALLET_OWNER_PK = 0xC0FFEE;

    function _invalidSignature(address signer) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, signer);
    }

    function _invalidNonce(address patient_, uint256 current) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonce.selector, patient_, current);
    }

    /// @dev A signed grant of the default scope to `grantee`, signed by the patient.
    function _signedGrant(address grantee)
        internal
        view
        returns (IConsentRegistry.Grant memory g, bytes memory signature)
    {
        g = _grantArgs(grantee);
        signature = _sign(PATIENT_PK, _grantDigest(g));
    }

    // ---- EIP-712 domain ----

    function test_eip712Domain_isErc5267() public view {
        (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        ) = consents.eip712Domain();
        assertEq(uint256(uint8(fields)), 0x0f, "name, version, chainId, verifyingContract");
        assertEq(name, "carechain ConsentRegistry");
        assertEq(version, "1");
        assertEq(chainId, block.chainid, "chain id");
        assertEq(verifyingContract, address(consents), "verifying contract");
        assertEq(salt, bytes32(0), "no salt");
        assertEq(extensions.length, 0, "no extensions");
    }

    function test_domainSeparator_isBoundToChainIdAndAddress() public {
        assertEq(
            consents.DOMAIN_SEPARATOR(), _domainSeparator(address(consents), block.chainid), "as specified"
        );
        bytes32 before = consents.DOMAIN_SEPARATOR();

        vm.chainId(10);
        assertEq(consents.DOMAIN_SEPARATOR(), _domainSeparator(address(consents), 10), "after a fork");
        assertTrue(consents.DOMAIN_SEPARATOR() != before, "changes with the chain id");
        (,,, uint256 chainId,,,) = consents.eip712Domain();
        assertEq(chainId, 10, "ERC-5267 follows the chain id");

        ConsentRegistry other = new ConsentRegistry(providers, governor, MAX_BREAK_GLASS);
        assertEq(other.DOMAIN_SEPARATOR(), _domainSeparator(address(other), 10), "other deployment");
        assertTrue(other.DOMAIN_SEPARATOR() != consents.DOMAIN_SEPARATOR(), "differs per contract");
    }

    function test_digests_matchTheSpecification() public view {
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        IConsentRegistry.Consent memory scope =
            IConsentRegistry.Consent(g.resourceTypes, g.actions, g.purposes, g.validFrom, g.validUntil);
        assertEq(
            consents.grantDigest(g.patient, g.grantee, scope, g.consentHash, 3, g.deadline),
            _grantDigestFor(g, 3, address(consents), block.chainid),
            "Grant digest"
        );
        assertEq(
            consents.revokeDigest(patient, doctor, 4, 99),
            _revokeDigestFor(patient, doctor, 4, 99, address(consents), block.chainid),
            "Revoke digest"
        );
    }

    // ---- grantBySig ----

    function test_grantBySig_byRelayer_storesEmitsAndUsesTheNonce() public {
        (IConsentRegistry.Grant memory g, bytes memory signature) = _signedGrant(doctor);
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentGranted(
            patient,
            doctor,
            patient,
            g.resourceTypes,
            g.actions,
            g.purposes,
            g.validFrom,
            g.validUntil,
            CONSENT_HASH
        );
        vm.prank(relayer);
        _grantBySig(g, patient, signature);

        IConsentRegistry.Consent memory c = consents.consentOf(patient, doctor);
        assertEq(c.resourceTypes, g.resourceTypes, "resourceTypes");
        assertEq(c.actions, g.actions, "actions");
        assertEq(c.purposes, g.purposes, "purposes");
        assertEq(c.validUntil, g.validUntil, "validUntil");
        assertEq(consents.nonces(patient), 1, "nonce used");
        (bool allowed, IConsentRegistry.Basis basis) = _readObservation(doctor);
        _assertDecision(allowed, basis, true, IConsentRegistry.Basis.MemberConsent, "signed consent applies");
    }

    function test_grantBySig_byActiveDelegate_usesThePatientsNonce() public {
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Guardian, START + 400 days);
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        bytes memory signature = _sign(DELEGATE_PK, _grantDigest(g));
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentGranted(
            patient,
            doctor,
            delegate,
            g.resourceTypes,
            g.actions,
            g.purposes,
            g.validFrom,
            g.validUntil,
            CONSENT_HASH
        );
        _grantBySig(g, delegate, signature);
        assertEq(consents.nonces(patient), 1, "patient's nonce");
        assertEq(consents.nonces(delegate), 0, "delegate's own nonce untouched");
    }

    function test_grantBySig_deadlineIsInclusive() public {
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        g.deadline = block.timestamp;
        _grantBySig(g, patient, _sign(PATIENT_PK, _grantDigest(g)));
        assertEq(consents.nonces(patient), 1);
    }

    function test_grantBySig_revertsAfterTheDeadline() public {
        (IConsentRegistry.Grant memory g, bytes memory signature) = _signedGrant(doctor);
        vm.warp(g.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentExpiredSignature.selector, g.deadline));
        _grantBySig(g, patient, signature);
        assertEq(consents.nonces(patient), 0, "nonce kept");
    }

    function test_grantBySig_revertsOnReplay() public {
        (IConsentRegistry.Grant memory g, bytes memory signature) = _signedGrant(doctor);
        _grantBySig(g, patient, signature);
        vm.prank(patient);
        consents.revoke(patient, doctor);
        // The same bytes again, e.g. to restore a consent the patient has since revoked.
        vm.expectRevert(_invalidNonce(patient, 1));
        _grantBySig(g, patient, signature);
        assertEq(consents.consentOf(patient, doctor).validUntil, 0, "revocation stands");
    }

    function test_grantBySig_revertsOnEveryTamperedField() public {
        (IConsentRegistry.Grant memory signed, bytes memory signature) = _signedGrant(doctor);
        for (uint256 field = 0; field < 8; ++field) {
            IConsentRegistry.Grant memory g = _grantArgs(doctor);
            if (field == 0) g.grantee = nurse;
            if (field == 1) g.resourceTypes = OBSERVATION | 1;
            if (field == 2) g.actions = ALL_ACTIONS;
            if (field == 3) g.purposes = TREAT | ETREAT;
            if (field == 4) g.validFrom = 1;
            if (field == 5) g.validUntil = signed.validUntil + 1;
            if (field == 6) g.consentHash = bytes32(uint256(CONSENT_HASH) ^ 1);
            if (field == 7) g.deadline = signed.deadline + 1;
            vm.expectRevert(_invalidSignature(patient));
            _grantBySig(g, patient, signature);
        }
        // The nonce is checked against the patient's before the signature, and named as such.
        IConsentRegistry.Grant memory ahead = _grantArgs(doctor);
        ahead.nonce = 1;
        vm.expectRevert(_invalidNonce(patient, 0));
        _grantBySig(ahead, patient, _sign(PATIENT_PK, _grantDigest(ahead)));
        _grantBySig(signed, patient, signature);
        assertEq(consents.nonces(patient), 1, "the untampered one still works");
    }

    function test_grantBySig_revertsForAnotherPatient() public {
        (IConsentRegistry.Grant memory g, bytes memory signature) = _signedGrant(doctor);
        // Pointing the signature at another patient: it signed something else.
        g.patient = stranger;
        vm.expectRevert(_invalidSignature(patient));
        _grantBySig(g, patient, signature);
        // Signed for that patient by someone who does not act for them.
        signature = _sign(PATIENT_PK, _grantDigest(g));
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentUnauthorizedActor.selector, patient, stranger)
        );
        _grantBySig(g, patient, signature);
    }

    function test_grantBySig_revertsWhenAnotherKeySigned() public {
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        bytes memory signature = _sign(STRANGER_PK, _grantDigest(g));
        vm.expectRevert(_invalidSignature(patient));
        _grantBySig(g, patient, signature);

        // Claiming to be the signer it is does not help a stranger either.
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentUnauthorizedActor.selector, stranger, patient)
        );
        _grantBySig(g, stranger, signature);
    }

    function test_grantBySig_revertsForExpiredOrRemovedDelegate() public {
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Guardian, START + 1 days);
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        g.deadline = START + 2 days;
        bytes memory signature = _sign(DELEGATE_PK, _grantDigest(g));

        vm.warp(START + 1 days);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentUnauthorizedActor.selector, delegate, patient)
        );
        _grantBySig(g, delegate, signature);

        vm.warp(START);
        vm.prank(patient);
        consents.removeDelegate(delegate);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentUnauthorizedActor.selector, delegate, patient)
        );
        _grantBySig(g, delegate, signature);
    }

    function test_grantBySig_rejectsHighS() public {
        (IConsentRegistry.Grant memory g, bytes memory signature) = _signedGrant(doctor);
        bytes memory malleable = _highS(signature);
        // The twin recovers to the patient with bare ecrecover, so it is the real malleable form.
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(malleable, 0x20))
            s := mload(add(malleable, 0x40))
            v := byte(0, mload(add(malleable, 0x60)))
        }
        assertEq(ecrecover(_grantDigest(g), v, r, s), patient, "twin recovers with ecrecover");

        vm.expectRevert(_invalidSignature(patient));
        _grantBySig(g, patient, malleable);
        _grantBySig(g, patient, signature);
    }

    function test_grantBySig_rejectsMalformedSignatures() public {
        (IConsentRegistry.Grant memory g, bytes memory signature) = _signedGrant(doctor);
        bytes32 r;
        bytes32 s;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
        }
        bytes[5] memory bad = [
            bytes(""),
            abi.encodePacked(r, s), // ERC-2098 compact form is not accepted
            abi.encodePacked(signature, uint8(0)),
            abi.encodePacked(r, s, uint8(29)),
            abi.encodePacked(r, s, uint8(0))
        ];
        for (uint256 i = 0; i < bad.length; ++i) {
            vm.expectRevert(_invalidSignature(patient));
            _grantBySig(g, patient, bad[i]);
        }
        assertEq(consents.nonces(patient), 0);
    }

    function test_grantBySig_invalidConsentRevertsAndKeepsTheNonce() public {
        // Signatures are made before `expectRevert`: making one reads the nonce, an external call.
        IConsentRegistry.Grant memory g = _grantArgs(patient);
        bytes memory signature = _sign(PATIENT_PK, _grantDigest(g));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidGrantee.selector, patient));
        _grantBySig(g, patient, signature);

        g = _grantArgs(doctor);
        g.resourceTypes = 0;
        signature = _sign(PATIENT_PK, _grantDigest(g));
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentInvalidScope.selector, 0, g.actions, g.purposes)
        );
        _grantBySig(g, patient, signature);

        g = _grantArgs(doctor);
        g.validUntil = START;
        signature = _sign(PATIENT_PK, _grantDigest(g));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPeriod.selector, 0, START));
        _grantBySig(g, patient, signature);
        assertEq(consents.nonces(patient), 0, "nothing consumed");
    }

    function test_grantBySig_revertsOnAnotherChainId() public {
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        // Signed for chain 1 while the registry lives on this chain.
        bytes memory signature = _sign(PATIENT_PK, _grantDigestFor(g, 0, address(consents), 1));
        vm.expectRevert(_invalidSignature(patient));
        _grantBySig(g, patient, signature);

        // Signed here, replayed after a fork changed the chain id.
        signature = _sign(PATIENT_PK, _grantDigest(g));
        uint256 home = block.chainid;
        vm.chainId(home + 1);
        vm.expectRevert(_invalidSignature(patient));
        _grantBySig(g, patient, signature);
        vm.chainId(home);
        _grantBySig(g, patient, signature);
    }

    function test_grantBySig_revertsOnAnotherContract() public {
        ConsentRegistry other = new ConsentRegistry(providers, governor, MAX_BREAK_GLASS);
        (IConsentRegistry.Grant memory g, bytes memory signature) = _signedGrant(doctor);
        vm.expectRevert(_invalidSignature(patient));
        _grantBySigOn(other, g, patient, signature);
        _grantBySig(g, patient, signature);
        assertEq(other.nonces(patient), 0, "other registry untouched");
    }

    // ---- revokeBySig ----

    function test_revokeBySig_byRelayer_deletesEmitsAndUsesTheNonce() public {
        _grantDefault(doctor);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(PATIENT_PK, _revokeDigest(patient, doctor, deadline));
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentRevoked(patient, doctor, patient);
        vm.prank(relayer);
        consents.revokeBySig(patient, doctor, 0, deadline, patient, signature);
        assertEq(consents.consentOf(patient, doctor).validUntil, 0, "deleted");
        assertEq(consents.nonces(patient), 1, "nonce used");

        _grantDefault(doctor);
        vm.expectRevert(_invalidNonce(patient, 1));
        consents.revokeBySig(patient, doctor, 0, deadline, patient, signature);
    }

    function test_revokeBySig_byGuardian() public {
        _grantDefault(doctor);
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Guardian, START + 1 days);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(DELEGATE_PK, _revokeDigest(patient, doctor, deadline));
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentRevoked(patient, doctor, delegate);
        consents.revokeBySig(patient, doctor, 0, deadline, delegate, signature);
    }

    function test_bySig_caregiverSignatureNeverChangesConsent() public {
        _grantDefault(doctor);
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Caregiver, START + 1 days);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(DELEGATE_PK, _revokeDigest(patient, doctor, deadline));
        bytes memory notAllowed = abi.encodeWithSelector(
            IConsentRegistry.ConsentUnauthorizedDelegate.selector,
            delegate,
            patient,
            IConsentRegistry.DelegateKind.Caregiver
        );
        vm.expectRevert(notAllowed);
        consents.revokeBySig(patient, doctor, 0, deadline, delegate, signature);
        IConsentRegistry.Grant memory g = _grantArgs(nurse);
        signature = _sign(DELEGATE_PK, _grantDigest(g));
        vm.expectRevert(notAllowed);
        _grantBySig(g, delegate, signature);
        assertEq(consents.nonces(patient), 0, "nothing consumed");
    }

    function test_revokeBySig_reverts() public {
        _grantDefault(doctor);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(PATIENT_PK, _revokeDigest(patient, doctor, deadline));

        vm.expectRevert(_invalidSignature(patient));
        consents.revokeBySig(patient, nurse, 0, deadline, patient, signature);
        vm.expectRevert(_invalidSignature(patient));
        consents.revokeBySig(patient, doctor, 0, deadline + 1, patient, signature);
        vm.expectRevert(_invalidSignature(patient));
        consents.revokeBySig(patient, doctor, 0, deadline, patient, _highS(signature));
        vm.expectRevert(_invalidNonce(patient, 0));
        consents.revokeBySig(patient, doctor, 1, deadline, patient, signature);
        bytes memory byStranger = _sign(STRANGER_PK, _revokeDigest(patient, doctor, deadline));
        vm.expectRevert(_invalidSignature(patient));
        consents.revokeBySig(patient, doctor, 0, deadline, patient, byStranger);
        // The patient's signature does not verify for a stranger claiming it...
        vm.expectRevert(_invalidSignature(stranger));
        consents.revokeBySig(patient, doctor, 0, deadline, stranger, signature);
        // ...and a stranger's own signature verifies but does not make it an actor.
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentUnauthorizedActor.selector, stranger, patient)
        );
        consents.revokeBySig(patient, doctor, 0, deadline, stranger, byStranger);

        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentExpiredSignature.selector, deadline));
        consents.revokeBySig(patient, doctor, 0, deadline, patient, signature);
        assertEq(consents.nonces(patient), 0, "nothing consumed");
    }

    function test_revokeBySig_revertsWhenNothingIsStoredAndKeepsTheNonce() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(PATIENT_PK, _revokeDigest(patient, doctor, deadline));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentNotFound.selector, patient, doctor));
        consents.revokeBySig(patient, doctor, 0, deadline, patient, signature);
        assertEq(consents.nonces(patient), 0);
        // The signature stays usable once there is something to revoke.
        _grantDefault(doctor);
        consents.revokeBySig(patient, doctor, 0, deadline, patient, signature);
        assertEq(consents.consentOf(patient, doctor).validUntil, 0);
    }

    // ---- nonces and cancellation ----

    function test_grantAndRevokeShareOneNonce() public {
        _grantDefault(nurse);
        (IConsentRegistry.Grant memory g, bytes memory grantSig) = _signedGrant(doctor);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory revokeSig = _sign(PATIENT_PK, _revokeDigest(patient, nurse, deadline));
        // Both signed at nonce 0: whichever lands first cancels the other.
        consents.revokeBySig(patient, nurse, 0, deadline, patient, revokeSig);
        vm.expectRevert(_invalidNonce(patient, 1));
        _grantBySig(g, patient, grantSig);
    }

    function test_invalidateNonces_cancelsOutstandingSignatures() public {
        (IConsentRegistry.Grant memory g, bytes memory signature) = _signedGrant(doctor);
        IConsentRegistry.Grant memory later = _grantArgs(nurse);
        later.nonce = 3;
        bytes memory laterSig = _sign(PATIENT_PK, _grantDigest(later));

        vm.prank(patient);
        consents.invalidateNonces(patient, 3);
        vm.expectRevert(_invalidNonce(patient, 3));
        _grantBySig(g, patient, signature);
        // A signature made for the new nonce works, and moves it on by one.
        _grantBySig(later, patient, laterSig);
        assertEq(consents.nonces(patient), 4);
    }

    // ---- ERC-1271 contract wallets ----

    function test_grantBySig_erc1271WalletAsPatient() public {
        MockERC1271Wallet wallet = new MockERC1271Wallet(vm.addr(WALLET_OWNER_PK));
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        g.patient = address(wallet);
        bytes memory signature = _sign(WALLET_OWNER_PK, _grantDigest(g));
        bytes memory notTheOwner = _sign(PATIENT_PK, _grantDigest(g));

        vm.expectRevert(_invalidSignature(address(wallet)));
        _grantBySig(g, address(wallet), notTheOwner);

        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentGranted(
            address(wallet),
            doctor,
            address(wallet),
            g.resourceTypes,
            g.actions,
            g.purposes,
            0,
            g.validUntil,
            CONSENT_HASH
        );
        _grantBySig(g, address(wallet), signature);
        assertEq(consents.nonces(address(wallet)), 1);
        vm.expectRevert(_invalidNonce(address(wallet), 1));
        _grantBySig(g, address(wallet), signature);
    }

    function test_revokeBySig_erc1271WalletThatRevokedItsSigner() public {
        MockERC1271Wallet wallet = new MockERC1271Wallet(vm.addr(WALLET_OWNER_PK));
        vm.prank(address(wallet));
        consents.grant(
            address(wallet), doctor, OBSERVATION, READ_SEARCH, TREAT, 0, START + 1 days, CONSENT_HASH
        );
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(WALLET_OWNER_PK, _revokeDigest(address(wallet), doctor, deadline));

        // Contract signatures are revocable: the wallet withdrew it before submission.
        wallet.setRejectAll(true);
        vm.expectRevert(_invalidSignature(address(wallet)));
        consents.revokeBySig(address(wallet), doctor, 0, deadline, address(wallet), signature);

        wallet.setRejectAll(false);
        consents.revokeBySig(address(wallet), doctor, 0, deadline, address(wallet), signature);
        assertEq(consents.consentOf(address(wallet), doctor).validUntil, 0);
    }

    function test_grantBySig_erc1271WalletAsDelegate() public {
        MockERC1271Wallet wallet = new MockERC1271Wallet(vm.addr(WALLET_OWNER_PK));
        vm.prank(patient);
        consents.setDelegate(address(wallet), IConsentRegistry.DelegateKind.Guardian, START + 400 days);
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        _grantBySig(g, address(wallet), _sign(WALLET_OWNER_PK, _grantDigest(g)));
        assertEq(consents.consentOf(patient, doctor).validUntil, g.validUntil);
        assertEq(consents.nonces(patient), 1);
    }
}
