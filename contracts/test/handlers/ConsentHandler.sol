// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ConsentRegistry} from "../../ConsentRegistry.sol";
import {IConsentRegistry} from "../../interfaces/IConsentRegistry.sol";
import {IProviderRegistry} from "../../interfaces/IProviderRegistry.sol";
import {ProviderRegistry} from "../../ProviderRegistry.sol";
import {ConsentTypedData} from "../base/ConsentTypedData.sol";
import {Test} from "../base/Test.sol";

/// @title ConsentHandler
/// @notice The invariant fuzzer's only target: it drives the ConsentRegistry through the consent
/// state machine (direct and signed grants and revocations, nonce cancellation, delegates,
/// break-glass, governance and provider suspensions, time) with a small fixed cast, and keeps a
/// ghost model of what the registry should hold. Every action is attempted as chosen by the fuzzer
/// and may legitimately fail; the ghost state only follows calls that succeeded.
///
/// It also tries, on purpose, what must never work: replaying a used signature, a signature made
/// for another chain id or submitted after the chain id changed, and a signature for one registry
/// submitted to another. Any success raises a flag the invariants check.
contract ConsentHandler is Test {
    /// @dev Ghost copy of a stored consent.
    struct ModelConsent {
        bool exists;
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
        uint40 validFrom;
        uint40 validUntil;
        /// @dev Ghost id of the delegation it was granted under; 0 for the patient's own.
        uint256 grantedUnder;
    }

    /// @dev Ghost copy of a delegation: kind, end and the handler's own id for it, kept by the
    /// documented rule (a new id unless an unexpired delegation is re-set with the same kind and
    /// scope), independently of the registry's ids.
    struct ModelDelegation {
        IConsentRegistry.DelegateKind kind;
        uint40 validUntil;
        uint256 id;
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
    }

    /// @dev A signature that was accepted once, kept to be replayed.
    struct UsedSignature {
        bool isGrant;
        IConsentRegistry.Grant args;
        address signer;
        bytes signature;
    }

    ConsentRegistry public immutable consents;
    ConsentRegistry public immutable otherRegistry;
    ProviderRegistry public immutable providers;
    address public immutable governor;

    address[] public patients;
    address[] public keys;
    address[] public orgs;
    address[] public grantees;
    address[] public delegateCandidates;
    mapping(address account => uint256 pk) internal _pkOf;

    mapping(address patient => mapping(address grantee => ModelConsent)) internal _model;
    mapping(address patient => uint256) public ghostNonce;
    mapping(address patient => uint256) internal _lastSeenNonce;
    mapping(uint64 id => uint32) public maxAtOpen;
    mapping(uint64 id => uint32) public durationAtOpen;
    UsedSignature[] internal _used;

    mapping(address patient => mapping(address delegate => ModelDelegation)) internal _delegations;
    /// @notice When the ghost delegation with this id ends: 0 once removed or replaced.
    mapping(uint256 id => uint40) public ghostDelegationEnd;
    uint256 internal _lastGhostDelegationId;
    /// @dev Sessions seen not open after a step: they must never be open again.
    mapping(uint64 id => bool) internal _seenClosed;

    uint256 public ghostNow;
    /// @notice Steps taken so far; the invariants rotate their most expensive checks on it.
    uint256 public steps;
    bool public nonceDecreased;
    bool public replayAccepted;
    bool public foreignChainAccepted;
    bool public otherContractAccepted;
    bool public caregiverChangedConsent;
    bool public selfGrantAccepted;
    bool public proxyExceededScope;
    bool public breakGlassReopened;

    /// @notice How often each kind of action succeeded, to see that a run did something.
    mapping(bytes32 action => uint256) public successes;

    uint64[4] internal _typeChoices = [uint64(1) << 1, uint64(0x6), uint64(0x3fff), uint64(1)];
    uint8[4] internal _actionChoices = [uint8(0x12), uint8(0x1f), uint8(0x1), uint8(0x8)];
    uint16[4] internal _purposeChoices = [uint16(0x1), uint16(0x2), uint16(0x3ff), uint16(0x10)];

    constructor(
        ConsentRegistry consents_,
        ConsentRegistry otherRegistry_,
        ProviderRegistry providers_,
        address governor_,
        uint256[] memory patientPks,
        uint256 delegatePk,
        address[] memory keys_,
        address[] memory orgs_,
        uint256 startTime
    ) {
        consents = consents_;
        otherRegistry = otherRegistry_;
        providers = providers_;
        governor = governor_;
        ghostNow = startTime;
        for (uint256 i = 0; i < patientPks.length; ++i) {
            address p = vm.addr(patientPks[i]);
            patients.push(p);
            _pkOf[p] = patientPks[i];
        }
        address d = vm.addr(delegatePk);
        _pkOf[d] = delegatePk;
        delegateCandidates.push(d);
        for (uint256 i = 0; i < keys_.length; ++i) {
            keys.push(keys_[i]);
            grantees.push(keys_[i]);
            // Member keys may be guardians too: that is how a suspended key could sneak in.
            delegateCandidates.push(keys_[i]);
        }
        for (uint256 i = 0; i < orgs_.length; ++i) {
            orgs.push(orgs_[i]);
            grantees.push(orgs_[i]);
        }
    }

    modifier step() {
        vm.warp(ghostNow);
        ++steps;
        _;
        for (uint256 i = 0; i < patients.length; ++i) {
            uint256 n = consents.nonces(patients[i]);
            if (n < _lastSeenNonce[patients[i]]) nonceDecreased = true;
            _lastSeenNonce[patients[i]] = n;
            for (uint256 o = 0; o < orgs.length; ++o) {
                uint64 id = consents.breakGlassOf(patients[i], orgs[o]).id;
                if (id == 0) continue;
                bool open = consents.isBreakGlassOpen(patients[i], orgs[o]);
                if (open && _seenClosed[id]) breakGlassReopened = true;
                if (!open) _seenClosed[id] = true;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Views for the invariants
    // ------------------------------------------------------------------------------------------

    function patientCount() external view returns (uint256) {
        return patients.length;
    }

    function keyCount() external view returns (uint256) {
        return keys.length;
    }

    function orgCount() external view returns (uint256) {
        return orgs.length;
    }

    function granteeCount() external view returns (uint256) {
        return grantees.length;
    }

    function modelOf(address patient, address grantee) external view returns (ModelConsent memory) {
        return _model[patient][grantee];
    }

    // ------------------------------------------------------------------------------------------
    // Consent
    // ------------------------------------------------------------------------------------------

    function grant(
        uint256 actorSeed,
        uint256 patientSeed,
        uint256 granteeSeed,
        uint256 scopeSeed,
        uint256 periodSeed
    ) external step {
        address patient = _pick(patients, patientSeed);
        address actor = actorSeed % 3 == 0 ? _pick(delegateCandidates, actorSeed / 3) : patient;
        IConsentRegistry.Grant memory g =
            _buildGrant(patient, _pick(grantees, granteeSeed), scopeSeed, periodSeed);
        // Delegates' grants are kept inside their delegation's end half of the time, so both the
        // accepted and the refused paths are exercised.
        if (actor != patient && periodSeed & 2 == 0) {
            uint40 end = _delegations[patient][actor].validUntil;
            if (end > block.timestamp && g.validUntil > end) {
                g.validFrom = 0;
                g.validUntil = end;
            }
        }
        vm.prank(actor);
        try consents.grant(
            g.patient,
            g.grantee,
            g.resourceTypes,
            g.actions,
            g.purposes,
            g.validFrom,
            g.validUntil,
            g.consentHash
        ) {
            _recordGrantBy(g, actor);
            if (actor == patient) ++successes["grant"];
            else ++successes["grantByDelegate"];
        } catch {}
    }

    function revoke(uint256 actorSeed, uint256 patientSeed, uint256 granteeSeed) external step {
        address patient = _pick(patients, patientSeed);
        address actor = actorSeed % 3 == 0 ? _pick(delegateCandidates, actorSeed / 3) : patient;
        address grantee = _pick(grantees, granteeSeed);
        vm.prank(actor);
        try consents.revoke(patient, grantee) {
            _checkChangedBy(patient, actor, grantee);
            delete _model[patient][grantee];
            ++successes["revoke"];
        } catch {}
    }

    function grantBySig(
        uint256 signerSeed,
        uint256 patientSeed,
        uint256 granteeSeed,
        uint256 scopeSeed,
        uint256 periodSeed
    ) external step {
        address patient = _pick(patients, patientSeed);
        address signer = signerSeed % 3 == 0 ? delegateCandidates[0] : patient;
        IConsentRegistry.Grant memory g =
            _buildGrant(patient, _pick(grantees, granteeSeed), scopeSeed, periodSeed);
        g.nonce = consents.nonces(patient);
        bytes memory signature = _signGrant(signer, g, g.nonce, address(consents), block.chainid);
        if (_submitGrant(consents, g, signer, signature)) {
            _recordGrantBy(g, signer);
            ++ghostNonce[patient];
            _used.push(UsedSignature(true, g, signer, signature));
            ++successes["grantBySig"];
        }
    }

    function revokeBySig(uint256 signerSeed, uint256 patientSeed, uint256 granteeSeed) external step {
        address patient = _pick(patients, patientSeed);
        address signer = signerSeed % 3 == 0 ? delegateCandidates[0] : patient;
        IConsentRegistry.Grant memory g;
        g.patient = patient;
        g.grantee = _pick(grantees, granteeSeed);
        g.deadline = block.timestamp + 1 hours;
        g.nonce = consents.nonces(patient);
        bytes memory signature = _sign(
            signer,
            ConsentTypedData.revokeDigest(
                patient, g.grantee, g.nonce, g.deadline, address(consents), block.chainid
            )
        );
        if (_submitRevoke(consents, g, signer, signature)) {
            _checkChangedBy(patient, signer, g.grantee);
            delete _model[patient][g.grantee];
            ++ghostNonce[patient];
            _used.push(UsedSignature(false, g, signer, signature));
            ++successes["revokeBySig"];
        }
    }

    function invalidateNonces(uint256 patientSeed, uint256 increase) external step {
        address patient = _pick(patients, patientSeed);
        uint256 newNonce = consents.nonces(patient) + bound(increase, 1, 1000);
        vm.prank(patient);
        try consents.invalidateNonces(patient, newNonce) {
            ghostNonce[patient] = newNonce;
            ++successes["invalidateNonces"];
        } catch {}
    }

    // ------------------------------------------------------------------------------------------
    // What must never work
    // ------------------------------------------------------------------------------------------

    function replayUsedSignature(uint256 index) external step {
        if (_used.length == 0) return;
        UsedSignature memory u = _used[index % _used.length];
        bool accepted = u.isGrant
            ? _submitGrant(consents, u.args, u.signer, u.signature)
            : _submitRevoke(consents, u.args, u.signer, u.signature);
        if (accepted) replayAccepted = true;
        ++successes["replayAttempted"];
    }

    function submitOnAnotherChain(
        uint256 patientSeed,
        uint256 granteeSeed,
        uint64 otherChainId,
        bool forkAfterSigning
    ) external step {
        uint256 home = block.chainid;
        if (otherChainId == home || otherChainId == 0) return;
        address patient = _pick(patients, patientSeed);
        IConsentRegistry.Grant memory g =
            _buildGrant(patient, _pick(grantees, granteeSeed), granteeSeed, patientSeed);
        uint256 nonce = consents.nonces(patient);
        g.nonce = nonce;
        bool accepted;
        if (forkAfterSigning) {
            // Signed for this chain, submitted after the chain id changed (a fork or replay elsewhere).
            bytes memory signature = _signGrant(patient, g, nonce, address(consents), home);
            vm.chainId(otherChainId);
            accepted = _submitGrant(consents, g, patient, signature);
            vm.chainId(home);
        } else {
            bytes memory signature = _signGrant(patient, g, nonce, address(consents), otherChainId);
            accepted = _submitGrant(consents, g, patient, signature);
        }
        if (accepted) foreignChainAccepted = true;
        ++successes["foreignChainAttempted"];
    }

    function submitToTheOtherRegistry(uint256 patientSeed, uint256 granteeSeed, bool toOther) external step {
        address patient = _pick(patients, patientSeed);
        IConsentRegistry.Grant memory g =
            _buildGrant(patient, _pick(grantees, granteeSeed), granteeSeed, patientSeed);
        // Signed for one registry at that registry's nonce, submitted to the other one.
        ConsentRegistry signedFor = toOther ? consents : otherRegistry;
        ConsentRegistry submittedTo = toOther ? otherRegistry : consents;
        g.nonce = signedFor.nonces(patient);
        bytes memory signature = _signGrant(patient, g, g.nonce, address(signedFor), block.chainid);
        if (_submitGrant(submittedTo, g, patient, signature)) otherContractAccepted = true;
        ++successes["otherContractAttempted"];
    }

    // ------------------------------------------------------------------------------------------
    // Delegates
    // ------------------------------------------------------------------------------------------

    function setDelegate(uint256 patientSeed, uint256 delegateSeed, uint256 kindSeed, uint256 duration)
        external
        step
    {
        address patient = _pick(patients, patientSeed);
        address d = _pick(delegateCandidates, delegateSeed);
        // casting to 'uint40' is safe because the handler's clock stays far below 2**40.
        // forge-lint: disable-next-line(unsafe-typecast)
        uint40 validUntil = uint40(block.timestamp + bound(duration, 1, 3 days));
        ModelDelegation memory next;
        next.validUntil = validUntil;
        vm.prank(patient);
        if (kindSeed % 3 == 2) {
            next.kind = IConsentRegistry.DelegateKind.Proxy;
            next.resourceTypes = _typeChoices[(kindSeed >> 8) % 4];
            next.actions = _actionChoices[(kindSeed >> 16) % 4];
            next.purposes = _purposeChoices[(kindSeed >> 24) % 4];
            try consents.setProxy(d, validUntil, next.resourceTypes, next.actions, next.purposes) {
                _recordDelegation(patient, d, next);
                ++successes["setProxy"];
            } catch {}
        } else {
            next.kind = IConsentRegistry.DelegateKind(1 + kindSeed % 2);
            try consents.setDelegate(d, next.kind, validUntil) {
                _recordDelegation(patient, d, next);
                ++successes["setDelegate"];
            } catch {}
        }
    }

    function removeDelegate(uint256 patientSeed, uint256 delegateSeed) external step {
        address patient = _pick(patients, patientSeed);
        address d = _pick(delegateCandidates, delegateSeed);
        vm.prank(patient);
        try consents.removeDelegate(d) {
            delete ghostDelegationEnd[_delegations[patient][d].id];
            delete _delegations[patient][d];
            ++successes["removeDelegate"];
        } catch {}
    }

    // ------------------------------------------------------------------------------------------
    // Break-glass and governance
    // ------------------------------------------------------------------------------------------

    function openBreakGlass(uint256 keySeed, uint256 patientSeed, uint256 reasonSeed, uint256 duration)
        external
        step
    {
        address key = _pick(keys, keySeed);
        uint32 maxNow = consents.maxBreakGlassDuration();
        uint32 d = uint32(bound(duration, 0, uint256(maxNow) + 1 hours));
        vm.prank(key);
        try consents.openBreakGlass(
            _pick(patients, patientSeed), IConsentRegistry.BreakGlassReason(reasonSeed % 5), d
        ) returns (
            uint64 id
        ) {
            maxAtOpen[id] = maxNow;
            durationAtOpen[id] = d;
            ++successes["openBreakGlass"];
        } catch {}
    }

    function closeBreakGlass(uint256 keySeed, uint256 patientSeed) external step {
        vm.prank(_pick(keys, keySeed));
        try consents.closeBreakGlass(_pick(patients, patientSeed)) {
            ++successes["closeBreakGlass"];
        } catch {}
    }

    function setMaxBreakGlassDuration(uint256 maxDuration) external step {
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(uint32(bound(maxDuration, 0, 2 days)));
        ++successes["setMax"];
    }

    function toggleOrganisation(uint256 orgSeed) external step {
        address org = _pick(orgs, orgSeed);
        bool active = providers.organisation(org).status == IProviderRegistry.Status.Active;
        // The prank is taken after the status read, which would otherwise consume it.
        vm.prank(governor);
        if (active) {
            providers.suspendOrganisation(org);
        } else {
            providers.reinstateOrganisation(org);
        }
        ++successes["toggleOrganisation"];
    }

    function toggleKey(uint256 keySeed) external step {
        address key = _pick(keys, keySeed);
        bool active = providers.member(key).status == IProviderRegistry.Status.Active;
        vm.prank(governor);
        if (active) {
            providers.suspendMember(key);
        } else {
            providers.reinstateMember(key);
        }
        ++successes["toggleKey"];
    }

    function warp(uint256 seconds_) external step {
        ghostNow += bound(seconds_, 1, 1 days);
        vm.warp(ghostNow);
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    function _pick(address[] storage list, uint256 seed) internal view returns (address) {
        return list[seed % list.length];
    }

    function _buildGrant(address patient, address grantee, uint256 scopeSeed, uint256 periodSeed)
        internal
        view
        returns (IConsentRegistry.Grant memory g)
    {
        g.patient = patient;
        g.grantee = grantee;
        g.resourceTypes = _typeChoices[scopeSeed % 4];
        g.actions = _actionChoices[(scopeSeed >> 8) % 4];
        g.purposes = _purposeChoices[(scopeSeed >> 16) % 4];
        // Half start now, half later; every period is one second to three days long.
        uint256 from = (periodSeed & 1) == 0 ? 0 : block.timestamp + ((periodSeed >> 8) % 2 days);
        uint256 base = from == 0 ? block.timestamp : from;
        // casting to 'uint40' is safe because the handler's clock starts at 1.7e9 and moves at most
        // a day per step, and periods are at most five days past it: far below 2**40.
        // forge-lint: disable-next-line(unsafe-typecast)
        g.validFrom = uint40(from);
        // forge-lint: disable-next-line(unsafe-typecast)
        g.validUntil = uint40(base + 1 + ((periodSeed >> 32) % 3 days));
        g.consentHash = keccak256(abi.encode(scopeSeed, periodSeed));
        g.deadline = block.timestamp + 1 hours;
    }

    /// @dev Records an accepted grant, and flags what must never have been accepted: a change by
    /// a Caregiver, a grant by a delegate to itself, its organisation or a key of it, a Proxy's
    /// grant beyond its scope.
    function _recordGrantBy(IConsentRegistry.Grant memory g, address actor) internal {
        uint256 under;
        if (actor != g.patient) {
            ModelDelegation memory d = _delegations[g.patient][actor];
            _checkChangedBy(g.patient, actor, g.grantee);
            address org = providers.member(actor).org;
            if (
                g.grantee == actor
                    || (org != address(0) && (g.grantee == org || providers.member(g.grantee).org == org))
            ) selfGrantAccepted = true;
            if (
                d.kind == IConsentRegistry.DelegateKind.Proxy
                    && (g.resourceTypes & ~d.resourceTypes != 0
                        || g.actions & ~d.actions != 0
                        || g.purposes & ~d.purposes != 0)
            ) proxyExceededScope = true;
            under = d.id;
        }
        _model[g.patient][g.grantee] =
            ModelConsent(true, g.resourceTypes, g.actions, g.purposes, g.validFrom, g.validUntil, under);
    }

    /// @dev Flags a consent change by an actor that the ghost model says may not change consent.
    function _checkChangedBy(address patient, address actor, address) internal {
        if (actor == patient) return;
        ModelDelegation memory d = _delegations[patient][actor];
        if (d.kind == IConsentRegistry.DelegateKind.Caregiver || d.kind == IConsentRegistry.DelegateKind.None)
        {
            caregiverChangedConsent = true;
        }
    }

    function _recordDelegation(address patient, address d, ModelDelegation memory next) internal {
        ModelDelegation storage prev = _delegations[patient][d];
        bool same = prev.kind == next.kind && prev.validUntil > block.timestamp
            && prev.resourceTypes == next.resourceTypes && prev.actions == next.actions
            && prev.purposes == next.purposes;
        if (same) {
            next.id = prev.id;
        } else {
            delete ghostDelegationEnd[prev.id];
            next.id = ++_lastGhostDelegationId;
        }
        _delegations[patient][d] = next;
        ghostDelegationEnd[next.id] = next.validUntil;
    }

    function _sign(address signer, bytes32 digest) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(_pkOf[signer], digest);
        return abi.encodePacked(r, s, v);
    }

    function _signGrant(
        address signer,
        IConsentRegistry.Grant memory g,
        uint256 nonce,
        address registry,
        uint256 chainId
    ) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(_pkOf[signer], ConsentTypedData.grantDigest(g, nonce, registry, chainId));
        return abi.encodePacked(r, s, v);
    }

    function _submitGrant(
        ConsentRegistry registry,
        IConsentRegistry.Grant memory g,
        address signer,
        bytes memory signature
    ) internal returns (bool) {
        try registry.grantBySig(g, signer, signature) {
            return true;
        } catch {
            return false;
        }
    }

    function _submitRevoke(
        ConsentRegistry registry,
        IConsentRegistry.Grant memory g,
        address signer,
        bytes memory signature
    ) internal returns (bool) {
        try registry.revokeBySig(g.patient, g.grantee, g.nonce, g.deadline, signer, signature) {
            return true;
        } catch {
            return false;
        }
    }
}
