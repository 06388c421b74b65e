// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IConsentRegistry} from "../interfaces/IConsentRegistry.sol";
import {FhirCodes} from "../libraries/FhirCodes.sol";
import {ConsentFixture} from "./base/ConsentFixture.sol";

/// @notice Unit tests of `decide`: every `Basis` code, the order in which the rules apply and the
/// edges of the validity period.
contract ConsentRegistryDecideTest is ConsentFixture {
    uint8 internal constant OBSERVATION_INDEX = 1;
    uint8 internal constant CONDITION_INDEX = 2;

    function _decide(address requester, uint8 resourceType, uint8 action, uint8 purpose)
        internal
        view
        returns (bool, IConsentRegistry.Basis)
    {
        (bool allowed, IConsentRegistry.Basis basis,) =
            consents.decide(patient, requester, resourceType, action, purpose);
        return (allowed, basis);
    }

    function _expect(
        address requester,
        uint8 resourceType,
        uint8 action,
        uint8 purpose,
        bool allowed,
        IConsentRegistry.Basis basis,
        string memory what
    ) internal view {
        (bool a, IConsentRegistry.Basis b) = _decide(requester, resourceType, action, purpose);
        _assertDecision(a, b, allowed, basis, what);
    }

    function _expectRead(address requester, bool allowed, IConsentRegistry.Basis basis, string memory what)
        internal
        view
    {
        _expect(
            requester, OBSERVATION_INDEX, FhirCodes.ACTION_READ, FhirCodes.PURPOSE_TREAT, allowed, basis, what
        );
    }

    function _grantWindow(address grantee, uint40 validFrom, uint40 validUntil) internal {
        vm.prank(patient);
        consents.grant(patient, grantee, OBSERVATION, READ_SEARCH, TREAT, validFrom, validUntil, CONSENT_HASH);
    }

    // ---- allowing bases ----

    function test_decide_ownData_forEveryAction() public view {
        for (uint8 action = 0; action < FhirCodes.ACTION_COUNT; ++action) {
            _expect(patient, 13, action, 9, true, IConsentRegistry.Basis.OwnData, "own data");
        }
    }

    function test_decide_delegate_readsAndSearchesOnly() public {
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Guardian, START + 1 days);
        _expect(delegate, 0, FhirCodes.ACTION_READ, 6, true, IConsentRegistry.Basis.Delegate, "read");
        _expect(delegate, 13, FhirCodes.ACTION_SEARCH, 0, true, IConsentRegistry.Basis.Delegate, "search");
        // Writing is not a delegate's: it is resolved like any requester, and the delegate is no key.
        _expect(
            delegate, 0, FhirCodes.ACTION_UPDATE, 6, false, IConsentRegistry.Basis.UnknownRequester, "update"
        );
        vm.warp(START + 1 days);
        _expect(
            delegate,
            0,
            FhirCodes.ACTION_READ,
            6,
            false,
            IConsentRegistry.Basis.UnknownRequester,
            "expired delegate"
        );
    }

    function test_decide_memberConsent_andOrganisationConsent() public {
        _grantDefault(doctor);
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "consent to the key");
        _expectRead(nurse, false, IConsentRegistry.Basis.NoConsent, "not to a colleague");

        _grantDefault(hospital);
        _expectRead(nurse, true, IConsentRegistry.Basis.OrganisationConsent, "consent to the organisation");
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "the key's own consent comes first");
        _expectRead(labTech, false, IConsentRegistry.Basis.NoConsent, "other organisation");
        _expect(
            doctor,
            OBSERVATION_INDEX,
            FhirCodes.ACTION_SEARCH,
            FhirCodes.PURPOSE_TREAT,
            true,
            IConsentRegistry.Basis.MemberConsent,
            "search"
        );
    }

    function test_decide_breakGlass_allowsEtreatForAllButDelete() public {
        vm.prank(doctor);
        consents.openBreakGlass(patient, IConsentRegistry.BreakGlassReason.ImminentRiskOfHarm, 1 hours);
        for (uint8 action = 0; action < FhirCodes.ACTION_COUNT; ++action) {
            (bool allowed, IConsentRegistry.Basis basis) =
                _decide(nurse, 13, action, FhirCodes.PURPOSE_ETREAT);
            if (action == FhirCodes.ACTION_DELETE) {
                _assertDecision(allowed, basis, false, IConsentRegistry.Basis.ActionNotCovered, "delete");
            } else {
                _assertDecision(allowed, basis, true, IConsentRegistry.Basis.BreakGlass, "ETREAT");
            }
        }
        _expect(
            nurse,
            0,
            FhirCodes.ACTION_READ,
            FhirCodes.PURPOSE_TREAT,
            false,
            IConsentRegistry.Basis.PurposeNotCovered,
            "TREAT"
        );
    }

    // ---- denials ----

    function test_decide_noConsent() public view {
        _expectRead(doctor, false, IConsentRegistry.Basis.NoConsent, "nothing granted");
    }

    function test_decide_unknownRequester() public {
        _expectRead(stranger, false, IConsentRegistry.Basis.UnknownRequester, "stranger");
        // An organisation address names a grantee, it never requests: even with consent to it.
        _grantDefault(hospital);
        _expectRead(hospital, false, IConsentRegistry.Basis.UnknownRequester, "organisation address");
        _grantDefault(stranger);
        _expectRead(stranger, false, IConsentRegistry.Basis.UnknownRequester, "consent to a non-member");
    }

    function test_decide_keySuspendedOrRetired() public {
        _grantDefault(doctor);
        vm.prank(governor);
        providers.suspendMember(doctor);
        _expectRead(doctor, false, IConsentRegistry.Basis.KeySuspended, "suspended key");
        vm.prank(governor);
        providers.reinstateMember(doctor);
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "reinstated");

        vm.prank(doctor);
        providers.rotateMemberKey(doctor, address(0xD0FF));
        _expectRead(doctor, false, IConsentRegistry.Basis.KeySuspended, "retired key");
    }

    function test_decide_organisationSuspended_evenWithBreakGlass() public {
        _grantDefault(doctor);
        _grantDefault(hospital);
        vm.prank(doctor);
        consents.openBreakGlass(patient, IConsentRegistry.BreakGlassReason.LifeThreatening, 1 hours);
        vm.prank(governor);
        providers.suspendOrganisation(hospital);
        _expectRead(doctor, false, IConsentRegistry.Basis.OrganisationSuspended, "member consent");
        _expectRead(nurse, false, IConsentRegistry.Basis.OrganisationSuspended, "organisation consent");
        _expect(
            nurse,
            0,
            FhirCodes.ACTION_READ,
            FhirCodes.PURPOSE_ETREAT,
            false,
            IConsentRegistry.Basis.OrganisationSuspended,
            "break-glass"
        );
    }

    function test_decide_suspendedKeyIsDeniedAlsoAsDelegateOrForItsOwnData() public {
        // A practitioner's key that is also a guardian, and a key that is also a patient: a
        // suspension still denies it everywhere, as the provider registry promises.
        vm.prank(patient);
        consents.setDelegate(nurse, IConsentRegistry.DelegateKind.Guardian, START + 1 days);
        _expectRead(nurse, true, IConsentRegistry.Basis.Delegate, "active key as delegate");
        (bool allowed, IConsentRegistry.Basis basis,) = consents.decide(nurse, nurse, 0, 1, 0);
        _assertDecision(allowed, basis, true, IConsentRegistry.Basis.OwnData, "active key, own data");

        vm.prank(governor);
        providers.suspendMember(nurse);
        _expectRead(nurse, false, IConsentRegistry.Basis.KeySuspended, "suspended key as delegate");
        (allowed, basis,) = consents.decide(nurse, nurse, 0, 1, 0);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.KeySuspended, "suspended key, own data");

        vm.startPrank(governor);
        providers.reinstateMember(nurse);
        providers.suspendOrganisation(hospital);
        vm.stopPrank();
        _expectRead(nurse, false, IConsentRegistry.Basis.OrganisationSuspended, "suspended organisation");
        (allowed, basis,) = consents.decide(nurse, nurse, 0, 1, 0);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.OrganisationSuspended, "own data");
    }

    function test_decide_consentExpired_atValidUntil() public {
        _grantWindow(doctor, 0, START + 10);
        vm.warp(START + 9);
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "last second");
        vm.warp(START + 10);
        _expectRead(doctor, false, IConsentRegistry.Basis.ConsentExpired, "at validUntil");
    }

    function test_decide_consentNotYetValid_untilValidFrom() public {
        _grantWindow(doctor, START + 10, START + 20);
        _expectRead(doctor, false, IConsentRegistry.Basis.ConsentNotYetValid, "before");
        vm.warp(START + 9);
        _expectRead(doctor, false, IConsentRegistry.Basis.ConsentNotYetValid, "a second before");
        vm.warp(START + 10);
        _expectRead(doctor, true, IConsentRegistry.Basis.MemberConsent, "at validFrom");
    }

    function test_decide_scopeNotCovered() public {
        _grantDefault(doctor);
        _expect(
            doctor,
            CONDITION_INDEX,
            FhirCodes.ACTION_READ,
            FhirCodes.PURPOSE_TREAT,
            false,
            IConsentRegistry.Basis.ResourceTypeNotCovered,
            "resource type"
        );
        _expect(
            doctor,
            OBSERVATION_INDEX,
            FhirCodes.ACTION_UPDATE,
            FhirCodes.PURPOSE_TREAT,
            false,
            IConsentRegistry.Basis.ActionNotCovered,
            "action"
        );
        _expect(
            doctor,
            OBSERVATION_INDEX,
            FhirCodes.ACTION_READ,
            4,
            false,
            IConsentRegistry.Basis.PurposeNotCovered,
            "HRESCH"
        );
    }

    function test_decide_invalidRequest() public {
        _grantDefault(doctor);
        _expect(doctor, 24, 1, 0, false, IConsentRegistry.Basis.InvalidRequest, "resource type 24");
        _expect(doctor, 255, 1, 0, false, IConsentRegistry.Basis.InvalidRequest, "resource type 255");
        _expect(doctor, 1, 5, 0, false, IConsentRegistry.Basis.InvalidRequest, "action 5");
        _expect(doctor, 1, 1, 10, false, IConsentRegistry.Basis.InvalidRequest, "purpose 10");
        _expect(patient, 24, 1, 0, false, IConsentRegistry.Basis.InvalidRequest, "even for own data");
        (bool allowed, IConsentRegistry.Basis basis,) = consents.decide(address(0), doctor, 1, 1, 0);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.InvalidRequest, "zero patient");
        (allowed, basis,) = consents.decide(patient, address(0), 1, 1, 0);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.InvalidRequest, "zero requester");
        (allowed, basis,) = consents.decide(address(0), address(0), 1, 1, 0);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.InvalidRequest, "both zero");
    }

    // ---- combining the member's and the organisation's answers ----

    function test_decide_reportsTheMostSpecificDenial() public {
        // Key: expired. Organisation: covers all but the purpose. The purpose is the better answer.
        _grantWindow(doctor, 0, START + 1);
        vm.prank(patient);
        consents.grant(patient, hospital, OBSERVATION, READ_SEARCH, ETREAT, 0, START + 30 days, CONSENT_HASH);
        vm.warp(START + 1);
        _expectRead(doctor, false, IConsentRegistry.Basis.PurposeNotCovered, "purpose beats expired");
        // And the other way round: the key's answer wins when it is the more specific one.
        vm.prank(patient);
        consents.grant(
            patient, hospital, OBSERVATION, READ_SEARCH, TREAT, START + 10 days, START + 30 days, CONSENT_HASH
        );
        vm.prank(patient);
        consents.grant(patient, doctor, uint64(1) << 5, READ_SEARCH, TREAT, 0, START + 30 days, CONSENT_HASH);
        _expectRead(doctor, false, IConsentRegistry.Basis.ResourceTypeNotCovered, "type beats not yet valid");
    }

    function test_decide_breakGlassDenialNeverLowersTheBasis() public {
        // The organisation consent covers delete but not ETREAT; break-glass covers ETREAT but
        // not delete. For delete under ETREAT the more specific answer, the purpose, stays.
        vm.prank(patient);
        consents.grant(patient, hospital, OBSERVATION, ALL_ACTIONS, TREAT, 0, START + 30 days, CONSENT_HASH);
        vm.prank(doctor);
        consents.openBreakGlass(patient, IConsentRegistry.BreakGlassReason.LifeThreatening, 1 hours);
        _expect(
            nurse,
            OBSERVATION_INDEX,
            FhirCodes.ACTION_DELETE,
            FhirCodes.PURPOSE_ETREAT,
            false,
            IConsentRegistry.Basis.PurposeNotCovered,
            "purpose kept over break-glass's action"
        );
        // Without the consent, break-glass's own denial is the answer.
        vm.prank(patient);
        consents.revoke(patient, hospital);
        _expect(
            nurse,
            OBSERVATION_INDEX,
            FhirCodes.ACTION_DELETE,
            FhirCodes.PURPOSE_ETREAT,
            false,
            IConsentRegistry.Basis.ActionNotCovered,
            "break-glass never deletes"
        );
        // And consent comes before break-glass: delete under TREAT is the consent's to allow.
        _grantAs(patient, patient, hospital, OBSERVATION, ALL_ACTIONS, TREAT);
        _expect(
            nurse,
            OBSERVATION_INDEX,
            FhirCodes.ACTION_DELETE,
            FhirCodes.PURPOSE_TREAT,
            true,
            IConsentRegistry.Basis.OrganisationConsent,
            "consent first"
        );
    }

    function test_decide_answersAfterRevocation() public {
        _grantDefault(doctor);
        _grantDefault(hospital);
        vm.startPrank(patient);
        consents.revoke(patient, doctor);
        _expectRead(doctor, true, IConsentRegistry.Basis.OrganisationConsent, "organisation consent remains");
        consents.revoke(patient, hospital);
        vm.stopPrank();
        _expectRead(doctor, false, IConsentRegistry.Basis.NoConsent, "both revoked");
    }

    function test_decide_everyBasisIsReachable() public pure {
        // A roll-call over the enum so a new code cannot be added without a test that reaches it:
        // every value below 16 is produced somewhere in this file or ConsentRegistryDelegates.t.sol.
        assertEq(uint256(type(IConsentRegistry.Basis).max), 15, "Basis has 16 codes");
    }
}
