// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ConsentRegistry} from "../ConsentRegistry.sol";
import {IConsentRegistry} from "../interfaces/IConsentRegistry.sol";
import {FhirCodes} from "../libraries/FhirCodes.sol";
import {ConsentFixture} from "./base/ConsentFixture.sol";

/// @notice Fuzz tests of the packed consent (bitmaps and validity period), of `decide` against a
/// small reference model, and of the signature path (keys, nonces, chain id, deployment, encoding).
contract ConsentRegistryFuzzTest is ConsentFixture {
    /// @dev Last second a `uint40` timestamp can hold.
    uint256 internal constant MAX_TIME = type(uint40).max;

    function _validScope(uint64 rt, uint8 a, uint16 p) internal pure returns (uint64, uint8, uint16) {
        return (
            uint64(bound(rt, 1, FhirCodes.ALL_RESOURCE_TYPES)),
            uint8(bound(a, 1, FhirCodes.ALL_ACTIONS)),
            uint16(bound(p, 1, FhirCodes.ALL_PURPOSES))
        );
    }

    // ---- bitmaps ----

    function testFuzz_grant_storesAnyValidScopeAndPeriod(
        uint64 rt,
        uint8 a,
        uint16 p,
        uint40 validFrom,
        uint40 validUntil,
        bytes32 consentHash
    ) public {
        (rt, a, p) = _validScope(rt, a, p);
        validUntil = uint40(bound(validUntil, uint256(START) + 1, MAX_TIME));
        validFrom = uint40(bound(validFrom, 0, uint256(validUntil) - 1));

        vm.expectEmit(address(consents));
        emit IConsentRegistry.ConsentGranted(
            patient, doctor, patient, rt, a, p, validFrom, validUntil, consentHash
        );
        vm.prank(patient);
        consents.grant(patient, doctor, rt, a, p, validFrom, validUntil, consentHash);

        IConsentRegistry.Consent memory c = consents.consentOf(patient, doctor);
        assertEq(c.resourceTypes, rt, "resourceTypes");
        assertEq(c.actions, a, "actions");
        assertEq(c.purposes, p, "purposes");
        assertEq(c.validFrom, validFrom, "validFrom");
        assertEq(c.validUntil, validUntil, "validUntil");
    }

    function testFuzz_grant_rejectsBitsOutsideTheTables(uint64 rt, uint8 a, uint16 p) public {
        bool valid = rt != 0 && rt & ~FhirCodes.ALL_RESOURCE_TYPES == 0 && a != 0
            && a & ~FhirCodes.ALL_ACTIONS == 0 && p != 0 && p & ~FhirCodes.ALL_PURPOSES == 0;
        vm.assume(!valid);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidScope.selector, rt, a, p));
        vm.prank(patient);
        consents.grant(patient, doctor, rt, a, p, 0, START + 1 days, CONSENT_HASH);
    }

    function testFuzz_grant_rejectsEmptyOrPastPeriods(uint40 validFrom, uint40 validUntil, uint40 nowTs)
        public
    {
        nowTs = uint40(bound(nowTs, 1, MAX_TIME));
        vm.assume(validUntil <= nowTs || validUntil <= validFrom);
        vm.warp(nowTs);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentInvalidPeriod.selector, validFrom, validUntil)
        );
        vm.prank(patient);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, validFrom, validUntil, CONSENT_HASH);
    }

    /// @dev `decide` against a model written from the documented rule: the first bit that is
    /// missing, in the order resource type, action, purpose, names the denial.
    function testFuzz_decide_matchesTheBitmapModel(
        uint64 rt,
        uint8 a,
        uint16 p,
        uint8 typeIndex,
        uint8 actionIndex,
        uint8 purposeIndex,
        bool toOrganisation
    ) public {
        (rt, a, p) = _validScope(rt, a, p);
        typeIndex = uint8(bound(typeIndex, 0, FhirCodes.RESOURCE_TYPE_COUNT - 1));
        actionIndex = uint8(bound(actionIndex, 0, FhirCodes.ACTION_COUNT - 1));
        purposeIndex = uint8(bound(purposeIndex, 0, FhirCodes.PURPOSE_COUNT - 1));
        _grantAs(patient, patient, toOrganisation ? hospital : doctor, rt, a, p);

        IConsentRegistry.Basis expected;
        if ((rt >> typeIndex) & 1 == 0) expected = IConsentRegistry.Basis.ResourceTypeNotCovered;
        else if ((a >> actionIndex) & 1 == 0) expected = IConsentRegistry.Basis.ActionNotCovered;
        else if ((p >> purposeIndex) & 1 == 0) expected = IConsentRegistry.Basis.PurposeNotCovered;
        else if (toOrganisation) expected = IConsentRegistry.Basis.OrganisationConsent;
        else expected = IConsentRegistry.Basis.MemberConsent;

        (bool allowed, IConsentRegistry.Basis basis, uint40 until) =
            consents.decide(patient, doctor, typeIndex, actionIndex, purposeIndex);
        _assertDecision(allowed, basis, _isAllowedBasis(expected), expected, "bitmap model");
        // A scope denial never changes by time alone; an allowance holds until the consent ends.
        assertEq(until, allowed ? uint256(block.timestamp) + 365 days : type(uint40).max, "until");
    }

    function testFuzz_decide_indexOutsideTheTablesIsInvalid(
        uint8 typeIndex,
        uint8 actionIndex,
        uint8 purposeIndex
    ) public {
        vm.assume(
            typeIndex >= FhirCodes.RESOURCE_TYPE_COUNT || actionIndex >= FhirCodes.ACTION_COUNT
                || purposeIndex >= FhirCodes.PURPOSE_COUNT
        );
        _grantAs(patient, patient, doctor, FhirCodes.ALL_RESOURCE_TYPES, ALL_ACTIONS, FhirCodes.ALL_PURPOSES);
        (bool allowed, IConsentRegistry.Basis basis,) =
            consents.decide(patient, doctor, typeIndex, actionIndex, purposeIndex);
        _assertDecision(allowed, basis, false, IConsentRegistry.Basis.InvalidRequest, "outside the tables");
    }

    // ---- periods ----

    function testFuzz_decide_matchesThePeriodModel(uint40 validFrom, uint40 validUntil, uint40 at) public {
        validUntil = uint40(bound(validUntil, uint256(START) + 1, MAX_TIME));
        validFrom = uint40(bound(validFrom, 0, uint256(validUntil) - 1));
        at = uint40(bound(at, START, MAX_TIME));
        vm.prank(patient);
        consents.grant(patient, doctor, OBSERVATION, READ_SEARCH, TREAT, validFrom, validUntil, CONSENT_HASH);
        vm.warp(at);

        IConsentRegistry.Basis expected = at >= validUntil
            ? IConsentRegistry.Basis.ConsentExpired
            : at < validFrom
                ? IConsentRegistry.Basis.ConsentNotYetValid
                : IConsentRegistry.Basis.MemberConsent;
        (bool allowed, IConsentRegistry.Basis basis) = _readObservation(doctor);
        _assertDecision(
            allowed, basis, expected == IConsentRegistry.Basis.MemberConsent, expected, "period model"
        );
    }

    function testFuzz_delegate_isActiveExactlyBeforeItsExpiry(uint40 validUntil, uint40 at) public {
        validUntil = uint40(bound(validUntil, uint256(START) + 1, MAX_TIME));
        at = uint40(bound(at, START, MAX_TIME));
        vm.prank(patient);
        consents.setDelegate(delegate, IConsentRegistry.DelegateKind.Caregiver, validUntil);
        vm.warp(at);
        assertEq(consents.isActiveDelegate(patient, delegate), at < validUntil, "active before validUntil");
        (bool allowed,) = _readObservation(delegate);
        assertEq(allowed, at < validUntil, "reads only while active");
    }

    function testFuzz_breakGlass_neverOutlivesItsMaximum(
        uint32 maxDuration,
        uint32 duration,
        uint32 newMax,
        uint40 at
    ) public {
        maxDuration = uint32(bound(maxDuration, 1, 365 days));
        duration = uint32(bound(duration, 1, maxDuration));
        newMax = uint32(bound(newMax, 0, 365 days));
        at = uint40(bound(at, START, uint256(START) + 2 * 365 days));
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(maxDuration);
        vm.prank(doctor);
        consents.openBreakGlass(patient, IConsentRegistry.BreakGlassReason.PatientUnconscious, duration);
        vm.prank(governor);
        consents.setMaxBreakGlassDuration(newMax);
        vm.warp(at);

        bool open = consents.isBreakGlassOpen(patient, hospital);
        assertEq(
            open,
            at < uint256(START) + duration && at < uint256(START) + newMax,
            "open iff inside both bounds"
        );
        (bool allowed, IConsentRegistry.Basis basis,) =
            consents.decide(patient, nurse, 0, FhirCodes.ACTION_READ, FhirCodes.PURPOSE_ETREAT);
        assertEq(allowed, open, "decide agrees");
        if (allowed) assertEq(uint256(basis), uint256(IConsentRegistry.Basis.BreakGlass), "basis");
    }

    // ---- signatures ----

    function testFuzz_grantBySig_anyKeyOnceAndOnlyOnce(
        uint256 pk,
        address submitter,
        uint64 rt,
        uint8 a,
        uint16 p
    ) public {
        pk = bound(pk, 1, SECP256K1_N - 1);
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        g.patient = vm.addr(pk);
        (g.resourceTypes, g.actions, g.purposes) = _validScope(rt, a, p);
        bytes memory signature = _sign(pk, _grantDigest(g));

        vm.prank(submitter);
        _grantBySig(g, g.patient, signature);
        assertEq(consents.nonces(g.patient), 1, "nonce used");
        assertEq(consents.consentOf(g.patient, doctor).resourceTypes, g.resourceTypes, "stored");

        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonce.selector, g.patient, 1));
        vm.prank(submitter);
        _grantBySig(g, g.patient, signature);
    }

    function testFuzz_grantBySig_rejectsAnyOtherNonce(uint256 current, uint256 signedNonce) public {
        current = bound(current, 0, 2 ** 64);
        vm.assume(signedNonce != current);
        if (current != 0) {
            vm.prank(patient);
            consents.invalidateNonces(patient, current);
        }
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        g.nonce = signedNonce;
        bytes memory signature = _sign(PATIENT_PK, _grantDigest(g));
        vm.expectRevert(
            abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonce.selector, patient, current)
        );
        _grantBySig(g, patient, signature);
        // Submitted with the current nonce instead, it signed something else.
        g.nonce = current;
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        _grantBySig(g, patient, signature);
    }

    function testFuzz_grantBySig_rejectsAnyOtherChainId(uint64 otherChainId) public {
        uint256 home = block.chainid;
        vm.assume(otherChainId != home && otherChainId != 0);
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        bytes memory foreign = _sign(PATIENT_PK, _grantDigestFor(g, 0, address(consents), otherChainId));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        _grantBySig(g, patient, foreign);

        bytes memory signature = _sign(PATIENT_PK, _grantDigest(g));
        vm.chainId(otherChainId);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        _grantBySig(g, patient, signature);
        // The foreign one works on its own chain: the rejections above were about the domain only.
        _grantBySig(g, patient, foreign);
        vm.chainId(home);
    }

    function testFuzz_revokeBySig_rejectsAnyOtherChainId(uint64 otherChainId) public {
        vm.assume(otherChainId != block.chainid && otherChainId != 0);
        _grantDefault(doctor);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _sign(
            PATIENT_PK, _revokeDigestFor(patient, doctor, 0, deadline, address(consents), otherChainId)
        );
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        consents.revokeBySig(patient, doctor, 0, deadline, patient, signature);
    }

    function testFuzz_bySig_rejectsAnotherDeployment(bytes32 salt) public {
        ConsentRegistry other = new ConsentRegistry{salt: salt}(providers, governor, MAX_BREAK_GLASS);
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        bytes memory forOther = _sign(PATIENT_PK, _grantDigestFor(g, 0, address(other), block.chainid));
        bytes memory forThis = _sign(PATIENT_PK, _grantDigest(g));

        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        _grantBySigOn(other, g, patient, forThis);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        _grantBySig(g, patient, forOther);

        _grantBySigOn(other, g, patient, forOther);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory revokeHere = _sign(PATIENT_PK, _revokeDigest(patient, doctor, deadline));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        other.revokeBySig(patient, doctor, 1, deadline, patient, revokeHere);
    }

    function testFuzz_grantBySig_rejectsTheHighSTwin(uint256 pk, bytes32 consentHash) public {
        pk = bound(pk, 1, SECP256K1_N - 1);
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        g.patient = vm.addr(pk);
        g.consentHash = consentHash;
        bytes memory signature = _sign(pk, _grantDigest(g));
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, g.patient));
        _grantBySig(g, g.patient, _highS(signature));
        _grantBySig(g, g.patient, signature);
    }

    function testFuzz_grantBySig_rejectsArbitraryBytes(bytes memory signature) public {
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        vm.expectRevert(abi.encodeWithSelector(IConsentRegistry.ConsentInvalidSignature.selector, patient));
        _grantBySig(g, patient, signature);
    }

    /// @dev `grantBySig` hashes its first ten argument words straight from calldata. That is
    /// only sound if a word with dirty high bits never reaches the hash (it would hash one value
    /// and store another): the ABI decoder must refuse it first.
    function testFuzz_grantBySig_rejectsDirtyArgumentWords(uint256 wordIndex, uint256 dirt) public {
        IConsentRegistry.Grant memory g = _grantArgs(doctor);
        bytes memory signature = _sign(PATIENT_PK, _grantDigest(g));
        bytes memory data = abi.encodeCall(ConsentRegistry.grantBySig, (g, patient, signature));
        // Words 0-6 are narrower than 256 bits (consentHash, word 7, is a full bytes32).
        wordIndex = bound(wordIndex, 0, 6);
        uint16[7] memory widths = [uint16(160), 160, 64, 8, 16, 40, 40];
        uint256 bits = widths[wordIndex];
        dirt = bound(dirt, 1, type(uint256).max >> bits) << bits;
        uint256 offset = 4 + 32 * wordIndex;
        uint256 word;
        assembly ("memory-safe") {
            word := mload(add(add(data, 0x20), offset))
            mstore(add(add(data, 0x20), offset), or(word, dirt))
        }
        (bool ok, bytes memory returned) = address(consents).call(data);
        assertFalse(ok, "dirty word accepted");
        // The decoder's own revert carries no data; `ConsentInvalidSignature` would mean the dirty
        // word got as far as the hash.
        assertEq(returned.length, 0, "rejected by the ABI decoder, before the signature check");
        assertEq(consents.nonces(patient), 0, "nothing consumed");
    }

    // ---- nonces ----

    function testFuzz_invalidateNonces_onlyMovesForwardWithinTheStep(uint256 first, uint256 second) public {
        first = bound(first, 1, 2 ** 64);
        vm.prank(patient);
        consents.invalidateNonces(patient, first);
        bool ok = second > first && second - first <= 2 ** 64;
        if (!ok) {
            vm.expectRevert(
                abi.encodeWithSelector(IConsentRegistry.ConsentInvalidNonceIncrease.selector, first, second)
            );
        }
        vm.prank(patient);
        consents.invalidateNonces(patient, second);
        assertEq(consents.nonces(patient), ok ? second : first, "nonce");
    }
}
