// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AuditAnchor} from "../../AuditAnchor.sol";
import {ConsentRegistry} from "../../ConsentRegistry.sol";
import {IConsentRegistry} from "../../interfaces/IConsentRegistry.sol";
import {IProviderRegistry} from "../../interfaces/IProviderRegistry.sol";
import {FhirCodes} from "../../libraries/FhirCodes.sol";
import {ProviderRegistry} from "../../ProviderRegistry.sol";
import {RecordRegistry} from "../../RecordRegistry.sol";
import {Test} from "./Test.sol";

/// @title CarechainFixture
/// @notice All four contracts deployed and wired as the deploy script does, with a hospital, a
/// lab and a member key in each, and a patient whose private key is known for signing.
abstract contract CarechainFixture is Test {
    uint40 internal constant START = 1_700_000_000;
    uint32 internal constant MAX_BREAK_GLASS = 1 days;

    uint256 internal constant PATIENT_PK = 0xA11CE;
    uint256 internal constant DELEGATE_PK = 0xB0B;
    uint256 internal constant STRANGER_PK = 0xBAD;

    address internal governor = address(0x6000);
    address internal hospital = address(0x1001);
    address internal lab = address(0x1002);
    address internal doctor = address(0xD001);
    address internal nurse = address(0xD002);
    address internal labTech = address(0xD003);
    address internal relayer = address(0x7E1A);

    address internal patient;
    address internal delegate;
    address internal stranger;

    ProviderRegistry internal providers;
    ConsentRegistry internal consents;
    RecordRegistry internal records;
    AuditAnchor internal audit;

    function setUp() public virtual {
        vm.warp(START);
        patient = vm.addr(PATIENT_PK);
        delegate = vm.addr(DELEGATE_PK);
        stranger = vm.addr(STRANGER_PK);

        providers = new ProviderRegistry(governor);
        consents = new ConsentRegistry(providers, governor, MAX_BREAK_GLASS);
        records = new RecordRegistry(providers);
        audit = new AuditAnchor(governor);

        vm.startPrank(governor);
        providers.setMembershipMirror(records);
        providers.admitOrganisation(hospital, IProviderRegistry.OrgKind.Hospital, "St Elsewhere");
        providers.admitOrganisation(lab, IProviderRegistry.OrgKind.Lab, "Labcorp North");
        providers.addMember(hospital, doctor, IProviderRegistry.MemberRole.Practitioner);
        providers.addMember(hospital, nurse, IProviderRegistry.MemberRole.Practitioner);
        providers.addMember(lab, labTech, IProviderRegistry.MemberRole.Service);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------------------------------
    // Helpers
    // ------------------------------------------------------------------------------------------

    uint64 internal constant OBSERVATION = uint64(1) << 1;
    uint8 internal constant READ_SEARCH = uint8(1 << 1) | uint8(1 << 4);
    uint16 internal constant TREAT = uint16(1) << 0;

    /// @dev A read/search consent to Observation for TREAT, valid for a year from now.
    function _grantDefault(address grantee) internal {
        vm.prank(patient);
        consents.grant(
            patient, grantee, OBSERVATION, READ_SEARCH, TREAT, 0, START + 365 days, keccak256("fhir")
        );
    }

    function _readObservation(address requester) internal view returns (bool, IConsentRegistry.Basis) {
        (bool allowed, IConsentRegistry.Basis basis,) =
            consents.decide(patient, requester, 1, FhirCodes.ACTION_READ, FhirCodes.PURPOSE_TREAT);
        return (allowed, basis);
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }
}
