// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IConsentRegistry} from "../interfaces/IConsentRegistry.sol";
import {FhirCodes} from "../libraries/FhirCodes.sol";
import {ConsentFixture} from "./base/ConsentFixture.sol";
import {ConsentTypedData} from "./base/ConsentTypedData.sol";
import {MockERC1271Wallet} from "./mocks/MockERC1271Wallet.sol";

/// @notice Unit tests of delegated authority (issue 22): what each kind of delegate may change,
/// delegate grants bounded by and ending with their delegation, no self-dealing, delegates managed
/// by signature, and `decide`'s `until`.
contract ConsentRegistryDelegatesTest is ConsentFixture {
    uint40 internal constant DELEGATION_END = START + 30 days;
    uint64 internal constant CONDITION = uint64(1) << 2;
    uint8 internal constant READ = uint8(1) << 1;

    IConsentRegistry.DelegateKind internal constant GUARDIAN = IConsentRegistry.DelegateKind.Guardian;
    IConsentRegistry.DelegateKind internal constant CAREGIVER = IConsentRegistry.DelegateKind.Caregiver;

    function _appoint(address who, IConsentRegistry.DelegateKind kind, uint40 validUntil) internal {
        vm.prank(patient);
        consents.setDelegate(who, kind, validUntil);
    }

    /// @dev A Proxy for Observation and Condition, read and search, for TREAT.
    function _appointProxy(uint40 validUntil) internal {
        vm.prank(patient);
        consents.setProxy(delegate, validUntil, OBSERVATION | CONDITION, READ_SEARCH, TREAT);
    }

    function _grantBy(address actor, address grantee, uint40 validUntil) internal {
        vm.prank(actor);
        consents.grant(patient, grantee, OBSERVATION, READ_SEARCH, TREAT, 0, validUntil, CONSENT_HASH);
    }

    function _decideRead(address requester, uint8 resourceType)
        internal
        view
        returns (bool allowed, IConsentRegistry.Basis basis, uint40 until)
    {
        return
            consents.decide(patient, requester, resourceType, FhirCodes.ACTION_READ, FhirCodes.PURPOSE_TREAT);
    }

    function _expectRead(address requester, bool allowed, IConsentRegistry.Basis basis, string memory what)
        internal
        view
    {
        (bool a, IConsentRegistry.Basis b,) = _decideRead(requester, 1);
        _assertDecision(a, b, allowed, basis, what);
    }

    function _unauthorizedDelegate(address who, IConsentRegistry.DelegateKind kind)
        internal
        view
        returns (bytes memory)
    {
        return
            abi.encodeWithSelector(IConsentRegistry.ConsentUnauthorizedDelegate.selector, who, patient, kind);
    }

    // ---- Guardian ----

    function test_guardian_grantsAnyScopeWithinItsDelegation() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        vm.prank(delegate);
        consents.grant(
            patient,
            hospital,
            FhirCodes.ALL_RESOURCE_TYPES,
            FhirCodes.ALL_ACTIONS,
            FhirCodes.ALL_PURPOSES,
            0,
            DELEGATION_END,
            CONSENT_HASH
        );
        _expectRead(doctor, true, IConsentRegistry.Basis.OrganisationConsent, "guardian's grant allows");
        (uint40 id, uint40 end) = consents.grantingDelegationOf(patient, hospital);
        assertTrue(id != 0, "carries the delegation");
        assertEq(end, DELEGATION_END, "delegation end");
    }

    function test_guardian_grantNeverOutlivesTheDelegation() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentRegistry.ConsentPeriodExceedsDelegation.selector, DELEGATION_END + 1, DELEGATION_END
            )
        );
        _grantBy(delegate, doctor, DELEGATION_END + 1);
        // The patient's own grant has no such bound.
        _grantBy(patient, doctor, DELEGATION_END + 1);
        (uint40 id,) = consents.grantingDelegationOf(patient, doctor);
        assertEq(id, 0, "the patient's own");
    }

    function test_guardian_revokesThePatientsConsent() public {
        _grantDefault(doctor);
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        vm.prank(delegate);
        consents.revoke(patient, doctor);
        assertEq(consents.consentOf(patient, doctor).validUntil, 0, "revoked");
    }

    // ---- a delegate's grants end with its delegation ----

    function test_delegateGrant_stopsAllowingWhenTheDelegationIsRemoved() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _grantBy(delegate, doctor, DELEGATION_END);
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "while delegated");
        vm.prank(patient);
        consents.removeDelegate(delegate);
        _expectRead(doctor, false, IConsentRegistry.Basis.DelegationEnded, "after removal");
        (, uint40 end) = consents.grantingDelegationOf(patient, doctor);
        assertEq(end, 0, "delegation ended");
        // Appointing the same person again is a new delegation: the old grants stay cut.
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _expectRead(doctor, false, IConsentRegistry.Basis.DelegationEnded, "not revived");
    }

    function test_delegateGrant_stopsAllowingWhenTheDelegationExpires() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _grantBy(delegate, doctor, DELEGATION_END);
        // Shortened while active: the same delegation, now ending earlier, and its grants with it.
        _appoint(delegate, GUARDIAN, START + 1 days);
        vm.warp(START + 1 days - 1);
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "last second");
        (,, uint40 until) = _decideRead(doctor, 1);
        assertEq(until, START + 1 days, "until the delegation ends");
        vm.warp(START + 1 days);
        // The consent itself runs to DELEGATION_END; the delegation does not.
        _expectRead(doctor, false, IConsentRegistry.Basis.DelegationEnded, "at the delegation's end");
        // Re-appointed after it expired: a new delegation, the old grants stay cut.
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _expectRead(doctor, false, IConsentRegistry.Basis.DelegationEnded, "not revived by re-appointing");
    }

    function test_delegateGrant_keptWhenTheDelegationIsOnlyExtended() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _grantBy(delegate, doctor, DELEGATION_END);
        uint40 id = consents.delegationOf(patient, delegate).id;
        _appoint(delegate, GUARDIAN, DELEGATION_END + 365 days);
        assertEq(consents.delegationOf(patient, delegate).id, id, "same delegation");
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "kept");
        (,, uint40 until) = _decideRead(doctor, 1);
        assertEq(until, DELEGATION_END, "still bounded by the consent's own end");
    }

    function test_delegateGrant_cutWhenTheKindChanges() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _grantBy(delegate, doctor, DELEGATION_END);
        _appoint(delegate, CAREGIVER, DELEGATION_END);
        _expectRead(doctor, false, IConsentRegistry.Basis.DelegationEnded, "no longer a guardian");
        // Its own reading as a caregiver goes on.
        _expectRead(delegate, true, IConsentRegistry.Basis.Delegate, "caregiver reads");
    }

    function test_delegateGrant_otherDelegationsAndThePatientsGrantsAreUnaffected() public {
        address second = address(0xB0B2);
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _appoint(second, GUARDIAN, DELEGATION_END);
        _grantBy(delegate, doctor, DELEGATION_END);
        _grantBy(second, nurse, DELEGATION_END);
        _grantDefault(labTech);
        vm.prank(patient);
        consents.removeDelegate(delegate);
        _expectRead(doctor, false, IConsentRegistry.Basis.DelegationEnded, "removed delegate's grant");
        _expectRead(nurse, true, IConsentRegistry.Basis.MemberConsent, "other delegate's grant");
        _expectRead(labTech, true, IConsentRegistry.Basis.MemberConsent, "patient's grant");
    }

    function test_delegateGrant_replacedByThePatientIsThePatients() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _grantBy(delegate, doctor, DELEGATION_END);
        _grantDefault(doctor);
        vm.prank(patient);
        consents.removeDelegate(delegate);
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "the patient's replacement stands");
    }

    function test_decide_delegationEndedIsTheMostSpecificDenial() public {
        // The key's own consent covers all but was granted under an ended delegation; the
        // organisation's does not cover the purpose: the ended delegation is the answer.
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        _grantBy(delegate, doctor, DELEGATION_END);
        vm.prank(patient);
        consents.grant(patient, hospital, OBSERVATION, READ_SEARCH, ETREAT, 0, DELEGATION_END, CONSENT_HASH);
        vm.prank(patient);
        consents.removeDelegate(delegate);
        _expectRead(doctor, false, IConsentRegistry.Basis.DelegationEnded, "delegation ended");
    }

    // ---- Proxy ----

    function test_setProxy_storesTheScopeAndEmits() public {
        vm.expectEmit(address(consents));
        emit IConsentRegistry.DelegateSet(
            patient, delegate, IConsentRegistry.DelegateKind.Proxy, DELEGATION_END
        );
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ProxyScopeSet(patient, delegate, OBSERVATION | CONDITION, READ_SEARCH, TREAT);
        _appointProxy(DELEGATION_END);
        IConsentRegistry.Delegation memory d = consents.delegationOf(patient, delegate);
        assertEq(uint256(d.kind), uint256(IConsentRegistry.DelegateKind.Proxy), "kind");
        assertEq(d.validUntil, DELEGATION_END, "validUntil");
        assertEq(d.resourceTypes, OBSERVATION | CONDITION, "resource types");
        assertEq(d.actions, READ_SEARCH, "actions");
        assertEq(d.purposes, TREAT, "purposes");
        assertTrue(d.id != 0, "id");
    }

    function test_setProxy_revertsOnAnEmptyOrUnknownScope() public {
        vm.startPrank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidScope.selector, 0, READ, TREAT));
        consents.setProxy(delegate, DELEGATION_END, 0, READ, TREAT);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentInvalidScope.selector, OBSERVATION, 0x20, TREAT)
        );
        consents.setProxy(delegate, DELEGATION_END, OBSERVATION, 0x20, TREAT);
        vm.stopPrank();
    }

    function test_proxy_grantsWithinItsScopeOnly() public {
        _appointProxy(DELEGATION_END);
        vm.prank(delegate);
        consents.grant(patient, doctor, CONDITION, READ, TREAT, 0, DELEGATION_END, CONSENT_HASH);
        assertEq(consents.consentOf(patient, doctor).resourceTypes, CONDITION, "within scope");

        bytes memory exceeds = abi.encodeWithSelector(
            IConsentRegistry.ConsentScopeExceedsDelegation.selector,
            delegate,
            OBSERVATION | CONDITION,
            READ_SEARCH,
            TREAT
        );
        vm.startPrank(delegate);
        vm.expectRevert(exceeds);
        consents.grant(patient, nurse, uint64(1) << 5, READ, TREAT, 0, DELEGATION_END, CONSENT_HASH);
        vm.expectRevert(exceeds);
        consents.grant(patient, nurse, OBSERVATION, ALL_ACTIONS, TREAT, 0, DELEGATION_END, CONSENT_HASH);
        vm.expectRevert(exceeds);
        consents.grant(patient, nurse, OBSERVATION, READ, TREAT | ETREAT, 0, DELEGATION_END, CONSENT_HASH);
        vm.stopPrank();
    }

    function test_proxy_changesOnlyWhatItGranted() public {
        _grantDefault(doctor);
        _appointProxy(DELEGATION_END);
        bytes memory notItsOwn = abi.encodeWithSelector(
            IConsentRegistry.ConsentNotGrantedByDelegate.selector, patient, doctor, delegate
        );
        vm.expectRevert(notItsOwn);
        vm.prank(delegate);
        consents.revoke(patient, doctor);
        vm.expectRevert(notItsOwn);
        _grantBy(delegate, doctor, DELEGATION_END);

        // Its own grant it may replace and revoke.
        _grantBy(delegate, nurse, DELEGATION_END);
        _grantBy(delegate, nurse, DELEGATION_END - 1);
        vm.prank(delegate);
        consents.revoke(patient, nurse);
        assertEq(consents.consentOf(patient, nurse).validUntil, 0, "revoked its own");
        assertEq(consents.consentOf(patient, doctor).validUntil, START + 365 days, "patient's kept");
    }

    function test_proxy_readsItsDelegatedTypesOnly() public {
        _appointProxy(DELEGATION_END);
        (bool allowed, IConsentRegistry.Basis basis, uint40 until) = _decideRead(delegate, 2);
        _assertDecision(allowed, basis, true, IConsentRegistry.Basis.Delegate, "Condition");
        assertEq(until, DELEGATION_END, "until the delegation ends");
        (allowed, basis,) = _decideRead(delegate, 5);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.UnknownRequester, "Procedure");
    }

    function test_proxy_scopeChangeCutsItsGrants() public {
        _appointProxy(DELEGATION_END);
        _grantBy(delegate, doctor, DELEGATION_END);
        vm.prank(patient);
        consents.setProxy(delegate, DELEGATION_END, OBSERVATION, READ_SEARCH, TREAT);
        _expectRead(doctor, false, IConsentRegistry.Basis.DelegationEnded, "granted under the wider scope");
    }

    // ---- Caregiver ----

    function test_caregiver_readsButNeverChangesConsent() public {
        _grantDefault(doctor);
        _appoint(delegate, CAREGIVER, DELEGATION_END);
        _expectRead(delegate, true, IConsentRegistry.Basis.Delegate, "reads");
        bytes memory notAllowed = _unauthorizedDelegate(delegate, CAREGIVER);
        vm.expectRevert(notAllowed);
        _grantBy(delegate, nurse, DELEGATION_END);
        vm.expectRevert(notAllowed);
        vm.prank(delegate);
        consents.revoke(patient, doctor);
        assertEq(consents.consentOf(patient, doctor).validUntil, START + 365 days, "unchanged");
    }

    // ---- no self-dealing ----

    function test_delegate_neverGrantsToItself() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentRegistry.ConsentInvalidDelegateGrantee.selector, delegate, delegate
            )
        );
        _grantBy(delegate, delegate, DELEGATION_END);
    }

    function test_delegateThatIsAMemberKey_neverGrantsToItsOrganisationOrItsKeys() public {
        _appoint(nurse, GUARDIAN, DELEGATION_END);
        address[3] memory own = [nurse, hospital, doctor];
        for (uint256 i = 0; i < own.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(IConsentRegistry.ConsentInvalidDelegateGrantee.selector, nurse, own[i])
            );
            _grantBy(nurse, own[i], DELEGATION_END);
        }
        // Another organisation and its keys are fine.
        _grantBy(nurse, lab, DELEGATION_END);
        _grantBy(nurse, labTech, DELEGATION_END);
        assertEq(consents.consentOf(patient, labTech).validUntil, DELEGATION_END);
    }

    function test_delegateThatIsAnOrganisation_neverGrantsToItselfOrItsKeys() public {
        // The organisation's address manages its keys: every one of them is a key it holds.
        _appoint(hospital, GUARDIAN, DELEGATION_END);
        address[2] memory own = [hospital, doctor];
        for (uint256 i = 0; i < own.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IConsentRegistry.ConsentInvalidDelegateGrantee.selector, hospital, own[i]
                )
            );
            _grantBy(hospital, own[i], DELEGATION_END);
        }
        _grantBy(hospital, labTech, DELEGATION_END);
    }

    // ---- delegates by signature ----

    function _setDelegateDigest(
        string memory relationship,
        uint40 validUntil,
        uint256 nonce,
        uint256 deadline
    ) internal view returns (bytes32) {
        return ConsentTypedData.setDelegateDigest(
            patient, delegate, relationship, validUntil, nonce, deadline, address(consents), block.chainid
        );
    }

    function test_digests_matchTheSpecification() public view {
        assertEq(consents.SET_DELEGATE_TYPEHASH(), ConsentTypedData.SET_DELEGATE_TYPEHASH, "SetDelegate type");
        assertEq(consents.SET_PROXY_TYPEHASH(), ConsentTypedData.SET_PROXY_TYPEHASH, "SetProxy type");
        assertEq(
            consents.REMOVE_DELEGATE_TYPEHASH(),
            ConsentTypedData.REMOVE_DELEGATE_TYPEHASH,
            "RemoveDelegate type"
        );
        assertEq(
            consents.setDelegateDigest(patient, delegate, GUARDIAN, DELEGATION_END, 2, 99),
            _setDelegateDigest("guardian", DELEGATION_END, 2, 99),
            "SetDelegate guardian"
        );
        assertEq(
            consents.setDelegateDigest(patient, delegate, CAREGIVER, DELEGATION_END, 2, 99),
            _setDelegateDigest("caregiver", DELEGATION_END, 2, 99),
            "SetDelegate caregiver"
        );
        assertEq(
            consents.setProxyDigest(patient, delegate, DELEGATION_END, OBSERVATION, READ, TREAT, 3, 99),
            ConsentTypedData.setProxyDigest(
                patient,
                delegate,
                DELEGATION_END,
                OBSERVATION,
                READ,
                TREAT,
                3,
                99,
                address(consents),
                block.chainid
            ),
            "SetProxy"
        );
        assertEq(
            consents.removeDelegateDigest(patient, delegate, 4, 99),
            ConsentTypedData.removeDelegateDigest(patient, delegate, 4, 99, address(consents), block.chainid),
            "RemoveDelegate"
        );
    }

    function test_setDelegateBySig_byRelayer_storesEmitsAndUsesTheNonce() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature =
            _sign(PATIENT_PK, _setDelegateDigest("guardian", DELEGATION_END, 0, deadline));
        vm.expectEmit(address(consents));
        emit IConsentRegistry.DelegateSet(patient, delegate, GUARDIAN, DELEGATION_END);
        vm.prank(relayer);
        consents.setDelegateBySig(patient, delegate, GUARDIAN, DELEGATION_END, 0, deadline, signature);
        assertTrue(consents.isActiveDelegate(patient, delegate), "appointed");
        assertEq(consents.nonces(patient), 1, "nonce used");

        // Never twice, and never as another relationship than the one signed.
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonce.selector, patient, 1));
        consents.setDelegateBySig(patient, delegate, GUARDIAN, DELEGATION_END, 0, deadline, signature);
        signature = _sign(PATIENT_PK, _setDelegateDigest("caregiver", DELEGATION_END, 1, deadline));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        consents.setDelegateBySig(patient, delegate, GUARDIAN, DELEGATION_END, 1, deadline, signature);
    }

    function test_setDelegateBySig_revertsForAnotherSignerOrAfterTheDeadline() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory byDelegate =
            _sign(DELEGATE_PK, _setDelegateDigest("guardian", DELEGATION_END, 0, deadline));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        consents.setDelegateBySig(patient, delegate, GUARDIAN, DELEGATION_END, 0, deadline, byDelegate);
        bytes memory signature =
            _sign(PATIENT_PK, _setDelegateDigest("guardian", DELEGATION_END, 0, deadline));
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentExpiredSignature.selector, deadline));
        consents.setDelegateBySig(patient, delegate, GUARDIAN, DELEGATION_END, 0, deadline, signature);
        assertEq(consents.nonces(patient), 0, "nothing consumed");
    }

    function test_setDelegateBySig_refusesAProxy() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(PATIENT_PK, _setDelegateDigest("proxy", DELEGATION_END, 0, deadline));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidDelegate.selector, delegate));
        consents.setDelegateBySig(
            patient, delegate, IConsentRegistry.DelegateKind.Proxy, DELEGATION_END, 0, deadline, signature
        );
    }

    function test_setProxyBySig_andRemoveDelegateBySig() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(
            PATIENT_PK,
            ConsentTypedData.setProxyDigest(
                patient,
                delegate,
                DELEGATION_END,
                OBSERVATION,
                READ,
                TREAT,
                0,
                deadline,
                address(consents),
                block.chainid
            )
        );
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ProxyScopeSet(patient, delegate, OBSERVATION, READ, TREAT);
        consents.setProxyBySig(
            patient, delegate, DELEGATION_END, OBSERVATION, READ, TREAT, 0, deadline, signature
        );
        assertEq(consents.delegationOf(patient, delegate).resourceTypes, OBSERVATION, "scope");

        signature = _sign(
            PATIENT_PK,
            ConsentTypedData.removeDelegateDigest(
                patient, delegate, 1, deadline, address(consents), block.chainid
            )
        );
        vm.expectEmit(address(consents));
        emit IConsentRegistry.DelegateRemoved(patient, delegate);
        consents.removeDelegateBySig(patient, delegate, 1, deadline, signature);
        assertFalse(consents.isActiveDelegate(patient, delegate), "removed");
        assertEq(consents.nonces(patient), 2, "one nonce each");
    }

    function test_removeDelegateBySig_aDelegateCannotRemoveItselfOrOthers() public {
        _appoint(delegate, GUARDIAN, DELEGATION_END);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory byDelegate = _sign(
            DELEGATE_PK,
            ConsentTypedData.removeDelegateDigest(
                patient, delegate, 0, deadline, address(consents), block.chainid
            )
        );
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        consents.removeDelegateBySig(patient, delegate, 0, deadline, byDelegate);
        assertTrue(consents.isActiveDelegate(patient, delegate), "still appointed");
    }

    function test_setDelegateBySig_erc1271WalletAsPatient() public {
        uint256 ownerPk = 0xC0FFEE;
        MockERC1271Wallet wallet = new MockERC1271Wallet(vm.addr(ownerPk));
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(
            ownerPk,
            ConsentTypedData.setDelegateDigest(
                address(wallet),
                delegate,
                "caregiver",
                DELEGATION_END,
                0,
                deadline,
                address(consents),
                block.chainid
            )
        );
        consents.setDelegateBySig(
            address(wallet), delegate, CAREGIVER, DELEGATION_END, 0, deadline, signature
        );
        assertTrue(consents.isActiveDelegate(address(wallet), delegate), "appointed by the wallet");
    }

    // ---- decide's until ----

    function test_decide_until() public {
        (,, uint40 until) = consents.decide(patient, patient, 1, FhirCodes.ACTION_READ, 0);
        assertEq(until, type(uint40).max, "own data: forever");

        _appoint(delegate, CAREGIVER, DELEGATION_END);
        (,, until) = _decideRead(delegate, 1);
        assertEq(until, DELEGATION_END, "delegate: its delegation's end");

        vm.prank(patient);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, START + 10, START + 20, CONSENT_HASH);
        (bool allowed,, uint40 notYet) = _decideRead(doctor, 1);
        assertFalse(allowed, "not yet valid");
        assertEq(notYet, START + 10, "denied until validFrom");
        vm.warp(START + 10);
        (allowed,, until) = _decideRead(doctor, 1);
        assertTrue(allowed, "valid now");
        assertEq(until, START + 20, "allowed until validUntil");

        (allowed,, until) = _decideRead(doctor, 5);
        assertFalse(allowed, "type not covered");
        assertEq(until, type(uint40).max, "time changes nothing");

        // The organisation's consent starts earlier than the key's own ends: the earlier time.
        vm.prank(patient);
        consents.grant(patient, hospital, CONDITION, READ_SEARCH, TREAT, START + 15, START + 40, CONSENT_HASH);
        (allowed,, until) = _decideRead(nurse, 2);
        assertFalse(allowed, "organisation consent not yet valid");
        assertEq(until, START + 15, "until it starts");
    }
}
