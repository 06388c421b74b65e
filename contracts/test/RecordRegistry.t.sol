// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IMembershipMirror} from "../interfaces/IMembershipMirror.sol";
import {IProviderRegistry} from "../interfaces/IProviderRegistry.sol";
import {IRecordRegistry} from "../interfaces/IRecordRegistry.sol";
import {ProviderRegistry} from "../ProviderRegistry.sol";
import {RecordRegistry} from "../RecordRegistry.sol";
import {CarechainFixture} from "./base/CarechainFixture.sol";
import {MerkleBuilder} from "./base/MerkleBuilder.sol";
import {Test} from "./base/Test.sol";

contract RecordRegistryTest is CarechainFixture {
    bytes32 internal constant VERSION = keccak256("Observation/1/_history/1");
    bytes32 internal constant OTHER_VERSION = keccak256("Observation/1/_history/2");

    address internal clinic = address(0x1004);
    address internal locum = address(0xD004);

    event RecordAnchored(address indexed org, bytes32 indexed versionHash, address anchorer);
    event RecordBatchAnchored(address indexed org, bytes32 indexed root, uint32 count, address anchorer);

    function _unauthorized(address caller) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IRecordRegistry.RecordUnauthorizedAnchorer.selector, caller);
    }

    /// @dev `count` distinct values derived from `seed`, so fuzzed trees differ run to run.
    function _values(uint256 seed, uint256 count) internal pure returns (bytes32[] memory values) {
        values = new bytes32[](count);
        for (uint256 i = 0; i < count; ++i) {
            values[i] = keccak256(abi.encode(seed, i));
        }
    }

    /// @dev Distinct member-key addresses for tests that need many keys.
    function _extraKey(uint256 i) internal pure returns (address) {
        // Tests pass small indexes only, so the sum always fits in 160 bits.
        // forge-lint: disable-next-line(unsafe-typecast)
        return address(uint160(0x100000 + i));
    }

    function _anchorByDoctor(bytes32 hash) internal {
        vm.prank(doctor);
        records.anchor(hash);
    }

    function _assertCanAnchor(address key, address org) internal {
        assertEq(records.anchoringOrganisationOf(key), org, "anchoring organisation");
        bytes32 hash = keccak256(abi.encode("probe", key, vm.getBlockNumber(), gasleft()));
        vm.prank(key);
        records.anchor(hash);
        assertTrue(records.verifyAnchor(hash, org), "probe anchored for the organisation");
    }

    function _assertCannotAnchor(address key) internal {
        assertEq(records.anchoringOrganisationOf(key), address(0), "no anchoring organisation");
        vm.expectRevert(_unauthorized(key));
        vm.prank(key);
        records.anchor(keccak256(abi.encode("denied", key)));
        vm.expectRevert(_unauthorized(key));
        vm.prank(key);
        records.anchorBatch(keccak256(abi.encode("denied batch", key)), 2);
    }

    // ---- constructor ----

    function test_constructor_followsTheRegistry() public view {
        assertEq(address(records.REGISTRY()), address(providers));
        assertEq(records.MAX_ACTIVE_KEYS_PER_ORG(), 1000);
    }

    function test_constructor_revertsOnZeroRegistry() public {
        vm.expectRevert(IRecordRegistry.RecordInvalidInput.selector);
        new RecordRegistry(IProviderRegistry(address(0)));
    }

    // ---- anchor ----

    function test_anchor_storesAndEmits() public {
        vm.warp(START + 123);
        vm.expectEmit(address(records));
        emit RecordAnchored(hospital, VERSION, doctor);
        _anchorByDoctor(VERSION);

        IRecordRegistry.Anchor memory a = records.anchorOf(VERSION, hospital);
        assertEq(a.org, hospital, "org");
        assertEq(a.anchoredAt, START + 123, "anchoredAt");
        assertTrue(records.verifyAnchor(VERSION, hospital), "verifies for the custodian");
        assertFalse(records.verifyAnchor(VERSION, lab), "not for another organisation");
        assertFalse(records.verifyAnchor(OTHER_VERSION, hospital), "not another version");
    }

    function test_anchor_revertsOnZeroHash() public {
        vm.expectRevert(IRecordRegistry.RecordInvalidInput.selector);
        _anchorByDoctor(bytes32(0));
    }

    function test_anchor_revertsWhenTheOrganisationAnchoredItAlready() public {
        _anchorByDoctor(VERSION);
        // Another member of the same organisation.
        vm.expectRevert(abi.encodeWithSelector(IRecordRegistry.RecordAlreadyAnchored.selector, VERSION));
        vm.prank(nurse);
        records.anchor(VERSION);
        assertEq(records.anchorOf(VERSION, hospital).anchoredAt, START, "the first anchor stands");
    }

    function test_anchor_anotherOrganisationCannotPreemptTheCustodian() public {
        // A lab member who learns the hospital's version hash (from the mempool) anchors it first.
        vm.prank(labTech);
        records.anchor(VERSION);
        assertFalse(
            records.verifyAnchor(VERSION, hospital), "the lab's anchor does not speak for the hospital"
        );

        // The custodian can still anchor its own record, and each anchor speaks only for its own.
        vm.warp(START + 5);
        _anchorByDoctor(VERSION);
        assertTrue(records.verifyAnchor(VERSION, hospital), "hospital");
        assertTrue(records.verifyAnchor(VERSION, lab), "lab");
        assertEq(records.anchorOf(VERSION, hospital).anchoredAt, START + 5, "hospital's own time");
        assertEq(records.anchorOf(VERSION, lab).anchoredAt, START, "lab's own time");
        assertEq(records.anchorOf(VERSION, stranger).org, address(0), "none for others");
    }

    function test_anchor_revertsForNonMembers() public {
        _assertCannotAnchor(stranger);
        // An organisation address identifies the organisation; it is not a member key.
        _assertCannotAnchor(hospital);
        _assertCannotAnchor(governor);
    }

    function test_anchor_unauthorizedIsCheckedBeforeDuplicates() public {
        _anchorByDoctor(VERSION);
        vm.expectRevert(_unauthorized(stranger));
        vm.prank(stranger);
        records.anchor(VERSION);
    }

    // ---- anchorBatch ----

    function test_anchorBatch_storesAndEmits() public {
        bytes32[] memory values = _values(1, 7);
        (bytes32 root,) = MerkleBuilder.build(values, 0);
        vm.warp(START + 60);
        vm.expectEmit(address(records));
        emit RecordBatchAnchored(lab, root, 7, labTech);
        vm.prank(labTech);
        records.anchorBatch(root, 7);

        IRecordRegistry.BatchAnchor memory b = records.batchOf(root, lab);
        assertEq(b.org, lab, "org");
        assertEq(b.anchoredAt, START + 60, "anchoredAt");
        assertEq(b.count, 7, "count");
    }

    function test_anchorBatch_revertsOnZeroRootOrCount() public {
        vm.startPrank(doctor);
        vm.expectRevert(IRecordRegistry.RecordInvalidInput.selector);
        records.anchorBatch(bytes32(0), 3);
        vm.expectRevert(IRecordRegistry.RecordInvalidInput.selector);
        records.anchorBatch(VERSION, 0);
        vm.stopPrank();
    }

    function test_anchorBatch_revertsWhenTheOrganisationAnchoredItAlready() public {
        vm.prank(doctor);
        records.anchorBatch(VERSION, 2);
        vm.expectRevert(abi.encodeWithSelector(IRecordRegistry.RecordAlreadyAnchored.selector, VERSION));
        vm.prank(nurse);
        records.anchorBatch(VERSION, 5);
        assertEq(records.batchOf(VERSION, hospital).count, 2, "the first batch stands");
    }

    function test_anchorBatch_anotherOrganisationCannotPreemptTheCustodian() public {
        vm.prank(labTech);
        records.anchorBatch(VERSION, 5);
        vm.prank(doctor);
        records.anchorBatch(VERSION, 2);
        assertEq(records.batchOf(VERSION, hospital).count, 2, "hospital");
        assertEq(records.batchOf(VERSION, lab).count, 5, "lab");
    }

    function test_singleAndBatchAnchorsAreSeparate() public {
        // The same 32 bytes may be a version hash and, elsewhere, a batch root.
        _anchorByDoctor(VERSION);
        vm.prank(labTech);
        records.anchorBatch(VERSION, 1);
        assertEq(records.anchorOf(VERSION, hospital).org, hospital);
        assertEq(records.batchOf(VERSION, lab).org, lab);
    }

    // ---- Merkle inclusion ----

    function test_merkleBuilder_matchesTheDocumentedRuleByHand() public pure {
        bytes32[] memory values = _values(42, 3);
        bytes32 l0 = keccak256(abi.encodePacked(keccak256(abi.encodePacked(values[0]))));
        bytes32 l1 = keccak256(abi.encodePacked(keccak256(abi.encodePacked(values[1]))));
        bytes32 l2 = keccak256(abi.encodePacked(keccak256(abi.encodePacked(values[2]))));
        bytes32 n01 = l0 < l1 ? keccak256(abi.encodePacked(l0, l1)) : keccak256(abi.encodePacked(l1, l0));
        // The third leaf has no sibling on the first level: it is carried up unchanged.
        bytes32 expected =
            n01 < l2 ? keccak256(abi.encodePacked(n01, l2)) : keccak256(abi.encodePacked(l2, n01));
        (bytes32 root, bytes32[] memory proof) = MerkleBuilder.build(values, 2);
        assertEq(root, expected, "root");
        assertEq(proof.length, 1, "carried-up leaf skips a level");
        assertEq(proof[0], n01, "proof of the odd leaf");
    }

    function test_verifyInclusion_everyLeafOfAnOddTree() public {
        bytes32[] memory values = _values(5, 5);
        (bytes32 root,) = MerkleBuilder.build(values, 0);
        vm.prank(doctor);
        records.anchorBatch(root, 5);
        for (uint256 i = 0; i < values.length; ++i) {
            (, bytes32[] memory proof) = MerkleBuilder.build(values, i);
            assertTrue(records.verifyInclusion(values[i], root, proof, hospital), "leaf included");
            assertFalse(records.verifyInclusion(values[i], root, proof, lab), "wrong organisation");
            assertFalse(records.verifyInclusion(values[i], root, proof, address(0)), "zero organisation");
            assertFalse(
                records.verifyInclusion(values[(i + 1) % 5], root, proof, hospital), "proof of another leaf"
            );
        }
    }

    function test_verifyInclusion_singleLeafBatchHasAnEmptyProof() public {
        bytes32[] memory values = _values(9, 1);
        (bytes32 root, bytes32[] memory proof) = MerkleBuilder.build(values, 0);
        assertEq(proof.length, 0);
        assertEq(root, MerkleBuilder.leafOf(values[0]));
        vm.prank(doctor);
        records.anchorBatch(root, 1);
        assertTrue(records.verifyInclusion(values[0], root, proof, hospital));
    }

    function test_verifyInclusion_falseForUnanchoredRoot() public view {
        bytes32[] memory values = _values(3, 4);
        (bytes32 root, bytes32[] memory proof) = MerkleBuilder.build(values, 1);
        assertFalse(records.verifyInclusion(values[1], root, proof, hospital));
        // An unknown root has org zero; asking for org zero must not turn that into a yes.
        assertFalse(records.verifyInclusion(values[1], root, proof, address(0)));
    }

    function test_verifyInclusion_rejectsAnInnerNodeAsAValue() public {
        bytes32[] memory values = _values(11, 4);
        (bytes32 root, bytes32[] memory proof) = MerkleBuilder.build(values, 0);
        vm.prank(doctor);
        records.anchorBatch(root, 4);
        // proof[1] is the inner node over leaves 2 and 3; presenting it as a value with the
        // remaining path must fail because values are hashed twice into leaves.
        bytes32[] memory shortProof = new bytes32[](1);
        shortProof[0] =
            MerkleBuilder.parentOf(MerkleBuilder.leafOf(values[0]), MerkleBuilder.leafOf(values[1]));
        assertFalse(records.verifyInclusion(proof[1], root, shortProof, hospital));
    }

    function test_verifyAnchor_falseForZeroOrganisation() public view {
        // An unanchored hash has org zero in storage.
        assertFalse(records.verifyAnchor(VERSION, address(0)));
    }

    // ---- membership mirror ----

    function test_mirror_callbacksOnlyFromTheRegistry() public {
        vm.expectRevert(
            abi.encodeWithSelector(IMembershipMirror.MirrorUnauthorizedRegistry.selector, stranger)
        );
        vm.prank(stranger);
        records.onMemberStatusChanged(stranger, hospital, true);
        vm.expectRevert(
            abi.encodeWithSelector(IMembershipMirror.MirrorUnauthorizedRegistry.selector, governor)
        );
        vm.prank(governor);
        records.onOrganisationStatusChanged(hospital, false);
        assertEq(records.anchoringOrganisationOf(stranger), address(0));
        _assertCanAnchor(doctor, hospital);
    }

    function test_mirror_registryPushesAreApplied() public {
        vm.prank(address(providers));
        records.onMemberStatusChanged(doctor, hospital, false);
        assertEq(records.anchoringOrganisationOf(doctor), address(0));
    }

    function test_mirror_initialMembersCanAnchor() public {
        _assertCanAnchor(doctor, hospital);
        _assertCanAnchor(nurse, hospital);
        _assertCanAnchor(labTech, lab);
        assertEq(records.activeKeysOf(hospital).length, 2);
        assertEq(records.activeKeysOf(lab).length, 1);
    }

    function test_mirror_suspendedKeyCannotAnchorUntilReinstated() public {
        vm.prank(hospital);
        providers.suspendMember(doctor);
        _assertCannotAnchor(doctor);
        _assertCanAnchor(nurse, hospital);
        assertEq(records.activeKeysOf(hospital).length, 1);

        vm.prank(hospital);
        providers.reinstateMember(doctor);
        _assertCanAnchor(doctor, hospital);
    }

    function test_mirror_suspendedOrganisationBlocksAllItsKeys() public {
        vm.prank(governor);
        providers.suspendOrganisation(hospital);
        _assertCannotAnchor(doctor);
        _assertCannotAnchor(nurse);
        _assertCanAnchor(labTech, lab);

        vm.prank(governor);
        providers.reinstateOrganisation(hospital);
        _assertCanAnchor(doctor, hospital);
        _assertCanAnchor(nurse, hospital);
    }

    function test_mirror_keySuspendedDuringOrgSuspensionStaysBlockedAfterReinstatement() public {
        vm.startPrank(governor);
        providers.suspendOrganisation(hospital);
        providers.suspendMember(doctor);
        providers.reinstateOrganisation(hospital);
        vm.stopPrank();
        _assertCannotAnchor(doctor);
        _assertCanAnchor(nurse, hospital);
    }

    function test_mirror_keyAddedToSuspendedOrganisationWaitsForReinstatement() public {
        vm.startPrank(governor);
        providers.suspendOrganisation(hospital);
        providers.addMember(hospital, locum, IProviderRegistry.MemberRole.Practitioner);
        vm.stopPrank();
        _assertCannotAnchor(locum);

        vm.prank(governor);
        providers.reinstateOrganisation(hospital);
        _assertCanAnchor(locum, hospital);
    }

    function test_mirror_keyReinstatedWhileOrganisationSuspendedIsStillBlocked() public {
        vm.startPrank(governor);
        providers.suspendMember(doctor);
        providers.suspendOrganisation(hospital);
        providers.reinstateMember(doctor);
        vm.stopPrank();
        _assertCannotAnchor(doctor);
        vm.prank(governor);
        providers.reinstateOrganisation(hospital);
        _assertCanAnchor(doctor, hospital);
    }

    function test_mirror_retiredKeyCannotAnchor() public {
        vm.prank(hospital);
        providers.retireMember(nurse);
        _assertCannotAnchor(nurse);
        address[] memory keys = records.activeKeysOf(hospital);
        assertEq(keys.length, 1);
        assertEq(keys[0], doctor, "swap-and-pop kept the other key");
    }

    function test_mirror_rotationMovesTheRightToAnchor() public {
        vm.prank(doctor);
        providers.rotateMemberKey(doctor, locum);
        _assertCannotAnchor(doctor);
        _assertCanAnchor(locum, hospital);
        assertEq(records.activeKeysOf(hospital).length, 2);
    }

    function test_mirror_rotatedSuspendedKeyStaysSuspended() public {
        vm.startPrank(hospital);
        providers.suspendMember(doctor);
        providers.rotateMemberKey(doctor, locum);
        vm.stopPrank();
        _assertCannotAnchor(doctor);
        _assertCannotAnchor(locum);
    }

    function test_mirror_newOrganisationAndKey() public {
        vm.prank(governor);
        providers.admitOrganisation(clinic, IProviderRegistry.OrgKind.Clinic, "Riverside Clinic");
        vm.prank(clinic);
        providers.addMember(clinic, locum, IProviderRegistry.MemberRole.Service);
        _assertCanAnchor(locum, clinic);
    }

    function test_mirror_removingTheFirstOfManyKeysKeepsIndexesRight() public {
        address third = address(0xD005);
        vm.startPrank(hospital);
        providers.addMember(hospital, third, IProviderRegistry.MemberRole.Practitioner);
        providers.retireMember(doctor); // index 0: the last key moves into its place
        providers.suspendMember(third); // must remove `third` from its new index
        vm.stopPrank();
        address[] memory keys = records.activeKeysOf(hospital);
        assertEq(keys.length, 1);
        assertEq(keys[0], nurse);
        // Suspending the organisation must still reach the remaining key.
        vm.prank(governor);
        providers.suspendOrganisation(hospital);
        _assertCannotAnchor(nurse);
    }

    function test_mirror_keyLimitPerOrganisation() public {
        uint256 limit = records.MAX_ACTIVE_KEYS_PER_ORG();
        vm.startPrank(governor);
        for (uint256 i = 2; i < limit; ++i) {
            providers.addMember(hospital, _extraKey(i), IProviderRegistry.MemberRole.Service);
        }
        assertEq(records.activeKeysOf(hospital).length, limit);
        vm.expectRevert(abi.encodeWithSelector(RecordRegistry.RecordTooManyKeys.selector, hospital));
        providers.addMember(hospital, locum, IProviderRegistry.MemberRole.Service);

        // Retiring one frees a place; suspending the full organisation reaches every key.
        providers.retireMember(_extraKey(500));
        providers.addMember(hospital, locum, IProviderRegistry.MemberRole.Service);
        providers.suspendOrganisation(hospital);
        vm.stopPrank();
        assertEq(records.anchoringOrganisationOf(_extraKey(limit - 1)), address(0));
        assertEq(records.anchoringOrganisationOf(locum), address(0));
        assertEq(records.anchoringOrganisationOf(doctor), address(0));
    }

    // ---- syncMembership ----

    function test_syncMembership_revertsUntilWired() public {
        ProviderRegistry fresh = new ProviderRegistry(governor);
        RecordRegistry mirror = new RecordRegistry(fresh);
        address[] memory accounts = new address[](0);
        vm.expectRevert(IMembershipMirror.MirrorNotWired.selector);
        mirror.syncMembership(accounts);
    }

    function test_syncMembership_copiesMembersAdmittedBeforeWiring() public {
        ProviderRegistry fresh = new ProviderRegistry(governor);
        vm.startPrank(governor);
        fresh.admitOrganisation(hospital, IProviderRegistry.OrgKind.Hospital, "h");
        fresh.admitOrganisation(lab, IProviderRegistry.OrgKind.Lab, "l");
        fresh.addMember(hospital, doctor, IProviderRegistry.MemberRole.Practitioner);
        fresh.addMember(hospital, nurse, IProviderRegistry.MemberRole.Practitioner);
        fresh.addMember(lab, labTech, IProviderRegistry.MemberRole.Service);
        fresh.suspendMember(nurse);
        fresh.suspendOrganisation(lab);
        RecordRegistry mirror = new RecordRegistry(fresh);
        fresh.setMembershipMirror(mirror);
        vm.stopPrank();
        assertEq(mirror.anchoringOrganisationOf(doctor), address(0), "nothing copied yet");

        // Keys before their organisations: the organisation sync reaches keys already copied.
        address[] memory accounts = new address[](5);
        accounts[0] = doctor;
        accounts[1] = nurse;
        accounts[2] = labTech;
        accounts[3] = hospital;
        accounts[4] = lab;
        vm.prank(stranger); // anyone may sync: it only copies the registry
        mirror.syncMembership(accounts);
        assertEq(mirror.anchoringOrganisationOf(doctor), hospital, "active key of active org");
        assertEq(mirror.anchoringOrganisationOf(nurse), address(0), "suspended key");
        assertEq(mirror.anchoringOrganisationOf(labTech), address(0), "key of suspended org");

        // Replaying is harmless.
        mirror.syncMembership(accounts);
        assertEq(mirror.activeKeysOf(hospital).length, 1);
        assertEq(mirror.activeKeysOf(lab).length, 1);

        // From now on the pushes keep it current.
        vm.prank(governor);
        fresh.reinstateOrganisation(lab);
        assertEq(mirror.anchoringOrganisationOf(labTech), lab);
    }

    function test_syncMembership_ignoresUnknownAccounts() public {
        address[] memory accounts = new address[](2);
        accounts[0] = stranger;
        accounts[1] = address(0);
        records.syncMembership(accounts);
        assertEq(records.anchoringOrganisationOf(stranger), address(0));
        _assertCanAnchor(doctor, hospital);
    }

    // ---- fuzz ----

    /// @dev Any tree size and any leaf: the proof from the reference builder verifies on chain,
    /// and a tampered proof, another value or another organisation do not.
    function testFuzz_inclusionProofsOfRandomTrees(uint256 seed, uint256 size, uint256 index, uint256 flip)
        public
    {
        size = bound(size, 1, 70);
        index = bound(index, 0, size - 1);
        bytes32[] memory values = _values(seed, size);
        (bytes32 root, bytes32[] memory proof) = MerkleBuilder.build(values, index);
        vm.prank(doctor);
        // forge-lint: disable-next-line(unsafe-typecast)
        records.anchorBatch(root, uint32(size)); // size is bounded to 70 above

        assertTrue(records.verifyInclusion(values[index], root, proof, hospital), "included");
        assertFalse(records.verifyInclusion(values[index], root, proof, lab), "other org");
        assertFalse(
            records.verifyInclusion(keccak256(abi.encode(seed, size)), root, proof, hospital), "other"
        );
        if (proof.length > 0) {
            uint256 at = bound(flip, 0, proof.length - 1);
            proof[at] = proof[at] ^ bytes32(uint256(1) << (flip % 256));
            assertFalse(records.verifyInclusion(values[index], root, proof, hospital), "tampered proof");
        }
    }

    /// @dev After any sequence of membership changes the mirror answers exactly as the registry
    /// does, so anchoring is allowed if and only if the registry says the key is active.
    function testFuzz_mirrorAgreesWithRegistry(uint8[24] memory ops) public {
        address[3] memory keys = [doctor, nurse, locum];
        vm.prank(governor);
        providers.addMember(hospital, locum, IProviderRegistry.MemberRole.Practitioner);
        vm.startPrank(governor);
        for (uint256 i = 0; i < ops.length; ++i) {
            address key = keys[ops[i] % 3];
            uint256 op = (ops[i] / 3) % 5;
            IProviderRegistry.Status keyStatus = providers.member(key).status;
            IProviderRegistry.Status orgStatus = providers.organisation(hospital).status;
            if (op == 0 && keyStatus == IProviderRegistry.Status.Active) providers.suspendMember(key);
            if (op == 1 && keyStatus == IProviderRegistry.Status.Suspended) providers.reinstateMember(key);
            if (op == 2 && orgStatus == IProviderRegistry.Status.Active) {
                providers.suspendOrganisation(hospital);
            }
            if (op == 3 && orgStatus == IProviderRegistry.Status.Suspended) {
                providers.reinstateOrganisation(hospital);
            }
            if (op == 4 && keyStatus != IProviderRegistry.Status.Retired) {
                address fresh = _extraKey(0x10000 + i);
                providers.rotateMemberKey(key, fresh);
                keys[ops[i] % 3] = fresh;
            }
            for (uint256 k = 0; k < 3; ++k) {
                (address expected,) = providers.activeOrganisationOf(keys[k]);
                assertEq(records.anchoringOrganisationOf(keys[k]), expected, "mirror matches registry");
            }
            (address oldDoctorOrg,) = providers.activeOrganisationOf(doctor);
            assertEq(records.anchoringOrganisationOf(doctor), oldDoctorOrg, "rotated-away key");
        }
        vm.stopPrank();
    }
}

