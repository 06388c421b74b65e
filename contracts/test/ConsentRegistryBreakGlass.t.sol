// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {IConsentRegistry} from "../interfaces/IConsentRegistry.sol";
import {IProviderRegistry} from "../interfaces/IProviderRegistry.sol";
import {FhirCodes} from "../libraries/FhirCodes.sol";
import {ConsentFixture} from "./base/ConsentFixture.sol";

/// @notice Unit tests of break-glass: who may open it, its coded reason and duration, its own
/// slot, closing it, and the governance maximum that bounds every session.
contract ConsentRegistryBreakGlassTest is ConsentFixture {
    address internal clinic = address(0x1004);
    address internal clinician = address(0xD004);

    IConsentRegistry.BreakGlassReason internal constant UNCONSCIOUS =
    IConsentRegistry.BreakGlassReason.PatientUnconscious;

    function setUp() public override {
        super.setUp();
        vm.startPrank(governor);
        providers.admitOrganisation(clinic, IProviderRegistry.OrgKind.Clinic, "Corner Clinic");
        providers.addMember(clinic, clinician, IProviderRegistry.MemberRole.Practitioner);
        vm.stopPrank();
    }

    function _open(address opener, uint32 duration) internal returns (uint64) {
        vm.prank(opener);
        return consents.openBreakGlass(patient, UNCONSCIOUS, duration);
    }

    function _emergencyRead(address requester) internal view returns (bool, IConsentRegistry.Basis) {
        (bool allowed, IConsentRegistry.Basis basis,) =
            consents.decide(patient, requester, 1, FhirCodes.ACTION_READ, FhirCodes.PURPOSE_ETREAT);
        return (allowed, basis);
    }

    function _unauthorized(address requester) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IConsentRegistry.ConsentBreakGlassUnauthorized.selector, requester);
    }

    function _notOpen(address org) internal view returns (bytes memory) {
        return abi.encodeWithSelector(IConsentRegistry.ConsentBreakGlassNotOpen.selector, patient, org);
    }

    // ---- opening ----

    function test_openBreakGlass_byHospitalMember_storesEmitsAndAllowsEmergencyAccess() public {
        vm.expectEmit(address(consents));
        emit IConsentRegistry.BreakGlassOpened(
            1, patient, hospital, doctor, IConsentRegistry.BreakGlassReason.LifeThreatening, START + 4 hours
        );
        vm.prank(doctor);
        uint64 id =
            consents.openBreakGlass(patient, IConsentRegistry.BreakGlassReason.LifeThreatening, 4 hours);
        assertEq(id, 1, "first session id");

        IConsentRegistry.BreakGlassSession memory s = consents.breakGlassOf(patient, hospital);
        assertEq(s.id, 1, "id");
        assertEq(s.opener, doctor, "opener");
        assertEq(s.openedAt, START, "openedAt");
        assertEq(s.expiresAt, START + 4 hours, "expiresAt");
        assertEq(uint256(s.reason), uint256(IConsentRegistry.BreakGlassReason.LifeThreatening), "reason");
        assertTrue(consents.isBreakGlassOpen(patient, hospital), "open");
        assertFalse(consents.isBreakGlassOpen(patient, lab), "for the opener's organisation only");

        // Every active key of the organisation may use it, not just the opener.
        (bool allowed, IConsentRegistry.Basis basis) = _emergencyRead(nurse);
        _assertDecision(allowed, basis, true, IConsentRegistry.Basis.BreakGlass, "nurse");
        (allowed, basis) = _emergencyRead(labTech);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.NoConsent, "lab");
    }

    function test_openBreakGlass_byClinicMember() public {
        uint64 id = _open(clinician, 1 hours);
        assertEq(id, 1);
        assertTrue(consents.isBreakGlassOpen(patient, clinic));
    }

    function test_openBreakGlass_idsCountAcrossPatientsAndOrganisations() public {
        assertEq(_open(doctor, 1 hours), 1);
        assertEq(_open(clinician, 1 hours), 2);
        vm.prank(doctor);
        assertEq(consents.openBreakGlass(stranger, UNCONSCIOUS, 1 hours), 3);
    }

    function test_openBreakGlass_againReplacesTheSession() public {
        _open(doctor, 1 hours);
        vm.warp(START + 30 minutes);
        uint64 id = _open(nurse, 2 hours);
        IConsentRegistry.BreakGlassSession memory s = consents.breakGlassOf(patient, hospital);
        assertEq(id, 2, "new id");
        assertEq(s.id, 2, "stored id");
        assertEq(s.opener, nurse, "opener");
        assertEq(s.openedAt, START + 30 minutes, "openedAt");
        assertEq(s.expiresAt, START + 30 minutes + 2 hours, "expiresAt");
    }

    function test_openBreakGlass_revertsForNonMembersAndOtherKinds() public {
        address[4] memory notAllowed = [stranger, labTech, hospital, governor];
        for (uint256 i = 0; i < notAllowed.length; ++i) {
            vm.expectRevert(_unauthorized(notAllowed[i]));
            vm.prank(notAllowed[i]);
            consents.openBreakGlass(patient, UNCONSCIOUS, 1 hours);
        }
    }

    function test_openBreakGlass_revertsForSuspendedOrRetiredKeyAndSuspendedOrganisation() public {
        vm.startPrank(governor);
        providers.suspendMember(doctor);
        providers.retireMember(nurse);
        providers.suspendOrganisation(clinic);
        vm.stopPrank();
        address[3] memory denied = [doctor, nurse, clinician];
        for (uint256 i = 0; i < denied.length; ++i) {
            vm.expectRevert(_unauthorized(denied[i]));
            vm.prank(denied[i]);
            consents.openBreakGlass(patient, UNCONSCIOUS, 1 hours);
        }
    }

    function test_openBreakGlass_revertsOnMissingReasonOrBadDuration() public {
        vm.startPrank(doctor);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentRegistry.ConsentBreakGlassInvalid.selector,
                IConsentRegistry.BreakGlassReason.None,
                1 hours,
                MAX_BREAK_GLASS
            )
        );
        consents.openBreakGlass(patient, IConsentRegistry.BreakGlassReason.None, 1 hours);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentRegistry.ConsentBreakGlassInvalid.selector, UNCONSCIOUS, 0, MAX_BREAK_GLASS
            )
        );
        consents.openBreakGlass(patient, UNCONSCIOUS, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentRegistry.ConsentBreakGlassInvalid.selector,
                UNCONSCIOUS,
                MAX_BREAK_GLASS + 1,
                MAX_BREAK_GLASS
            )
        );
        consents.openBreakGlass(patient, UNCONSCIOUS, MAX_BREAK_GLASS + 1);
        // Exactly the maximum is allowed.
        consents.openBreakGlass(patient, UNCONSCIOUS, MAX_BREAK_GLASS);
        vm.stopPrank();
        assertEq(consents.breakGlassOf(patient, hospital).expiresAt, START + MAX_BREAK_GLASS);
    }

    function test_openBreakGlass_everyCodedReasonIsAccepted() public {
        for (uint8 r = 1; r <= uint8(IConsentRegistry.BreakGlassReason.PatientUnableToCommunicate); ++r) {
            vm.prank(doctor);
            consents.openBreakGlass(patient, IConsentRegistry.BreakGlassReason(r), 1 hours);
            assertEq(uint256(consents.breakGlassOf(patient, hospital).reason), r, "reason stored");
        }
    }

    function test_openBreakGlass_usesItsOwnSlot() public {
        vm.prank(patient);
        consents.grant(patient, hospital, OBSERVATION, READ_SEARCH, TREAT, 0, START + 30 days, CONSENT_HASH);
        _open(doctor, 1 hours);
        // The normal consent to the organisation is untouched by the session, and vice versa.
        IConsentRegistry.Consent memory c = consents.consentOf(patient, hospital);
        assertEq(c.resourceTypes, OBSERVATION, "consent kept");
        assertEq(c.purposes, TREAT, "consent kept");
        assertEq(c.validUntil, START + 30 days, "consent kept");
        vm.prank(patient);
        consents.revoke(patient, hospital);
        assertTrue(consents.isBreakGlassOpen(patient, hospital), "session kept after revocation");
        vm.warp(START + 2 hours);
        vm.prank(patient);
        consents.grant(patient, hospital, OBSERVATION, READ_SEARCH, TREAT, 0, START + 30 days, CONSENT_HASH);
        (bool allowed, IConsentRegistry.Basis basis) = _readObservation(doctor);
        _assertDecision(
            allowed, basis, true, IConsentRegistry.Basis.OrganisationConsent, "consent after session"
        );
    }

    // ---- expiry and the governance maximum ----

    function test_breakGlass_endsAtExpiresAt() public {
        _open(doctor, 1 hours);
        vm.warp(START + 1 hours - 1);
        (bool allowed, IConsentRegistry.Basis basis) = _emergencyRead(doctor);
        _assertDecision(allowed, basis, true, IConsentRegistry.Basis.BreakGlass, "last second");
        vm.warp(START + 1 hours);
        assertFalse(consents.isBreakGlassOpen(patient, hospital), "closed at expiresAt");
        (allowed, basis) = _emergencyRead(doctor);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.NoConsent, "after expiry");
    }

    function test_setMaxBreakGlassDuration_byGovernor_emitsAndBoundsNewSessions() public {
        vm.expectEmit(address(consents));
        emit IConsentRegistry.BreakGlassMaxDurationSet(2 hours);
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(2 hours);
        assertEq(consents.maxBreakGlassDuration(), 2 hours);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentRegistry.ConsentBreakGlassInvalid.selector, UNCONSCIOUS, 3 hours, 2 hours
            )
        );
        vm.prank(doctor);
        consents.openBreakGlass(patient, UNCONSCIOUS, 3 hours);
    }

    function test_setMaxBreakGlassDuration_zeroDisablesBreakGlass() public {
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(0);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentBreakGlassInvalid.selector, UNCONSCIOUS, 1, 0)
        );
        vm.prank(doctor);
        consents.openBreakGlass(patient, UNCONSCIOUS, 1);
    }

    function test_setMaxBreakGlassDuration_loweringCutsRunningSessionsShort() public {
        _open(doctor, 12 hours);
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(1 hours);
        vm.warp(START + 1 hours - 1);
        assertTrue(consents.isBreakGlassOpen(patient, hospital), "inside the new maximum");
        vm.warp(START + 1 hours);
        assertFalse(consents.isBreakGlassOpen(patient, hospital), "cut at openedAt + new maximum");
        (bool allowed, IConsentRegistry.Basis basis) = _emergencyRead(doctor);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.NoConsent, "cut session");
    }

    function test_setMaxBreakGlassDuration_raisingNeverReopensACutSession() public {
        _open(doctor, 12 hours);
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(1 hours);
        vm.warp(START + 2 hours);
        assertFalse(consents.isBreakGlassOpen(patient, hospital), "cut");
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(1 days);
        assertFalse(consents.isBreakGlassOpen(patient, hospital), "raising does not re-open it");
        (bool allowed, IConsentRegistry.Basis basis) = _emergencyRead(nurse);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.NoConsent, "still cut");
    }

    function test_setMaxBreakGlassDuration_aSessionIsBoundByEveryLoweringSinceItOpened() public {
        _open(doctor, 12 hours);
        vm.startPrank(governor);
        consents.setMaxBreakGlassDuration(2 hours); // binds the session: START + 2 hours
        consents.setMaxBreakGlassDuration(1 days);
        consents.setMaxBreakGlassDuration(6 hours); // less strict than 2 hours for it
        vm.stopPrank();
        vm.warp(START + 2 hours - 1);
        (bool allowed, IConsentRegistry.Basis basis, uint40 until) =
            consents.decide(patient, nurse, 1, FhirCodes.ACTION_READ, FhirCodes.PURPOSE_ETREAT);
        _assertDecision(allowed, basis, true, IConsentRegistry.Basis.BreakGlass, "inside the strictest");
        assertEq(until, START + 2 hours, "until the strictest lowering's end");
        vm.warp(START + 2 hours);
        assertFalse(consents.isBreakGlassOpen(patient, hospital), "the 2-hour lowering still binds");

        // A session opened after those lowerings is bound only by the maximum it opened under.
        vm.prank(clinician);
        consents.openBreakGlass(patient, UNCONSCIOUS, 5 hours);
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(1 days);
        vm.warp(START + 2 hours + 5 hours - 1);
        assertTrue(consents.isBreakGlassOpen(patient, clinic), "runs to its own expiry");
        vm.warp(START + 2 hours + 5 hours);
        assertFalse(consents.isBreakGlassOpen(patient, clinic), "and ends there");
    }

    function test_openBreakGlass_revertsForPatientZero() public {
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPatient.selector, address(0)));
        vm.prank(doctor);
        consents.openBreakGlass(address(0), UNCONSCIOUS, 1 hours);
    }

    function test_closeBreakGlass_pinsASessionCutByTheMaximum() public {
        uint64 id = _open(doctor, 12 hours);
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(1 hours);
        vm.warp(START + 2 hours);
        // Closing a cut session is accepted (its stored expiry is still ahead) and ends it for
        // good, so raising the maximum again cannot bring it back.
        vm.expectEmit(address(consents));
        emit IConsentRegistry.BreakGlassClosed(id, patient, hospital, doctor);
        vm.prank(doctor);
        consents.closeBreakGlass(patient);
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(1 days);
        assertFalse(consents.isBreakGlassOpen(patient, hospital), "stays closed");
        assertEq(consents.breakGlassOf(patient, hospital).expiresAt, START + 2 hours, "ended at close");
    }

    function test_setMaxBreakGlassDuration_revertsForNonGovernor() public {
        address[3] memory notGovernor = [doctor, hospital, patient];
        for (uint256 i = 0; i < notGovernor.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IAccessControl.AccessControlUnauthorizedAccount.selector,
                    notGovernor[i],
                    consents.GOVERNOR_ROLE()
                )
            );
            vm.prank(notGovernor[i]);
            consents.setMaxBreakGlassDuration(30 days);
        }
        assertEq(consents.maxBreakGlassDuration(), MAX_BREAK_GLASS);
    }

    function test_setMaxBreakGlassDuration_followsTheRoleAsAdministered() public {
        address timelock = address(0x7100);
        bytes32 role = consents.GOVERNOR_ROLE();
        vm.prank(governor);
        consents.grantRole(role, timelock);
        vm.prank(timelock);
        consents.setMaxBreakGlassDuration(6 hours);
        assertEq(consents.maxBreakGlassDuration(), 6 hours);

        vm.prank(governor);
        consents.revokeRole(role, timelock);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, timelock, role)
        );
        vm.prank(timelock);
        consents.setMaxBreakGlassDuration(7 hours);
    }

    // ---- closing ----

    function test_closeBreakGlass_byAnyActiveMemberOfTheOrganisation() public {
        uint64 id = _open(doctor, 4 hours);
        vm.warp(START + 1 hours);
        vm.expectEmit(address(consents));
        emit IConsentRegistry.BreakGlassClosed(id, patient, hospital, nurse);
        vm.prank(nurse);
        consents.closeBreakGlass(patient);

        IConsentRegistry.BreakGlassSession memory s = consents.breakGlassOf(patient, hospital);
        assertEq(s.id, id, "stays on record");
        assertEq(s.opener, doctor, "opener kept");
        assertEq(s.openedAt, START, "openedAt kept");
        assertEq(s.expiresAt, START + 1 hours, "ended now");
        assertFalse(consents.isBreakGlassOpen(patient, hospital), "closed");
        (bool allowed, IConsentRegistry.Basis basis) = _emergencyRead(doctor);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.NoConsent, "after close");
    }

    function test_closeBreakGlass_revertsForNonMembers() public {
        _open(doctor, 4 hours);
        vm.expectRevert(_unauthorized(stranger));
        vm.prank(stranger);
        consents.closeBreakGlass(patient);
        vm.expectRevert(_unauthorized(hospital));
        vm.prank(hospital);
        consents.closeBreakGlass(patient);
        vm.prank(governor);
        providers.suspendMember(nurse);
        vm.expectRevert(_unauthorized(nurse));
        vm.prank(nurse);
        consents.closeBreakGlass(patient);
        assertTrue(consents.isBreakGlassOpen(patient, hospital), "still open");
    }

    function test_closeBreakGlass_revertsWhenNothingIsOpen() public {
        vm.expectRevert(_notOpen(hospital));
        vm.prank(doctor);
        consents.closeBreakGlass(patient);

        // Another organisation's member closes its own (absent) session, never the hospital's.
        _open(doctor, 4 hours);
        vm.expectRevert(_notOpen(lab));
        vm.prank(labTech);
        consents.closeBreakGlass(patient);

        vm.startPrank(doctor);
        consents.closeBreakGlass(patient);
        vm.expectRevert(_notOpen(hospital));
        consents.closeBreakGlass(patient);
        vm.stopPrank();

        _open(doctor, 1 hours);
        vm.warp(START + 1 hours);
        vm.expectRevert(_notOpen(hospital));
        vm.prank(doctor);
        consents.closeBreakGlass(patient);
    }
}
