// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

import {ConsentRegistry} from "../ConsentRegistry.sol";
import {IConsentRegistry} from "../interfaces/IConsentRegistry.sol";
import {IProviderRegistry} from "../interfaces/IProviderRegistry.sol";
import {FhirCodes} from "../libraries/FhirCodes.sol";
import {ConsentFixture} from "./base/ConsentFixture.sol";

/// @notice Unit tests of the patient's own transactions: constructor, grant, revoke, nonce
/// invalidation, delegates and the plain views. Signatures, break-glass and `decide` have their
/// own files.
contract ConsentRegistryTest is ConsentFixture {
    uint40 internal constant YEAR_END = START + 365 days;

    function _consent(address patient_, address grantee)
        internal
        view
        returns (IConsentRegistry.Consent memory)
    {
        return consents.consentOf(patient_, grantee);
    }

    function _invalidScope(uint64 resourceTypes, uint8 actions, uint16 purposes)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodeWithSelector(
            IConsentRegistry.ConsentInvalidScope.selector, resourceTypes, actions, purposes
        );
    }

    function _unauthorizedActor(address actor) internal view returns (bytes memory) {
        return abi.encodeWithSelector(IConsentRegistry.ConsentUnauthorizedActor.selector, actor, patient);
    }

    function _setDelegate(uint40 validUntil) internal {
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Guardian, validUntil);
    }

    // ---- constructor and configuration ----

    function test_constructor_setsRolesRegistryAndMaximum() public view {
        assertTrue(consents.hasRole(consents.GOVERNOR_ROLE(), governor), "governor role");
        assertTrue(consents.hasRole(consents.DEFAULT_ADMIN_ROLE(), governor), "admin role");
        assertFalse(consents.hasRole(consents.GOVERNOR_ROLE(), address(this)), "deployer has no role");
        assertEq(consents.GOVERNOR_ROLE(), keccak256("GOVERNOR_ROLE"));
        assertEq(address(consents.REGISTRY()), address(providers));
        assertEq(consents.maxBreakGlassDuration(), MAX_BREAK_GLASS);
    }

    function test_typeHashesMatchTheDocumentedTypes() public view {
        assertEq(consents.GRANT_TYPEHASH(), GRANT_TYPEHASH, "Grant type");
        assertEq(consents.REVOKE_TYPEHASH(), REVOKE_TYPEHASH, "Revoke type");
    }

    function test_constructor_emitsMaximumDuration() public {
        vm.expectEmit();
        emit IConsentRegistry.BreakGlassMaxDurationSet(2 hours);
        ConsentRegistry fresh = new ConsentRegistry(providers, governor, 2 hours);
        assertEq(fresh.maxBreakGlassDuration(), 2 hours);
    }

    function test_constructor_revertsOnZeroRegistryOrGovernor() public {
        vm.expectRevert(IConsentRegistry.ConsentInvalidConfiguration.selector);
        new ConsentRegistry(IProviderRegistry(address(0)), governor, 1 hours);
        vm.expectRevert(IConsentRegistry.ConsentInvalidConfiguration.selector);
        new ConsentRegistry(providers, address(0), 1 hours);
    }

    function test_supportsInterface() public view {
        assertTrue(consents.supportsInterface(type(IAccessControl).interfaceId), "IAccessControl");
        assertTrue(consents.supportsInterface(type(IERC165).interfaceId), "IERC165");
        assertFalse(consents.supportsInterface(0xffffffff), "never 0xffffffff");
    }

    // ---- grant ----

    function test_grant_byPatient_storesPackedConsentAndEmits() public {
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentGranted(
            patient, doctor, patient, OBSERVATION, READ_SEARCH, TREAT, START, YEAR_END, CONSENT_HASH
        );
        vm.prank(patient);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, START, YEAR_END, CONSENT_HASH);

        IConsentRegistry.Consent memory c = _consent(patient, doctor);
        assertEq(c.resourceTypes, OBSERVATION, "resourceTypes");
        assertEq(c.actions, READ_SEARCH, "actions");
        assertEq(c.purposes, TREAT, "purposes");
        assertEq(c.validFrom, START, "validFrom");
        assertEq(c.validUntil, YEAR_END, "validUntil");
        // Granting neither touches nor needs other grantees or the nonce.
        assertEq(_consent(patient, nurse).validUntil, 0, "other grantee untouched");
        assertEq(consents.nonces(patient), 0, "direct grant uses no nonce");
    }

    function test_grant_replacesTheWholeConsent() public {
        _grantDefault(doctor);
        uint64 conditions = uint64(1) << 2;
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentGranted(
            patient,
            doctor,
            patient,
            conditions,
            ALL_ACTIONS,
            ETREAT,
            START + 10,
            START + 20,
            bytes32(uint256(7))
        );
        vm.prank(patient);
        consents.grant(
            patient, doctor, conditions, ALL_ACTIONS, ETREAT, START + 10, START + 20, bytes32(uint256(7))
        );
        IConsentRegistry.Consent memory c = _consent(patient, doctor);
        assertEq(c.resourceTypes, conditions, "resourceTypes replaced, not merged");
        assertEq(c.actions, ALL_ACTIONS, "actions");
        assertEq(c.purposes, ETREAT, "purposes replaced, not merged");
        assertEq(c.validFrom, START + 10, "validFrom");
        assertEq(c.validUntil, START + 20, "validUntil");
    }

    function test_grant_acceptsTheFullCodeTablesAndAPastValidFrom() public {
        vm.warp(START + 100 days);
        vm.prank(patient);
        consents.grant(
            patient,
            hospital,
            FhirCodes.ALL_RESOURCE_TYPES,
            FhirCodes.ALL_ACTIONS,
            FhirCodes.ALL_PURPOSES,
            START,
            START + 100 days + 1,
            CONSENT_HASH
        );
        IConsentRegistry.Consent memory c = _consent(patient, hospital);
        assertEq(c.resourceTypes, 0xffffff, "24 resource types");
        assertEq(c.actions, 0x1f, "c r u d s");
        assertEq(c.purposes, 0x03ff, "10 purposes");
    }

    function test_grant_byActiveDelegate_recordsTheDelegateAsActor() public {
        _setDelegate(YEAR_END);
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentGranted(
            patient, doctor, delegate, OBSERVATION, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH
        );
        vm.prank(delegate);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);
        assertEq(_consent(patient, doctor).validUntil, YEAR_END);
        (uint40 id, uint40 end) = consents.grantingDelegationOf(patient, doctor);
        assertEq(id, consents.delegationOf(patient, delegate).id, "granted under the delegation");
        assertEq(end, YEAR_END, "which ends with the delegation");
    }

    function test_grant_revertsForStrangerAndExpiredOrRemovedDelegate() public {
        vm.expectRevert(_unauthorizedActor(stranger));
        vm.prank(stranger);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);

        // A grantee cannot grant itself anything either.
        vm.expectRevert(_unauthorizedActor(doctor));
        vm.prank(doctor);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);

        _setDelegate(START + 1 days);
        vm.warp(START + 1 days);
        vm.expectRevert(_unauthorizedActor(delegate));
        vm.prank(delegate);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);

        _setDelegate(START + 30 days);
        vm.prank(patient);
        consents.removeDelegate(delegate);
        vm.expectRevert(_unauthorizedActor(delegate));
        vm.prank(delegate);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);
    }

    function test_grant_revertsOnZeroOrSelfGrantee() public {
        vm.startPrank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidGrantee.selector, address(0)));
        consents.grant(patient, address(0), OBSERVATION, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidGrantee.selector, patient));
        consents.grant(patient, patient, OBSERVATION, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);
        vm.stopPrank();
    }

    function test_grant_revertsOnEmptyOrUnknownScopeBits() public {
        vm.startPrank(patient);
        vm.expectRevert(_invalidScope(0, READ_SEARCH, TREAT));
        consents.grant(patient, doctor, 0, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);
        vm.expectRevert(_invalidScope(uint64(1) << 24, READ_SEARCH, TREAT));
        consents.grant(patient, doctor, uint64(1) << 24, READ_SEARCH, TREAT, 0, YEAR_END, CONSENT_HASH);
        vm.expectRevert(_invalidScope(OBSERVATION, 0, TREAT));
        consents.grant(patient, doctor, OBSERVATION, 0, TREAT, 0, YEAR_END, CONSENT_HASH);
        vm.expectRevert(_invalidScope(OBSERVATION, 0x21, TREAT));
        consents.grant(patient, doctor, OBSERVATION, 0x21, TREAT, 0, YEAR_END, CONSENT_HASH);
        vm.expectRevert(_invalidScope(OBSERVATION, READ_SEARCH, 0));
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, 0, 0, YEAR_END, CONSENT_HASH);
        vm.expectRevert(_invalidScope(OBSERVATION, READ_SEARCH, uint16(1) << 10 | TREAT));
        consents.grant(
            patient, doctor, OBSERVATION, READ_SEARCH, uint16(1) << 10 | TREAT, 0, YEAR_END, CONSENT_HASH
        );
        vm.stopPrank();
        assertEq(_consent(patient, doctor).validUntil, 0, "nothing stored");
    }

    function test_grant_revertsOnEmptyOrPastPeriod() public {
        vm.startPrank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPeriod.selector, 0, START));
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, 0, START, CONSENT_HASH);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPeriod.selector, 0, START - 1));
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, 0, START - 1, CONSENT_HASH);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPeriod.selector, START + 50, START + 50)
        );
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, START + 50, START + 50, CONSENT_HASH);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPeriod.selector, START + 51, START + 50)
        );
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, START + 51, START + 50, CONSENT_HASH);
        // The shortest valid period ends one second from now.
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, 0, START + 1, CONSENT_HASH);
        vm.stopPrank();
        assertEq(_consent(patient, doctor).validUntil, START + 1);
    }

    function test_grant_checksTheActorBeforeTheArguments() public {
        vm.expectRevert(_unauthorizedActor(stranger));
        vm.prank(stranger);
        consents.grant(patient, address(0), 0, 0, 0, 0, 0, CONSENT_HASH);
    }

    // ---- revoke ----

    function test_revoke_byPatient_deletesAndEmits() public {
        _grantDefault(doctor);
        _grantDefault(nurse);
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentRevoked(patient, doctor, patient);
        vm.prank(patient);
        consents.revoke(patient, doctor);

        IConsentRegistry.Consent memory c = _consent(patient, doctor);
        assertEq(c.resourceTypes, 0, "slot cleared");
        assertEq(c.actions, 0, "slot cleared");
        assertEq(c.purposes, 0, "slot cleared");
        assertEq(c.validFrom, 0, "slot cleared");
        assertEq(c.validUntil, 0, "slot cleared");
        assertEq(_consent(patient, nurse).validUntil, START + 365 days, "other grantee kept");
        (bool allowed, IConsentRegistry.Basis basis) = _readObservation(doctor);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.NoConsent, "after revoke");
    }

    function test_revoke_byDelegate_recordsTheDelegateAsActor() public {
        _grantDefault(doctor);
        _setDelegate(START + 1 days);
        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentRevoked(patient, doctor, delegate);
        vm.prank(delegate);
        consents.revoke(patient, doctor);
        assertEq(_consent(patient, doctor).validUntil, 0);
    }

    function test_revoke_anExpiredConsentStillClearsIt() public {
        _grantDefault(doctor);
        vm.warp(START + 400 days);
        vm.prank(patient);
        consents.revoke(patient, doctor);
        assertEq(_consent(patient, doctor).validUntil, 0);
    }

    function test_revoke_revertsWhenNothingIsStored() public {
        vm.startPrank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentNotFound.selector, patient, doctor));
        consents.revoke(patient, doctor);
        vm.stopPrank();

        _grantDefault(doctor);
        vm.startPrank(patient);
        consents.revoke(patient, doctor);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentNotFound.selector, patient, doctor));
        consents.revoke(patient, doctor);
        vm.stopPrank();
    }

    function test_revoke_revertsForStrangerAndGrantee() public {
        _grantDefault(doctor);
        vm.expectRevert(_unauthorizedActor(stranger));
        vm.prank(stranger);
        consents.revoke(patient, doctor);
        // The grantee cannot drop the consent either: it is the patient's record.
        vm.expectRevert(_unauthorizedActor(doctor));
        vm.prank(doctor);
        consents.revoke(patient, doctor);
        assertEq(_consent(patient, doctor).validUntil, START + 365 days, "consent kept");
    }

    // ---- invalidateNonces ----

    function test_invalidateNonces_byPatientOnly() public {
        vm.expectEmit(address(consents));
        emit IConsentRegistry.NoncesInvalidated(patient, patient, 5);
        vm.prank(patient);
        consents.invalidateNonces(patient, 5);
        assertEq(consents.nonces(patient), 5);

        // Not even a Guardian cancels the patient's outstanding signatures.
        _setDelegate(START + 1 days);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentPatientOnly.selector, delegate, patient)
        );
        vm.prank(delegate);
        consents.invalidateNonces(patient, 6);
        assertEq(consents.nonces(patient), 5, "unchanged");
        assertEq(consents.nonces(delegate), 0, "the delegate's own nonce is separate");
    }

    function test_invalidateNonces_acceptsAStepOfExactly2To64() public {
        vm.startPrank(patient);
        consents.invalidateNonces(patient, 2 ** 64);
        consents.invalidateNonces(patient, 2 ** 65);
        vm.stopPrank();
        assertEq(consents.nonces(patient), 2 ** 65);
    }

    function test_invalidateNonces_revertsOnNoIncreaseOrTooLargeStep() public {
        vm.startPrank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonceIncrease.selector, 0, 0));
        consents.invalidateNonces(patient, 0);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonceIncrease.selector, 0, 2 ** 64 + 1)
        );
        consents.invalidateNonces(patient, 2 ** 64 + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentRegistry.ConsentInvalidNonceIncrease.selector, 0, type(uint256).max
            )
        );
        consents.invalidateNonces(patient, type(uint256).max);
        consents.invalidateNonces(patient, 10);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonceIncrease.selector, 10, 10));
        consents.invalidateNonces(patient, 10);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonceIncrease.selector, 10, 9));
        consents.invalidateNonces(patient, 9);
        vm.stopPrank();
        assertEq(consents.nonces(patient), 10, "nonce never went down");
    }

    function test_invalidateNonces_revertsForStranger() public {
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentPatientOnly.selector, stranger, patient)
        );
        vm.prank(stranger);
        consents.invalidateNonces(patient, 1);
        assertEq(consents.nonces(patient), 0);
    }

    // ---- delegates ----

    function test_setDelegate_storesAndEmits() public {
        vm.expectEmit(address(consents));
        emit IConsentRegistry.DelegateSet(
            patient, delegate, IConsentRegistry.DelegateKind.Caregiver, START + 7 days
        );
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Caregiver, START + 7 days);
        (IConsentRegistry.DelegateKind kind, uint40 validUntil) = consents.delegateOf(patient, delegate);
        assertEq(uint256(kind), uint256(IConsentRegistry.DelegateKind.Caregiver), "kind");
        assertEq(validUntil, START + 7 days, "validUntil");
        assertTrue(consents.isActiveDelegate(patient, delegate), "active");
        assertFalse(consents.isActiveDelegate(delegate, patient), "not symmetric");
    }

    function test_setDelegate_updatesKindAndExpiry() public {
        _setDelegate(START + 7 days);
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Caregiver, START + 1 hours);
        (IConsentRegistry.DelegateKind kind, uint40 validUntil) = consents.delegateOf(patient, delegate);
        assertEq(uint256(kind), uint256(IConsentRegistry.DelegateKind.Caregiver), "kind");
        assertEq(validUntil, START + 1 hours, "shortened");
    }

    function test_delegate_expiresAtValidUntil() public {
        _setDelegate(START + 1 days);
        vm.warp(START + 1 days - 1);
        assertTrue(consents.isActiveDelegate(patient, delegate), "last second");
        vm.warp(START + 1 days);
        assertFalse(consents.isActiveDelegate(patient, delegate), "expired at validUntil");
        (IConsentRegistry.DelegateKind kind,) = consents.delegateOf(patient, delegate);
        assertEq(uint256(kind), uint256(IConsentRegistry.DelegateKind.Guardian), "still on record");
    }

    function test_setDelegate_actsOnTheCallersOwnDelegatesOnly() public {
        _setDelegate(START + 1 days);
        // A delegate cannot appoint further delegates for the patient: this names its own.
        vm.prank(delegate);
        consents.setDelegate(stranger, IConsentRegistry.DelegateKind.Caregiver, START + 1 days);
        assertFalse(consents.isActiveDelegate(patient, stranger), "not the patient's delegate");
        assertTrue(consents.isActiveDelegate(delegate, stranger), "the delegate's own");
    }

    function test_setDelegate_revertsOnZeroSelfOrNoneKind() public {
        vm.startPrank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidDelegate.selector, address(0)));
        consents.setDelegate(address(0), IConsentRegistry.DelegateKind.Guardian, START + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidDelegate.selector, patient));
        consents.setDelegate(patient, IConsentRegistry.DelegateKind.Guardian, START + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidDelegate.selector, delegate));
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.None, START + 1);
        // A Proxy needs the scope it acts within: `setProxy`.
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidDelegate.selector, delegate));
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Proxy, START + 1);
        vm.stopPrank();
    }

    function test_setDelegate_revertsOnPastExpiry() public {
        vm.startPrank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPeriod.selector, 0, START));
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Guardian, START);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPeriod.selector, 0, 0));
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Guardian, 0);
        vm.stopPrank();
        assertFalse(consents.isActiveDelegate(patient, delegate));
    }

    function test_removeDelegate_deletesAndEmits() public {
        _setDelegate(START + 1 days);
        vm.expectEmit(address(consents));
        emit IConsentRegistry.DelegateRemoved(patient, delegate);
        vm.prank(patient);
        consents.removeDelegate(delegate);
        (IConsentRegistry.DelegateKind kind, uint40 validUntil) = consents.delegateOf(patient, delegate);
        assertEq(uint256(kind), 0, "kind cleared");
        assertEq(validUntil, 0, "validUntil cleared");
        assertFalse(consents.isActiveDelegate(patient, delegate));
    }

    function test_removeDelegate_worksOnAnExpiredDelegate() public {
        _setDelegate(START + 1 days);
        vm.warp(START + 2 days);
        vm.prank(patient);
        consents.removeDelegate(delegate);
        (IConsentRegistry.DelegateKind kind,) = consents.delegateOf(patient, delegate);
        assertEq(uint256(kind), 0);
    }

    function test_removeDelegate_revertsWhenNotADelegate() public {
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentDelegateNotFound.selector, patient, delegate)
        );
        vm.prank(patient);
        consents.removeDelegate(delegate);

        // Only the patient's own list is looked at: a stranger cannot remove the patient's delegate.
        _setDelegate(START + 1 days);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentDelegateNotFound.selector, stranger, delegate)
        );
        vm.prank(stranger);
        consents.removeDelegate(delegate);
        assertTrue(consents.isActiveDelegate(patient, delegate), "still a delegate");
    }

    // ---- views ----

    function test_views_areZeroForUnknownAccounts() public view {
        IConsentRegistry.Consent memory c = _consent(stranger, doctor);
        assertEq(c.validUntil, 0, "no consent");
        (IConsentRegistry.DelegateKind kind, uint40 validUntil) = consents.delegateOf(stranger, delegate);
        assertEq(uint256(kind), 0, "no delegate");
        assertEq(validUntil, 0, "no delegate");
        assertFalse(consents.isActiveDelegate(stranger, delegate), "no delegate");
        assertEq(consents.nonces(stranger), 0, "nonce starts at zero");
        IConsentRegistry.BreakGlassSession memory s = consents.breakGlassOf(stranger, hospital);
        assertEq(s.id, 0, "no session");
        assertFalse(consents.isBreakGlassOpen(stranger, hospital), "no session");
    }
}