/// @dev Invariant campaign: the fuzzer drives `MembershipHandler`, which holds the governance
/// role and changes keys and organisations in any order; the mirror must always answer as the
/// registry does.
contract RecordRegistryInvariantTest is CarechainFixture {
    MembershipHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new MembershipHandler(providers);
        bytes32 role = providers.GOVERNOR_ROLE();
        vm.prank(governor);
        providers.grantRole(role, address(handler));
        handler.track(hospital, doctor);
        handler.track(hospital, nurse);
        handler.track(lab, labTech);
        targetContract(address(handler));
        // Only the membership changes: `track` and the getters are set-up and reading helpers.
        bytes4[] memory selectors = new bytes4[](7);
        selectors[0] = MembershipHandler.addKey.selector;
        selectors[1] = MembershipHandler.suspendKey.selector;
        selectors[2] = MembershipHandler.reinstateKey.selector;
        selectors[3] = MembershipHandler.retireKey.selector;
        selectors[4] = MembershipHandler.rotateKey.selector;
        selectors[5] = MembershipHandler.suspendOrganisation.selector;
        selectors[6] = MembershipHandler.reinstateOrganisation.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// @dev A key may anchor (and for which organisation) exactly when the registry says it and
    /// its organisation are active.
    function invariant_mirrorAnswersAsTheRegistry() public view {
        uint256 n = handler.keyCount();
        for (uint256 i = 0; i < n; ++i) {
            address key = handler.keyAt(i);
            (address expected,) = providers.activeOrganisationOf(key);
            assertEq(records.anchoringOrganisationOf(key), expected, "anchoring organisation");
        }
    }

    /// @dev The mirror's active-key list of an organisation is exactly its active keys, so an
    /// organisation suspension reaches every one of them.
    function invariant_activeKeyListsAreExact() public view {
        address[2] memory orgs = [hospital, lab];
        for (uint256 o = 0; o < orgs.length; ++o) {
            address[] memory listed = records.activeKeysOf(orgs[o]);
            for (uint256 j = 0; j < listed.length; ++j) {
                IProviderRegistry.Member memory m = providers.member(listed[j]);
                assertEq(m.org, orgs[o], "listed under its organisation");
                assertTrue(m.status == IProviderRegistry.Status.Active, "listed key is active");
            }
            uint256 active = 0;
            uint256 n = handler.keyCount();
            for (uint256 i = 0; i < n; ++i) {
                IProviderRegistry.Member memory m = providers.member(handler.keyAt(i));
                if (m.org == orgs[o] && m.status == IProviderRegistry.Status.Active) ++active;
            }
            assertEq(listed.length, active, "every active key is listed once");
        }
    }
}

