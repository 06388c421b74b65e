// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ConsentRegistry} from "../ConsentRegistry.sol";
import {IConsentRegistry} from "../interfaces/IConsentRegistry.sol";
import {IProviderRegistry} from "../interfaces/IProviderRegistry.sol";
import {FhirCodes} from "../libraries/FhirCodes.sol";
import {ConsentFixture} from "./base/ConsentFixture.sol";
import {ConsentHandler} from "./handlers/ConsentHandler.sol";

/// @notice Invariants of the consent state machine, checked after every step of random sequences
/// driven through `ConsentHandler`:
/// - a revoked or expired consent never decides allowed (and storage matches the ghost model);
/// - break-glass never outlives its maximum;
/// - members of a suspended organisation and suspended keys are always denied;
/// - a nonce only increases, exactly as the accepted signatures and cancellations say;
/// - no signature works twice, on another chain id or on another contract address;
/// - no allowing consent outlives the delegation a delegate granted it under;
/// - no Caregiver ever changes consent, no delegate grants to itself, its organisation or a key
///   of it, no Proxy grants beyond its scope;
/// - a break-glass session, once seen closed, is never open again.
contract ConsentRegistryInvariantsTest is ConsentFixture {
    uint256 internal constant SECOND_PATIENT_PK = 0xA11CE2;
    /// @dev A clinic practitioner whose key is also a patient's wallet.
    uint256 internal constant KEY_PATIENT_PK = 0xD00D;

    address internal clinic = address(0x1004);
    address internal clinician = address(0xD004);

    ConsentHandler internal handler;
    ConsentRegistry internal otherRegistry;

    /// @dev The requests every invariant asks about: (resource type, action, purpose).
    uint8[3][3] internal _requests;

    /// @dev The handler's cast, copied here so the checks, which run after every step, do not
    /// pay an external call per name.
    address[] internal _patients;
    address[] internal _keys;
    address[] internal _orgs;
    address[] internal _grantees;
    mapping(address key => address) internal _orgOf;

    function setUp() public override {
        super.setUp();
        address keyPatient = vm.addr(KEY_PATIENT_PK);
        vm.startPrank(governor);
        providers.admitOrganisation(clinic, IProviderRegistry.OrgKind.Clinic, "Corner Clinic");
        providers.addMember(clinic, clinician, IProviderRegistry.MemberRole.Practitioner);
        providers.addMember(clinic, keyPatient, IProviderRegistry.MemberRole.Practitioner);
        vm.stopPrank();
        otherRegistry = new ConsentRegistry(providers, governor, MAX_BREAK_GLASS);

        uint256[] memory patientPks = new uint256[](3);
        patientPks[0] = PATIENT_PK;
        patientPks[1] = SECOND_PATIENT_PK;
        patientPks[2] = KEY_PATIENT_PK;
        address[] memory keys = new address[](5);
        keys[0] = doctor;
        keys[1] = nurse;
        keys[2] = labTech;
        keys[3] = clinician;
        keys[4] = keyPatient;
        address[] memory orgs = new address[](3);
        orgs[0] = hospital;
        orgs[1] = lab;
        orgs[2] = clinic;
        handler = new ConsentHandler(
            consents, otherRegistry, providers, governor, patientPks, DELEGATE_PK, keys, orgs, START
        );
        // The handler acts as governance for break-glass maximum and suspensions through pranks.
        targetContract(address(handler));
        for (uint256 i = 0; i < patientPks.length; ++i) {
            _patients.push(vm.addr(patientPks[i]));
        }
        for (uint256 i = 0; i < keys.length; ++i) {
            _keys.push(keys[i]);
            _grantees.push(keys[i]);
            _orgOf[keys[i]] = providers.member(keys[i]).org;
        }
        for (uint256 i = 0; i < orgs.length; ++i) {
            _orgs.push(orgs[i]);
            _grantees.push(orgs[i]);
        }

        // Few requests, chosen against the handler's scope choices, because every check runs
        // after every step: a plain read, an emergency delete (never break-glass's) and a
        // research search of AuditEvent (only a full-table consent covers it).
        _requests[0] = [1, FhirCodes.ACTION_READ, FhirCodes.PURPOSE_TREAT];
        _requests[1] = [1, FhirCodes.ACTION_DELETE, FhirCodes.PURPOSE_ETREAT];
        _requests[2] = [13, FhirCodes.ACTION_SEARCH, 4];
    }

    function _covers(ConsentHandler.ModelConsent memory c, uint8[3] memory request)
        internal
        view
        returns (bool)
    {
        return c.exists && c.validFrom <= block.timestamp && block.timestamp < c.validUntil
            && (c.resourceTypes >> request[0]) & 1 == 1 && (c.actions >> request[1]) & 1 == 1
            && (c.purposes >> request[2]) & 1 == 1;
    }

    /// @dev The patients a check looks at after this step. `decide` is asked hundreds of times per
    /// check and checks run after every step, so the per-patient checks take one patient per
    /// step in turn: over a run of 32 steps each patient is checked about ten times, and the
    /// violations looked for persist until the state changes again, so rotating finds them too.
    function _patientsThisStep() internal view returns (address[] memory list) {
        list = new address[](1);
        list[0] = _patients[handler.steps() % _patients.length];
    }

    function _isActive(address key) internal view returns (bool) {
        IProviderRegistry.Member memory m = providers.member(key);
        return m.status == IProviderRegistry.Status.Active
            && providers.organisation(m.org).status == IProviderRegistry.Status.Active;
    }

    // ------------------------------------------------------------------------------------------

    /// @notice A consent decides allowed only while the ghost model holds it (never after a
    /// revocation), inside its period (never once expired or before it starts) and covering the
    /// request; storage holds exactly the model.
    function invariant_revokedOrExpiredConsentNeverAllows() public {
        vm.warp(handler.ghostNow());
        address[] memory patients = _patientsThisStep();
        for (uint256 i = 0; i < patients.length; ++i) {
            address p = patients[i];
            for (uint256 j = 0; j < _grantees.length; ++j) {
                address g = _grantees[j];
                ConsentHandler.ModelConsent memory m = handler.modelOf(p, g);
                IConsentRegistry.Consent memory c = consents.consentOf(p, g);
                assertEq(c.validUntil, m.exists ? m.validUntil : 0, "stored validUntil matches the model");
                assertEq(c.validFrom, m.validFrom, "stored validFrom matches the model");
                assertEq(c.resourceTypes, m.resourceTypes, "stored resource types match the model");
                assertEq(c.actions, m.actions, "stored actions match the model");
                assertEq(c.purposes, m.purposes, "stored purposes match the model");
            }
            for (uint256 k = 0; k < _keys.length; ++k) {
                address key = _keys[k];
                for (uint256 r = 0; r < _requests.length; ++r) {
                    uint8[3] memory q = _requests[r];
                    (bool allowed, IConsentRegistry.Basis basis,) = consents.decide(p, key, q[0], q[1], q[2]);
                    assertEq(allowed, _isAllowedBasis(basis), "allowed agrees with the basis");
                    if (basis == IConsentRegistry.Basis.MemberConsent) {
                        assertTrue(_covers(handler.modelOf(p, key), q), "member consent live and covering");
                    } else if (basis == IConsentRegistry.Basis.OrganisationConsent) {
                        address org = _orgOf[key];
                        assertTrue(
                            _covers(handler.modelOf(p, org), q), "organisation consent live and covering"
                        );
                    }
                }
            }
        }
    }

    /// @notice An open session is inside its own duration, inside the maximum in force when it
    /// was opened and inside the current maximum; break-glass allows only through such a session.
    function invariant_breakGlassNeverOutlivesItsMaximum() public {
        vm.warp(handler.ghostNow());
        uint256 currentMax = consents.maxBreakGlassDuration();
        address[] memory patients = _patientsThisStep();
        for (uint256 i = 0; i < patients.length; ++i) {
            address p = patients[i];
            for (uint256 o = 0; o < _orgs.length; ++o) {
                address org = _orgs[o];
                IConsentRegistry.BreakGlassSession memory s = consents.breakGlassOf(p, org);
                if (s.id != 0) {
                    assertLe(
                        handler.durationAtOpen(s.id), handler.maxAtOpen(s.id), "duration within the maximum"
                    );
                    assertLe(
                        s.expiresAt, s.openedAt + uint256(handler.durationAtOpen(s.id)), "never extended"
                    );
                }
                if (!consents.isBreakGlassOpen(p, org)) continue;
                assertTrue(s.id != 0, "an open session exists");
                assertTrue(block.timestamp < s.expiresAt, "before its expiry");
                assertTrue(
                    block.timestamp < s.openedAt + uint256(handler.maxAtOpen(s.id)),
                    "inside the maximum at opening"
                );
                assertTrue(block.timestamp < s.openedAt + currentMax, "inside the current maximum");
            }
            for (uint256 k = 0; k < _keys.length; ++k) {
                address key = _keys[k];
                (, IConsentRegistry.Basis basis,) =
                    consents.decide(p, key, 1, FhirCodes.ACTION_READ, FhirCodes.PURPOSE_ETREAT);
                if (basis == IConsentRegistry.Basis.BreakGlass) {
                    assertTrue(consents.isBreakGlassOpen(p, _orgOf[key]), "only through an open session");
                }
            }
        }
    }

    /// @notice A key that is not active, or whose organisation is not, is denied everything: as a
    /// grantee, through its organisation, by break-glass, as a delegate and for its own data.
    function invariant_suspendedKeysAndOrganisationsAreAlwaysDenied() public {
        vm.warp(handler.ghostNow());
        for (uint256 k = 0; k < _keys.length; ++k) {
            address key = _keys[k];
            if (_isActive(key)) continue;
            // This step's patient, then the key's own data.
            address[] memory patients = _patientsThisStep();
            for (uint256 i = 0; i <= patients.length; ++i) {
                address p = i == patients.length ? key : patients[i];
                for (uint256 r = 0; r < _requests.length; ++r) {
                    uint8[3] memory q = _requests[r];
                    (bool allowed, IConsentRegistry.Basis basis,) = consents.decide(p, key, q[0], q[1], q[2]);
                    assertFalse(allowed, "suspended requester allowed");
                    assertTrue(
                        basis == IConsentRegistry.Basis.KeySuspended
                            || basis == IConsentRegistry.Basis.OrganisationSuspended,
                        "denied for its status"
                    );
                }
            }
        }
    }

    /// @notice Nonces never go down, and each equals what the accepted signatures and
    /// cancellations account for; the other registry never accepted anything.
    function invariant_nonceOnlyIncreases() public view {
        assertFalse(handler.nonceDecreased(), "a nonce went down");
        for (uint256 i = 0; i < _patients.length; ++i) {
            address p = _patients[i];
            assertEq(consents.nonces(p), handler.ghostNonce(p), "nonce accounted for");
            assertEq(otherRegistry.nonces(p), 0, "other registry untouched");
        }
    }

    /// @notice A consent that a delegate granted allows only while the delegation it was granted
    /// under is in force (by the handler's own model of delegations).
    function invariant_delegateGrantsNeverOutliveTheirDelegation() public {
        vm.warp(handler.ghostNow());
        address[] memory patients = _patientsThisStep();
        for (uint256 i = 0; i < patients.length; ++i) {
            address p = patients[i];
            for (uint256 k = 0; k < _keys.length; ++k) {
                address key = _keys[k];
                for (uint256 r = 0; r < _requests.length; ++r) {
                    uint8[3] memory q = _requests[r];
                    (bool allowed, IConsentRegistry.Basis basis, uint40 until) =
                        consents.decide(p, key, q[0], q[1], q[2]);
                    if (!allowed) continue;
                    assertTrue(until > block.timestamp, "allowed until a moment still ahead");
                    address grantee;
                    if (basis == IConsentRegistry.Basis.MemberConsent) grantee = key;
                    else if (basis == IConsentRegistry.Basis.OrganisationConsent) grantee = _orgOf[key];
                    else continue;
                    uint256 under = handler.modelOf(p, grantee).grantedUnder;
                    if (under == 0) continue;
                    uint40 end = handler.ghostDelegationEnd(under);
                    assertTrue(
                        block.timestamp < end, "a delegate's grant allows only while its delegation runs"
                    );
                    assertLe(until, end, "and says it holds no longer than the delegation");
                }
            }
        }
    }

    /// @notice No Caregiver (or non-delegate) changed consent; no delegate's grant named itself,
    /// its organisation or a key of that organisation; no Proxy granted beyond its scope.
    function invariant_delegatesStayWithinTheirAuthority() public view {
        assertFalse(handler.caregiverChangedConsent(), "a caregiver changed consent");
        assertFalse(handler.selfGrantAccepted(), "a delegate granted to itself or its own");
        assertFalse(handler.proxyExceededScope(), "a proxy granted beyond its scope");
    }

    /// @notice No break-glass session was ever open again after it had been seen closed (expired,
    /// closed, or cut by a lowering of the maximum), whatever governance did since.
    function invariant_breakGlassNeverReopens() public view {
        assertFalse(handler.breakGlassReopened(), "a closed session re-opened");
    }

    /// @notice No signature was accepted twice, on another chain id or by another contract.
    function invariant_noSignatureWorksTwiceOrElsewhere() public view {
        assertFalse(handler.replayAccepted(), "a used signature worked again");
        assertFalse(handler.foreignChainAccepted(), "a signature worked on another chain id");
        assertFalse(handler.otherContractAccepted(), "a signature worked on another registry");
    }
}
