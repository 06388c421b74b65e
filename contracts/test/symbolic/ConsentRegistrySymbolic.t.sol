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

    /// @notice A direct grant or revocation by any caller, with any arguments, at any time: when
    /// it changes what is stored about one of the patient's consents, the caller is the patient,
    /// or an active Guardian or Proxy of theirs.
    function check_onlyThePatientOrAnAuthorisedDelegateChangesConsent(bool isGrant) public {
        vm.warp(svm.createUint(40, "now"));
        IConsentRegistry.Grant memory g = _symbolicGrant();
        address caller = svm.createAddress("caller");
        bool authorised = _mayChangeConsent(caller);
        bytes32 before = _consentState(patient, g.grantee);
        vm.prank(caller);
        (bool ok,) = address(consents)
            .call(
                isGrant
                    ? abi.encodeCall(
                        ConsentRegistry.grant,
                        (
                            patient,
                            g.grantee,
                            g.resourceTypes,
                            g.actions,
                            g.purposes,
                            g.validFrom,
                            g.validUntil,
                            g.consentHash
                        )
                    )
                    : abi.encodeCall(ConsentRegistry.revoke, (patient, g.grantee))
            );
        if (ok && _consentState(patient, g.grantee) != before) assert(authorised);
    }

    /// @notice The same for a call of every other state-changing function (symbolic calldata):
    /// none of them changes a consent, whoever calls. About five minutes on two busy cores, so the
    /// test stage runs it only with `HALMOS_SLOW=1` (see `scripts/test`).
    function check_slow_onlyThePatientOrAnAuthorisedDelegateChangesConsentThroughAnyFunction() public {
        address grantee = svm.createAddress("grantee");
        address caller = svm.createAddress("caller");
        // View functions change nothing (the compiler forbids it): every other function.
        bytes memory data = svm.createCalldata("ConsentRegistry", false);
        // casting to 'bytes4' is safe because it keeps the selector, the first four bytes.
        // forge-lint: disable-next-line(unsafe-typecast)
        vm.assume(!_isBySig(bytes4(data)));

        bool authorised = _mayChangeConsent(caller);
        bytes32 before = _consentState(patient, grantee);
        vm.prank(caller);
        (bool ok,) = address(consents).call(data);
        if (ok && _consentState(patient, grantee) != before) assert(authorised);
    }

    /// @notice The same for every signed grant and revocation, whoever submits it, whoever signed
    /// it, with any arguments: a change means the signer is the patient or an active Guardian or
    /// Proxy of theirs. (Signers are EOAs here; contract wallets are unit-tested.)
    function check_onlyThePatientOrAnAuthorisedDelegateSignsAConsentChange(bool isGrant) public {
        vm.warp(svm.createUint(40, "now"));
        IConsentRegistry.Grant memory g = _symbolicGrant();
        address signer = svm.createAddress("signer");
        vm.assume(signer.code.length == 0);
        bytes memory signature = svm.createBytes(65, "signature");

        bool authorised = _mayChangeConsent(signer);
        bytes32 before = _consentState(patient, g.grantee);
        vm.prank(svm.createAddress("submitter"));
        (bool ok,) = address(consents)
            .call(
                isGrant
                    ? abi.encodeCall(ConsentRegistry.grantBySig, (g, signer, signature))
                    : abi.encodeCall(
                        ConsentRegistry.revokeBySig,
                        (patient, g.grantee, g.nonce, g.deadline, signer, signature)
                    )
            );
        if (ok && _consentState(patient, g.grantee) != before) assert(authorised);
    }

    /// @notice The Guardian's grants (the only consents the patient has besides one to the lab)
    /// never allow again once its delegation has ended, by removal, by a change of kind or by
    /// expiry, whatever the patient appoints afterwards and whenever the doctor or nurse asks,
    /// for any request.
    function check_aDelegatesGrantNeverAllowsAfterItsDelegationEnds(
        uint8 how,
        uint40 endedAt,
        uint8 laterKind,
        uint40 laterUntil,
        uint40 askedAt,
        bool asNurse,
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
            consents.decide(patient, asNurse ? nurse : doctor, resourceType, action, purpose);
        assert(
            !allowed
                || (basis != IConsentRegistry.Basis.MemberConsent
                    && basis != IConsentRegistry.Basis.OrganisationConsent)
        );
    }

    /// @notice Whichever keys and organisations governance suspends or retires: a key that is not
    /// active, or whose organisation is not, is never allowed, whatever it asks about whom, at any
    /// time (though consent to it or its organisation, break-glass, being a delegate, or its own
    /// data would allow it otherwise).
    function check_aSuspendedKeyOrOrganisationIsNeverAllowed(
        uint8 change,
        uint8 which,
        address patient_,
        uint40 at,
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
        vm.warp(at);
        address requester = which == 0 ? doctor : which == 1 ? nurse : labTech;
        IProviderRegistry.Member memory m = providers.member(requester);
        vm.assume(
            m.status != IProviderRegistry.Status.Active
                || providers.organisation(m.org).status != IProviderRegistry.Status.Active
        );
        (bool allowed,,) = consents.decide(patient_, requester, resourceType, action, purpose);
        assert(!allowed);
    }

    /// @notice Every signed call (grant, revoke, delegate set, proxy set, delegate removal) with
    /// any arguments that succeeded once never succeeds again, whoever submits it and whenever.
    function check_aUsedSignatureNeverAppliesTwice(uint8 which) public {
        vm.warp(svm.createUint(40, "firstAt"));
        IConsentRegistry.Grant memory g = _symbolicGrant();
        address signer = svm.createAddress("signer");
        vm.assume(signer.code.length == 0);
        bytes memory signature = svm.createBytes(65, "signature");
        address delegate = svm.createAddress("delegate");
        uint8 kind = uint8(svm.createUint(2, "kind"));
        bytes memory data;
        if (which == 0) {
            data = abi.encodeCall(ConsentRegistry.grantBySig, (g, signer, signature));
        } else if (which == 1) {
            data = abi.encodeCall(
                ConsentRegistry.revokeBySig, (patient, g.grantee, g.nonce, g.deadline, signer, signature)
            );
        } else if (which == 2) {
            data = abi.encodeCall(
                ConsentRegistry.setDelegateBySig,
                (
                    patient,
                    delegate,
                    IConsentRegistry.DelegateKind(kind),
                    g.validUntil,
                    g.nonce,
                    g.deadline,
                    signature
                )
            );
        } else if (which == 3) {
            data = abi.encodeCall(
                ConsentRegistry.setProxyBySig,
                (
                    patient,
                    delegate,
                    g.validUntil,
                    g.resourceTypes,
                    g.actions,
                    g.purposes,
                    g.nonce,
                    g.deadline,
                    signature
                )
            );
        } else {
            data = abi.encodeCall(
                ConsentRegistry.removeDelegateBySig, (patient, delegate, g.nonce, g.deadline, signature)
            );
        }
        vm.prank(svm.createAddress("firstSubmitter"));
        (bool first,) = address(consents).call(data);
        vm.assume(first);
        vm.warp(svm.createUint(40, "secondAt"));
        vm.prank(svm.createAddress("secondSubmitter"));
        (bool second,) = address(consents).call(data);
        assert(!second);
    }

    /// @dev Whether `actor` may change the patient's consent now: the patient, or an active
    /// Guardian or Proxy.
    function _mayChangeConsent(address actor) internal view returns (bool) {
        IConsentRegistry.Delegation memory d = consents.delegationOf(patient, actor);
        return actor == patient
            || ((d.kind == IConsentRegistry.DelegateKind.Guardian
                    || d.kind == IConsentRegistry.DelegateKind.Proxy)
                && d.validUntil > block.timestamp);
    }

    /// @dev A grant of the patient's with every other field symbolic.
    function _symbolicGrant() internal returns (IConsentRegistry.Grant memory g) {
        g.patient = patient;
        g.grantee = svm.createAddress("grantee");
        g.resourceTypes = uint64(svm.createUint(64, "resourceTypes"));
        g.actions = uint8(svm.createUint(8, "actions"));
        g.purposes = uint16(svm.createUint(16, "purposes"));
        g.validFrom = uint40(svm.createUint(40, "validFrom"));
        g.validUntil = uint40(svm.createUint(40, "validUntil"));
        g.consentHash = bytes32(svm.createUint(256, "consentHash"));
        g.nonce = svm.createUint(256, "nonce");
        g.deadline = svm.createUint(256, "deadline");
    }
}
