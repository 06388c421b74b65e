// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ConsentRegistry} from "../../ConsentRegistry.sol";
import {IConsentRegistry} from "../../interfaces/IConsentRegistry.sol";
import {IProviderRegistry} from "../../interfaces/IProviderRegistry.sol";
import {ProviderRegistry} from "../../ProviderRegistry.sol";
import {svm} from "../base/SymbolicVm.sol";
import {Test} from "../base/Test.sol";

/// @notice Symbolic tests, run by Halmos (`scripts/test`'s Halmos stage), not by forge: every
/// `check_` function is proven for all values of its symbolic inputs (callers, calldata of any
/// function, arguments, times) from the state `setUp` builds: a patient with a Guardian (whose
/// grants to a doctor and a hospital are the patient's only consents but one), a Caregiver and a
/// Proxy, a consent of the patient's own, an open break-glass session, and a doctor who is also a
/// delegate of another patient. What is proven:
/// - only the patient or an authorised active delegate changes a patient's consent;
/// - a delegate's grant never allows after its delegation ends;
/// - a suspended key or organisation is never allowed by `decide`;
/// - a used signature never applies twice.
contract ConsentRegistrySymbolicTest is Test {
    uint40 internal constant START = 1_700_000_000;
    uint40 internal constant DELEGATION_END = START + 30 days;

    address internal governor = address(0x6000);
    address internal hospital = address(0x1001);
    address internal doctor = address(0xD001);
    address internal nurse = address(0xD002);
    address internal lab = address(0x1002);
    address internal labTech = address(0xD003);
    address internal patient = address(0xA11CE);
    address internal guardian = address(0xB0B);
    address internal caregiver = address(0xCA4E);
    address internal proxy = address(0x9A0);
    address internal otherPatient = address(0xA11CE2);

    ProviderRegistry internal providers;
    ConsentRegistry internal consents;

    function setUp() public {
        vm.warp(START);
        providers = new ProviderRegistry(governor);
        consents = new ConsentRegistry(providers, governor, 1 days);
        vm.startPrank(governor);
        providers.admitOrganisation(hospital, IProviderRegistry.OrgKind.Hospital, "St Elsewhere");
        providers.addMember(hospital, doctor, IProviderRegistry.MemberRole.Practitioner);
        providers.addMember(hospital, nurse, IProviderRegistry.MemberRole.Practitioner);
        providers.admitOrganisation(lab, IProviderRegistry.OrgKind.Lab, "Labcorp North");
        providers.addMember(lab, labTech, IProviderRegistry.MemberRole.Service);
        vm.stopPrank();
        // A Guardian, and its grants to the doctor and to the hospital; a Caregiver; a Proxy; the
        // patient's own consent to the lab.
        vm.startPrank(patient);
        consents.setDelegate(guardian, IConsentRegistry.DelegateKind.Guardian, DELEGATION_END);
        consents.setDelegate(caregiver, IConsentRegistry.DelegateKind.Caregiver, DELEGATION_END);
        consents.setProxy(proxy, DELEGATION_END, 0x6, 0x12, 0x1);
        consents.grant(patient, lab, 0xffffff, 0x1f, 0x3ff, 0, DELEGATION_END, bytes32(0));
        vm.stopPrank();
        vm.startPrank(guardian);
        consents.grant(patient, doctor, 0xffffff, 0x1f, 0x3ff, 0, DELEGATION_END, bytes32(0));
        consents.grant(patient, hospital, 0xffffff, 0x1f, 0x3ff, 0, DELEGATION_END, bytes32(0));
        vm.stopPrank();
        // The doctor is also the Guardian of another patient, and the hospital has broken glass.
        vm.prank(otherPatient);
        consents.setDelegate(doctor, IConsentRegistry.DelegateKind.Guardian, DELEGATION_END);
        vm.prank(nurse);
        consents.openBreakGlass(patient, IConsentRegistry.BreakGlassReason.LifeThreatening, 1 hours);
    }

    function _isBySig(bytes4 selector) internal pure returns (bool) {
        return selector == ConsentRegistry.grantBySig.selector
            || selector == ConsentRegistry.revokeBySig.selector
            || selector == ConsentRegistry.setDelegateBySig.selector
            || selector == ConsentRegistry.setProxyBySig.selector
            || selector == ConsentRegistry.removeDelegateBySig.selector;
    }

    /// @dev Everything stored about one consent.
    function _consentState(address patient_, address grantee) internal view returns (bytes32) {
        (uint40 id,) = consents.grantingDelegationOf(patient_, grantee);
        return keccak256(abi.encode(consents.consentOf(patient_, grantee), id));
    }

    /// @notice Any direct call of any function, by any caller, with any arguments: when it changes
    /// what is stored about a consent of a patient, the caller is that patient, or an active
    /// Guardian or Proxy of theirs. (Signed calls are covered below: their actor is the signer.)
    function check_onlyThePatientOrAnAuthorisedDelegateChangesConsent() public {
        vm.warp(svm.createUint(40, "now"));
        address patient_ = svm.createAddress("patient");
        address grantee = svm.createAddress("grantee");
        address caller = svm.createAddress("caller");
        bytes memory data = svm.createCalldata("ConsentRegistry");
        // casting to 'bytes4' is safe because it keeps the selector, the first four bytes.
        // forge-lint: disable-next-line(unsafe-typecast)
        vm.assume(!_isBySig(bytes4(data)));

        IConsentRegistry.Delegation memory d = consents.delegationOf(patient_, caller);
        bool authorised = caller == patient_
            || ((d.kind == IConsentRegistry.DelegateKind.Guardian
                    || d.kind == IConsentRegistry.DelegateKind.Proxy)
                && d.validUntil > block.timestamp);
        bytes32 before = _consentState(patient_, grantee);
        vm.prank(caller);
        (bool ok,) = address(consents).call(data);
        if (ok && _consentState(patient_, grantee) != before) assert(authorised);
    }

    /// @notice The same for signed grants and revocations, whoever submits them: a change means
    /// the signer is the patient or an active Guardian or Proxy of theirs.
    function check_onlyThePatientOrAnAuthorisedDelegateSignsAConsentChange(bool isGrant) public {
        vm.warp(svm.createUint(40, "now"));
        IConsentRegistry.Grant memory g;
        g.patient = svm.createAddress("patient");
        g.grantee = svm.createAddress("grantee");
        g.resourceTypes = uint64(svm.createUint(64, "resourceTypes"));
        g.actions = uint8(svm.createUint(8, "actions"));
        g.purposes = uint16(svm.createUint(16, "purposes"));
        g.validUntil = uint40(svm.createUint(40, "validUntil"));
        g.nonce = svm.createUint(256, "nonce");
        g.deadline = svm.createUint(256, "deadline");
        address signer = svm.createAddress("signer");
        bytes memory signature = svm.createBytes(65, "signature");

        IConsentRegistry.Delegation memory d = consents.delegationOf(g.patient, signer);
        bool authorised = signer == g.patient
            || ((d.kind == IConsentRegistry.DelegateKind.Guardian
                    || d.kind == IConsentRegistry.DelegateKind.Proxy)
                && d.validUntil > block.timestamp);
        bytes32 before = _consentState(g.patient, g.grantee);
        bool ok;
        if (isGrant) {
            (ok,) = address(consents).call(abi.encodeCall(ConsentRegistry.grantBySig, (g, signer, signature)));
        } else {
            (ok,) = address(consents)
                .call(
                    abi.encodeCall(
                        ConsentRegistry.revokeBySig,
                        (g.patient, g.grantee, g.nonce, g.deadline, signer, signature)
                    )
                );
        }
        if (ok && _consentState(g.patient, g.grantee) != before) assert(authorised);
    }

    /// @notice The Guardian's grants (the only consents this patient has) never allow again once
    /// its delegation has ended, by removal, by a change of kind or by expiry, whatever the
    /// patient appoints afterwards and whenever the doctor asks, for any request.
    function check_aDelegatesGrantNeverAllowsAfterItsDelegationEnds(
        uint8 how,
        uint40 endedAt,
        uint8 laterKind,
        uint40 laterUntil,
        uint40 askedAt,
        uint8 resourceType,
        uint8 action,
        uint8 purpose
    ) public {
        vm.assume(endedAt >= START && askedAt >= endedAt);
        vm.warp(endedAt);
        if (how == 0) {
            vm.prank(patient);
            consents.removeDelegate(guardian);
        } else if (how == 1) {
            vm.prank(patient);
            consents.setDelegate(guardian, IConsentRegistry.DelegateKind.Caregiver, laterUntil);
        } else {
            vm.assume(endedAt >= DELEGATION_END);
        }
        // The patient appoints the same person again, as any kind, for any period (or not).
        if (laterKind == 1 || laterKind == 2) {
            vm.prank(patient);
            consents.setDelegate(guardian, IConsentRegistry.DelegateKind(laterKind), laterUntil);
        } else if (laterKind == 3) {
            vm.prank(patient);
            consents.setProxy(guardian, laterUntil, 0xffffff, 0x1f, 0x3ff);
        }
        vm.warp(askedAt);
        (bool allowed, IConsentRegistry.Basis basis,) =
            consents.decide(patient, doctor, resourceType, action, purpose);
        assert(
            !allowed
                || (basis != IConsentRegistry.Basis.MemberConsent
                    && basis != IConsentRegistry.Basis.OrganisationConsent)
        );
    }

    /// @notice Whichever keys and organisations governance suspends or retires: a requester whose
    /// key is not active, or whose organisation is not, is never allowed, whatever it asks about
    /// whom (consent to it or its organisation, break-glass, as a delegate, its own data).
    function check_aSuspendedKeyOrOrganisationIsNeverAllowed(
        uint8 change,
        address patient_,
        address requester,
        uint8 resourceType,
        uint8 action,
        uint8 purpose
    ) public {
        vm.startPrank(governor);
        if (change & 1 != 0) providers.suspendMember(doctor);
        if (change & 2 != 0) providers.suspendOrganisation(hospital);
        if (change & 4 != 0) providers.retireMember(nurse);
        if (change & 8 != 0) providers.suspendMember(labTech);
        vm.stopPrank();
        IProviderRegistry.Member memory m = providers.member(requester);
        bool inactive = m.status != IProviderRegistry.Status.None
            && (m.status != IProviderRegistry.Status.Active
                || providers.organisation(m.org).status != IProviderRegistry.Status.Active);
        (bool allowed,,) = consents.decide(patient_, requester, resourceType, action, purpose);
        assert(!(inactive && allowed));
    }

    /// @notice A signed call (grant, revoke, delegate set, proxy set, delegate removal) with any
    /// arguments that succeeded once never succeeds again, whoever submits it and whenever.
    function check_aUsedSignatureNeverAppliesTwice() public {
        vm.warp(svm.createUint(40, "firstAt"));
        bytes memory data = svm.createCalldata("ConsentRegistry");
        // casting to 'bytes4' is safe because it keeps the selector, the first four bytes.
        // forge-lint: disable-next-line(unsafe-typecast)
        vm.assume(_isBySig(bytes4(data)));
        vm.prank(svm.createAddress("firstSubmitter"));
        (bool first,) = address(consents).call(data);
        vm.assume(first);
        vm.warp(svm.createUint(40, "secondAt"));
        vm.prank(svm.createAddress("secondSubmitter"));
        (bool second,) = address(consents).call(data);
        assert(!second);
    }
}
