// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {IMembershipMirror} from "../interfaces/IMembershipMirror.sol";
import {IProviderRegistry} from "../interfaces/IProviderRegistry.sol";
import {ProviderRegistry} from "../ProviderRegistry.sol";
import {CarechainFixture} from "./base/CarechainFixture.sol";

contract ProviderRegistryTest is CarechainFixture {
    address internal pharmacy = address(0x1003);
    address internal newKey = address(0xD0FF);

    event OrganisationAdmitted(address indexed org, IProviderRegistry.OrgKind kind, string name);
    event OrganisationStatusChanged(address indexed org, IProviderRegistry.Status status);
    event MemberAdded(address indexed org, address indexed key, IProviderRegistry.MemberRole role);
    event MemberStatusChanged(address indexed org, address indexed key, IProviderRegistry.Status status);
    event MemberKeyRotated(address indexed org, address indexed oldKey, address indexed newKey);
    event MembershipMirrorSet(address indexed mirror);
    event EndpointSet(address indexed org, string url);

    function _unauthorized(address caller) internal view returns (bytes memory) {
        return abi.encodeWithSelector(
            IAccessControl.AccessControlUnauthorizedAccount.selector, caller, providers.GOVERNOR_ROLE()
        );
    }

    function _memberStatus(address key) internal view returns (IProviderRegistry.Status) {
        return providers.member(key).status;
    }

    function _orgStatus(address org) internal view returns (IProviderRegistry.Status) {
        return providers.organisation(org).status;
    }

    // ---- constructor ----

    function test_constructor_grantsGovernorRoles() public view {
        assertTrue(providers.hasRole(providers.GOVERNOR_ROLE(), governor));
        assertTrue(providers.hasRole(providers.DEFAULT_ADMIN_ROLE(), governor));
        assertEq(address(providers.membershipMirror()), address(records));
    }

    function test_constructor_revertsOnZeroGovernor() public {
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        new ProviderRegistry(address(0));
    }

    // ---- organisations ----

    function test_admitOrganisation_storesAndEmits() public {
        vm.expectEmit(address(providers));
        emit OrganisationAdmitted(pharmacy, IProviderRegistry.OrgKind.Pharmacy, "Corner Pharmacy");
        vm.prank(governor);
        providers.admitOrganisation(pharmacy, IProviderRegistry.OrgKind.Pharmacy, "Corner Pharmacy");
        IProviderRegistry.Organisation memory o = providers.organisation(pharmacy);
        assertEq(uint256(o.kind), uint256(IProviderRegistry.OrgKind.Pharmacy));
        assertEq(uint256(o.status), uint256(IProviderRegistry.Status.Active));
        assertEq(o.admittedAt, START);
    }

    function test_admitOrganisation_revertsForNonGovernor() public {
        vm.expectRevert(_unauthorized(stranger));
        vm.prank(stranger);
        providers.admitOrganisation(pharmacy, IProviderRegistry.OrgKind.Pharmacy, "x");
    }

    function test_admitOrganisation_revertsOnZeroAddressOrKind() public {
        vm.startPrank(governor);
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        providers.admitOrganisation(address(0), IProviderRegistry.OrgKind.Pharmacy, "x");
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        providers.admitOrganisation(pharmacy, IProviderRegistry.OrgKind.None, "x");
        vm.stopPrank();
    }

    function test_admitOrganisation_revertsWhenAlreadyOrgOrKey() public {
        vm.startPrank(governor);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, hospital)
        );
        providers.admitOrganisation(hospital, IProviderRegistry.OrgKind.Clinic, "again");
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, doctor));
        providers.admitOrganisation(doctor, IProviderRegistry.OrgKind.Clinic, "key as org");
        vm.stopPrank();
    }

    function test_suspendAndReinstateOrganisation() public {
        vm.expectEmit(address(providers));
        emit OrganisationStatusChanged(hospital, IProviderRegistry.Status.Suspended);
        vm.prank(governor);
        providers.suspendOrganisation(hospital);
        assertEq(uint256(_orgStatus(hospital)), uint256(IProviderRegistry.Status.Suspended));
        (address org,) = providers.activeOrganisationOf(doctor);
        assertEq(org, address(0));

        vm.expectEmit(address(providers));
        emit OrganisationStatusChanged(hospital, IProviderRegistry.Status.Active);
        vm.prank(governor);
        providers.reinstateOrganisation(hospital);
        (org,) = providers.activeOrganisationOf(doctor);
        assertEq(org, hospital);
    }

    function test_suspendOrganisation_reverts() public {
        vm.expectRevert(_unauthorized(hospital));
        vm.prank(hospital);
        providers.suspendOrganisation(hospital);

        vm.startPrank(governor);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnknownOrganisation.selector, pharmacy)
        );
        providers.suspendOrganisation(pharmacy);
        providers.suspendOrganisation(hospital);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderInvalidStatus.selector, hospital, IProviderRegistry.Status.Suspended
            )
        );
        providers.suspendOrganisation(hospital);
        vm.stopPrank();
    }

    function test_reinstateOrganisation_reverts() public {
        vm.expectRevert(_unauthorized(stranger));
        vm.prank(stranger);
        providers.reinstateOrganisation(hospital);

        vm.startPrank(governor);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnknownOrganisation.selector, pharmacy)
        );
        providers.reinstateOrganisation(pharmacy);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderInvalidStatus.selector, hospital, IProviderRegistry.Status.Active
            )
        );
        providers.reinstateOrganisation(hospital);
        vm.stopPrank();
    }

    // ---- members ----

    function test_addMember_byGovernorAndByOrganisation() public {
        vm.expectEmit(address(providers));
        emit MemberAdded(hospital, newKey, IProviderRegistry.MemberRole.Service);
        vm.prank(hospital);
        providers.addMember(hospital, newKey, IProviderRegistry.MemberRole.Service);
        IProviderRegistry.Member memory m = providers.member(newKey);
        assertEq(m.org, hospital);
        assertEq(uint256(m.status), uint256(IProviderRegistry.Status.Active));
        assertEq(uint256(m.role), uint256(IProviderRegistry.MemberRole.Service));
        assertEq(m.since, START);

        vm.prank(governor);
        providers.addMember(lab, address(0xD0FE), IProviderRegistry.MemberRole.Practitioner);
        assertEq(providers.member(address(0xD0FE)).org, lab);
    }

    // ---- directory ----

    function test_setEndpoint_byOrganisationAndGovernor() public {
        assertEq(providers.endpoint(hospital), "", "no endpoint before one is published");
        vm.expectEmit(address(providers));
        emit EndpointSet(hospital, "https://fhir.hospital-a.example/r4");
        vm.prank(hospital);
        providers.setEndpoint(hospital, "https://fhir.hospital-a.example/r4");
        assertEq(providers.endpoint(hospital), "https://fhir.hospital-a.example/r4");

        vm.prank(governor);
        providers.setEndpoint(hospital, "http://127.0.0.1:8081");
        assertEq(providers.endpoint(hospital), "http://127.0.0.1:8081", "governance may correct it");

        vm.expectEmit(address(providers));
        emit EndpointSet(hospital, "");
        vm.prank(hospital);
        providers.setEndpoint(hospital, "");
        assertEq(providers.endpoint(hospital), "", "withdrawn");
    }

    function test_setEndpoint_reverts() public {
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnknownOrganisation.selector, pharmacy)
        );
        vm.prank(governor);
        providers.setEndpoint(pharmacy, "https://x.example");

        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, lab, hospital)
        );
        vm.prank(lab);
        providers.setEndpoint(hospital, "https://lab.example");

        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, doctor, hospital)
        );
        vm.prank(doctor);
        providers.setEndpoint(hospital, "https://doctor.example");

        vm.startPrank(hospital);
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        providers.setEndpoint(hospital, "ftp://hospital.example");
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        providers.setEndpoint(hospital, "https:/");
        bytes memory long = new bytes(513 - 8);
        for (uint256 i = 0; i < long.length; ++i) {
            long[i] = "a";
        }
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        providers.setEndpoint(hospital, string.concat("https://", string(long)));
        providers.setEndpoint(hospital, string.concat("https://", string(new bytes(0)), "a.example"));
        vm.stopPrank();

        vm.prank(governor);
        providers.suspendOrganisation(hospital);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, hospital, hospital)
        );
        vm.prank(hospital);
        providers.setEndpoint(hospital, "https://moved.example");
    }

    function test_addMember_reverts() public {
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnknownOrganisation.selector, pharmacy)
        );
        vm.prank(governor);
        providers.addMember(pharmacy, newKey, IProviderRegistry.MemberRole.Practitioner);

        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, lab, hospital)
        );
        vm.prank(lab);
        providers.addMember(hospital, newKey, IProviderRegistry.MemberRole.Practitioner);

        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, doctor, hospital)
        );
        vm.prank(doctor);
        providers.addMember(hospital, newKey, IProviderRegistry.MemberRole.Practitioner);

        vm.startPrank(hospital);
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        providers.addMember(hospital, address(0), IProviderRegistry.MemberRole.Practitioner);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, labTech));
        providers.addMember(hospital, labTech, IProviderRegistry.MemberRole.Practitioner);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, lab));
        providers.addMember(hospital, lab, IProviderRegistry.MemberRole.Practitioner);
        vm.stopPrank();
    }

    function test_addMember_suspendedOrganisationCannotManageButGovernanceCan() public {
        vm.prank(governor);
        providers.suspendOrganisation(hospital);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, hospital, hospital)
        );
        vm.prank(hospital);
        providers.addMember(hospital, newKey, IProviderRegistry.MemberRole.Practitioner);

        vm.prank(governor);
        providers.addMember(hospital, newKey, IProviderRegistry.MemberRole.Practitioner);
        (address org,) = providers.activeOrganisationOf(newKey);
        assertEq(org, address(0), "suspended organisation");
    }

    function test_memberLifecycle_suspendReinstateRetire() public {
        vm.expectEmit(address(providers));
        emit MemberStatusChanged(hospital, doctor, IProviderRegistry.Status.Suspended);
        vm.prank(hospital);
        providers.suspendMember(doctor);
        assertEq(uint256(_memberStatus(doctor)), uint256(IProviderRegistry.Status.Suspended));

        vm.expectEmit(address(providers));
        emit MemberStatusChanged(hospital, doctor, IProviderRegistry.Status.Active);
        vm.prank(governor);
        providers.reinstateMember(doctor);
        assertEq(uint256(_memberStatus(doctor)), uint256(IProviderRegistry.Status.Active));

        vm.expectEmit(address(providers));
        emit MemberStatusChanged(hospital, doctor, IProviderRegistry.Status.Retired);
        vm.prank(hospital);
        providers.retireMember(doctor);
        assertEq(uint256(_memberStatus(doctor)), uint256(IProviderRegistry.Status.Retired));

        // Retirement is final: the key can be neither reinstated nor registered again.
        vm.startPrank(governor);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderInvalidStatus.selector, doctor, IProviderRegistry.Status.Retired
            )
        );
        providers.reinstateMember(doctor);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, doctor));
        providers.addMember(lab, doctor, IProviderRegistry.MemberRole.Practitioner);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, doctor));
        providers.admitOrganisation(doctor, IProviderRegistry.OrgKind.Clinic, "x");
        vm.stopPrank();
    }

    function test_retireSuspendedMember() public {
        vm.startPrank(hospital);
        providers.suspendMember(doctor);
        providers.retireMember(doctor);
        vm.stopPrank();
        assertEq(uint256(_memberStatus(doctor)), uint256(IProviderRegistry.Status.Retired));
    }

    function test_memberStatusChanges_revertOnUnknownKey() public {
        vm.startPrank(governor);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderUnknownMember.selector, newKey));
        providers.suspendMember(newKey);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderUnknownMember.selector, newKey));
        providers.reinstateMember(newKey);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderUnknownMember.selector, newKey));
        providers.retireMember(newKey);
        vm.stopPrank();
    }

    function test_memberStatusChanges_revertOnWrongStatus() public {
        vm.startPrank(governor);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderInvalidStatus.selector, doctor, IProviderRegistry.Status.Active
            )
        );
        providers.reinstateMember(doctor);
        providers.suspendMember(doctor);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderInvalidStatus.selector, doctor, IProviderRegistry.Status.Suspended
            )
        );
        providers.suspendMember(doctor);
        providers.retireMember(doctor);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderInvalidStatus.selector, doctor, IProviderRegistry.Status.Retired
            )
        );
        providers.retireMember(doctor);
        vm.stopPrank();
    }

    function test_memberStatusChanges_revertForOtherManagers() public {
        bytes memory err =
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, lab, hospital);
        vm.startPrank(lab);
        vm.expectRevert(err);
        providers.suspendMember(doctor);
        vm.expectRevert(err);
        providers.reinstateMember(doctor);
        vm.expectRevert(err);
        providers.retireMember(doctor);
        vm.stopPrank();
        // A key cannot manage itself (except rotating).
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, doctor, hospital)
        );
        vm.prank(doctor);
        providers.retireMember(doctor);
    }

    // ---- rotation ----

    function test_rotateMemberKey_byTheKeyItself() public {
        vm.expectEmit(address(providers));
        emit MemberKeyRotated(hospital, doctor, newKey);
        vm.prank(doctor);
        providers.rotateMemberKey(doctor, newKey);
        assertEq(uint256(_memberStatus(doctor)), uint256(IProviderRegistry.Status.Retired));
        IProviderRegistry.Member memory m = providers.member(newKey);
        assertEq(m.org, hospital);
        assertEq(uint256(m.status), uint256(IProviderRegistry.Status.Active));
        assertEq(uint256(m.role), uint256(IProviderRegistry.MemberRole.Practitioner));
        (address org,) = providers.activeOrganisationOf(newKey);
        assertEq(org, hospital);
        (org,) = providers.activeOrganisationOf(doctor);
        assertEq(org, address(0));
    }

    function test_rotateMemberKey_suspendedKeyInheritsSuspension() public {
        vm.prank(hospital);
        providers.suspendMember(doctor);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, doctor, hospital)
        );
        vm.prank(doctor);
        providers.rotateMemberKey(doctor, newKey);

        vm.prank(hospital);
        providers.rotateMemberKey(doctor, newKey);
        assertEq(uint256(_memberStatus(newKey)), uint256(IProviderRegistry.Status.Suspended));
        assertEq(uint256(_memberStatus(doctor)), uint256(IProviderRegistry.Status.Retired));
    }

    function test_rotateMemberKey_reverts() public {
        vm.startPrank(governor);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderUnknownMember.selector, newKey));
        providers.rotateMemberKey(newKey, address(0xD0FE));
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        providers.rotateMemberKey(doctor, address(0));
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, nurse));
        providers.rotateMemberKey(doctor, nurse);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, doctor));
        providers.rotateMemberKey(doctor, doctor);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, lab));
        providers.rotateMemberKey(doctor, lab);
        providers.rotateMemberKey(doctor, newKey);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderInvalidStatus.selector, doctor, IProviderRegistry.Status.Retired
            )
        );
        providers.rotateMemberKey(doctor, address(0xD0FE));
        vm.stopPrank();

        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderUnauthorizedManager.selector, stranger, hospital)
        );
        vm.prank(stranger);
        providers.rotateMemberKey(nurse, address(0xD0FE));
    }

    // ---- mirror ----

    function test_setMembershipMirror_isSetOnce() public {
        ProviderRegistry fresh = new ProviderRegistry(governor);
        vm.expectRevert(_unauthorized(stranger));
        vm.prank(stranger);
        fresh.setMembershipMirror(records);

        vm.startPrank(governor);
        vm.expectRevert(IProviderRegistry.ProviderInvalidInput.selector);
        fresh.setMembershipMirror(IMembershipMirror(address(0)));
        vm.expectEmit(address(fresh));
        emit MembershipMirrorSet(address(records));
        fresh.setMembershipMirror(records);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderMirrorAlreadySet.selector, records));
        fresh.setMembershipMirror(IMembershipMirror(address(0xBEEF)));
        vm.stopPrank();
    }

    function test_worksWithoutMirror() public {
        ProviderRegistry fresh = new ProviderRegistry(governor);
        vm.startPrank(governor);
        fresh.admitOrganisation(hospital, IProviderRegistry.OrgKind.Hospital, "h");
        fresh.addMember(hospital, doctor, IProviderRegistry.MemberRole.Practitioner);
        fresh.suspendOrganisation(hospital);
        vm.stopPrank();
        assertEq(uint256(fresh.organisation(hospital).status), uint256(IProviderRegistry.Status.Suspended));
    }

    // ---- views ----

    function test_activeOrganisationOf() public {
        (address org, IProviderRegistry.OrgKind kind) = providers.activeOrganisationOf(labTech);
        assertEq(org, lab);
        assertEq(uint256(kind), uint256(IProviderRegistry.OrgKind.Lab));
        (org, kind) = providers.activeOrganisationOf(stranger);
        assertEq(org, address(0));
        assertEq(uint256(kind), 0);
        // An organisation address is not a member key.
        (org,) = providers.activeOrganisationOf(lab);
        assertEq(org, address(0));
        vm.prank(lab);
        providers.suspendMember(labTech);
        (org,) = providers.activeOrganisationOf(labTech);
        assertEq(org, address(0));
    }

    // ---- fuzz ----

    function testFuzz_anAddressIsNeverBothOrganisationAndKey(address account, bool orgFirst) public {
        vm.assume(account != address(0) && account != hospital && account != lab);
        vm.assume(account != doctor && account != nurse && account != labTech);
        vm.startPrank(governor);
        if (orgFirst) {
            providers.admitOrganisation(account, IProviderRegistry.OrgKind.Clinic, "c");
            vm.expectRevert(
                abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, account)
            );
            providers.addMember(hospital, account, IProviderRegistry.MemberRole.Practitioner);
        } else {
            providers.addMember(hospital, account, IProviderRegistry.MemberRole.Practitioner);
            vm.expectRevert(
                abi.encodeWithSelector(IProviderRegistry.ProviderAlreadyRegistered.selector, account)
            );
            providers.admitOrganisation(account, IProviderRegistry.OrgKind.Clinic, "c");
        }
        vm.stopPrank();
    }
}