/// @dev Governance-side driver for the membership invariants; every call picks its target from
/// the organisations and keys it knows and does nothing when the transition does not apply.
contract MembershipHandler is Test {
    ProviderRegistry internal immutable PROVIDERS;
    address[] internal _orgs;
    address[] internal _keys;
    uint160 internal _nextKey = 0xF0000;

    constructor(ProviderRegistry providers_) {
        PROVIDERS = providers_;
    }

    function track(address org, address key) external {
        if (_orgs.length == 0 || _orgs[_orgs.length - 1] != org) _orgs.push(org);
        _keys.push(key);
    }

    function keyCount() external view returns (uint256) {
        return _keys.length;
    }

    function keyAt(uint256 i) external view returns (address) {
        return _keys[i];
    }

    function addKey(uint256 orgIndex) external {
        address key = address(++_nextKey);
        PROVIDERS.addMember(_orgs[orgIndex % _orgs.length], key, IProviderRegistry.MemberRole.Practitioner);
        _keys.push(key);
    }

    function suspendKey(uint256 keyIndex) external {
        address key = _keys[keyIndex % _keys.length];
        if (PROVIDERS.member(key).status == IProviderRegistry.Status.Active) PROVIDERS.suspendMember(key);
    }

    function reinstateKey(uint256 keyIndex) external {
        address key = _keys[keyIndex % _keys.length];
        if (PROVIDERS.member(key).status == IProviderRegistry.Status.Suspended) {
            PROVIDERS.reinstateMember(key);
        }
    }

    function retireKey(uint256 keyIndex) external {
        address key = _keys[keyIndex % _keys.length];
        if (PROVIDERS.member(key).status != IProviderRegistry.Status.Retired) PROVIDERS.retireMember(key);
    }

    function rotateKey(uint256 keyIndex) external {
        address key = _keys[keyIndex % _keys.length];
        if (PROVIDERS.member(key).status == IProviderRegistry.Status.Retired) return;
        address fresh = address(++_nextKey);
        PROVIDERS.rotateMemberKey(key, fresh);
        _keys.push(fresh);
    }

    function suspendOrganisation(uint256 orgIndex) external {
        address org = _orgs[orgIndex % _orgs.length];
        if (PROVIDERS.organisation(org).status == IProviderRegistry.Status.Active) {
            PROVIDERS.suspendOrganisation(org);
        }
    }

    function reinstateOrganisation(uint256 orgIndex) external {
        address org = _orgs[orgIndex % _orgs.length];
        if (PROVIDERS.organisation(org).status == IProviderRegistry.Status.Suspended) {
            PROVIDERS.reinstateOrganisation(org);
        }
    }
}
