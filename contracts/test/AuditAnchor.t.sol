// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {AuditAnchor} from "../AuditAnchor.sol";
import {IAuditAnchor} from "../interfaces/IAuditAnchor.sol";
import {CarechainFixture} from "./base/CarechainFixture.sol";
import {MerkleBuilder} from "./base/MerkleBuilder.sol";
import {Test} from "./base/Test.sol";

contract AuditAnchorTest is CarechainFixture {
    address internal gateway = address(0x6A7E);
    address internal otherGateway = address(0x6A7F);

    event GatewayRegistered(address indexed gateway);
    event GatewayRemoved(address indexed gateway);
    event AuditBatchAnchored(
        uint64 indexed batchId, address indexed gateway, uint64 fromSeq, uint64 toSeq, bytes32 root
    );

    function setUp() public override {
        super.setUp();
        vm.prank(governor);
        audit.registerGateway(gateway);
    }

    function _unauthorized(address caller) internal view returns (bytes memory) {
        return abi.encodeWithSelector(
            IAccessControl.AccessControlUnauthorizedAccount.selector, caller, audit.GOVERNOR_ROLE()
        );
    }

    function _range(uint64 expectedFrom, uint64 fromSeq, uint64 toSeq) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IAuditAnchor.AuditInvalidRange.selector, expectedFrom, fromSeq, toSeq);
    }

    function _root(uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("audit batch", i));
    }

    // ---- constructor ----

    function test_constructor_grantsGovernorRoles() public view {
        assertTrue(audit.hasRole(audit.GOVERNOR_ROLE(), governor));
        assertTrue(audit.hasRole(audit.DEFAULT_ADMIN_ROLE(), governor));
        assertEq(audit.nextSeq(gateway), 1, "ranges start at 1");
        assertEq(audit.batchCount(), 0);
    }

    function test_constructor_revertsOnZeroGovernor() public {
        vm.expectRevert(IAuditAnchor.AuditInvalidInput.selector);
        new AuditAnchor(address(0));
    }

    // ---- gateways ----

    function test_registerGateway_storesAndEmits() public {
        assertFalse(audit.isGateway(otherGateway));
        vm.expectEmit(address(audit));
        emit GatewayRegistered(otherGateway);
        vm.prank(governor);
        audit.registerGateway(otherGateway);
        assertTrue(audit.isGateway(otherGateway));
    }

    function test_registerGateway_reverts() public {
        vm.expectRevert(_unauthorized(gateway));
        vm.prank(gateway);
        audit.registerGateway(otherGateway);

        vm.startPrank(governor);
        vm.expectRevert(IAuditAnchor.AuditInvalidInput.selector);
        audit.registerGateway(address(0));
        vm.expectRevert(
            abi.encodeWithSelector(IAuditAnchor.AuditInvalidGatewayStatus.selector, gateway, true)
        );
        audit.registerGateway(gateway);
        vm.stopPrank();
    }

    function test_removeGateway_storesAndEmits() public {
        vm.expectEmit(address(audit));
        emit GatewayRemoved(gateway);
        vm.prank(governor);
        audit.removeGateway(gateway);
        assertFalse(audit.isGateway(gateway));

        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditUnauthorizedGateway.selector, gateway));
        vm.prank(gateway);
        audit.anchorBatch(1, 1, _root(1));
    }

    function test_removeGateway_reverts() public {
        vm.expectRevert(_unauthorized(stranger));
        vm.prank(stranger);
        audit.removeGateway(gateway);

        vm.expectRevert(
            abi.encodeWithSelector(IAuditAnchor.AuditInvalidGatewayStatus.selector, otherGateway, false)
        );
        vm.prank(governor);
        audit.removeGateway(otherGateway);
    }

    function test_removedGatewayMayBeRegisteredAgain() public {
        vm.startPrank(governor);
        audit.removeGateway(gateway);
        audit.registerGateway(gateway);
        vm.stopPrank();
        vm.prank(gateway);
        assertEq(audit.anchorBatch(1, 3, _root(1)), 1);
    }

    function test_governanceIsNotAGateway() public {
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditUnauthorizedGateway.selector, governor));
        vm.prank(governor);
        audit.anchorBatch(1, 1, _root(1));
    }

    // ---- anchorBatch ----

    function test_anchorBatch_firstBatchStoresAndEmits() public {
        vm.warp(START + 77);
        vm.expectEmit(address(audit));
        emit AuditBatchAnchored(1, gateway, 1, 100, _root(1));
        vm.prank(gateway);
        uint64 id = audit.anchorBatch(1, 100, _root(1));

        assertEq(id, 1, "batch ids start at 1");
        IAuditAnchor.Batch memory b = audit.batch(1);
        assertEq(b.fromSeq, 1, "fromSeq");
        assertEq(b.toSeq, 100, "toSeq");
        assertEq(b.anchoredAt, START + 77, "anchoredAt");
        assertEq(b.gateway, gateway, "gateway");
        assertEq(b.root, _root(1), "root");
        assertEq(audit.nextSeq(gateway), 101);
        assertEq(audit.batchCount(), 1);
    }

    function test_anchorBatch_eachGatewayHasItsOwnSequence() public {
        vm.prank(governor);
        audit.registerGateway(otherGateway);
        vm.prank(gateway);
        audit.anchorBatch(1, 10, _root(1));
        assertEq(audit.nextSeq(otherGateway), 1, "another gateway's log starts at 1");
        vm.expectEmit(address(audit));
        emit AuditBatchAnchored(2, otherGateway, 1, 1, _root(2));
        vm.prank(otherGateway);
        assertEq(audit.anchorBatch(1, 1, _root(2)), 2, "a one-row batch");
        vm.expectRevert(_range(11, 2, 40));
        vm.prank(gateway);
        audit.anchorBatch(2, 40, _root(3)); // the other gateway's next range is not this one's
        vm.prank(gateway);
        assertEq(audit.anchorBatch(11, 40, _root(3)), 3, "batch ids are shared");
        assertEq(audit.nextSeq(gateway), 41);
        assertEq(audit.nextSeq(otherGateway), 2);
        assertEq(audit.batch(2).gateway, otherGateway);
        assertEq(audit.batch(3).fromSeq, 11);
    }

    function test_anchorBatch_revertsForUnregisteredCaller() public {
        vm.expectRevert(abi.encodeWithSelector(IAuditAnchor.AuditUnauthorizedGateway.selector, stranger));
        vm.prank(stranger);
        audit.anchorBatch(1, 1, _root(1));
    }

    function test_anchorBatch_revertsOnZeroRoot() public {
        vm.expectRevert(IAuditAnchor.AuditInvalidInput.selector);
        vm.prank(gateway);
        audit.anchorBatch(1, 1, bytes32(0));
    }

    function test_anchorBatch_revertsOnRangesThatAreNotNext() public {
        vm.startPrank(gateway);
        vm.expectRevert(_range(1, 0, 5));
        audit.anchorBatch(0, 5, _root(1)); // sequence numbers start at 1
        vm.expectRevert(_range(1, 2, 5));
        audit.anchorBatch(2, 5, _root(1)); // gap before the first batch

        audit.anchorBatch(1, 5, _root(1));
        vm.expectRevert(_range(6, 5, 9));
        audit.anchorBatch(5, 9, _root(2)); // overlaps the last row
        vm.expectRevert(_range(6, 1, 5));
        audit.anchorBatch(1, 5, _root(2)); // the same range again
        vm.expectRevert(_range(6, 7, 9));
        audit.anchorBatch(7, 9, _root(2)); // gap
        vm.expectRevert(_range(6, 6, 5));
        audit.anchorBatch(6, 5, _root(2)); // empty (reversed) range
        vm.expectRevert(_range(6, 6, type(uint64).max));
        audit.anchorBatch(6, type(uint64).max, _root(2)); // would overflow nextSeq
        vm.stopPrank();
        assertEq(audit.nextSeq(gateway), 6, "failed calls change nothing");
        assertEq(audit.batchCount(), 1);
    }

    function test_anchorBatch_largestAllowedRange() public {
        vm.prank(gateway);
        audit.anchorBatch(1, type(uint64).max - 1, _root(1));
        assertEq(audit.nextSeq(gateway), type(uint64).max);
        vm.expectRevert(_range(type(uint64).max, type(uint64).max, type(uint64).max));
        vm.prank(gateway);
        audit.anchorBatch(type(uint64).max, type(uint64).max, _root(2));
    }

    function test_batch_unknownIdIsEmpty() public view {
        IAuditAnchor.Batch memory b = audit.batch(1);
        assertEq(b.root, bytes32(0));
        assertEq(b.gateway, address(0));
    }

    // ---- verifyInclusion ----

    function test_verifyInclusion_everyRowOfABatch() public {
        bytes32[] memory rows = new bytes32[](6);
        for (uint256 i = 0; i < rows.length; ++i) {
            rows[i] = keccak256(abi.encode("row hash", i + 1));
        }
        (bytes32 root,) = MerkleBuilder.build(rows, 0);
        vm.prank(gateway);
        uint64 id = audit.anchorBatch(1, 6, root);
        for (uint256 i = 0; i < rows.length; ++i) {
            (, bytes32[] memory proof) = MerkleBuilder.build(rows, i);
            assertTrue(audit.verifyInclusion(id, rows[i], proof), "row included");
            assertFalse(audit.verifyInclusion(id, rows[(i + 1) % rows.length], proof), "other row");
            assertFalse(audit.verifyInclusion(id + 1, rows[i], proof), "unknown batch");
            assertFalse(audit.verifyInclusion(0, rows[i], proof), "batch ids start at 1");
        }
    }

    function test_verifyInclusion_unknownBatchIsFalseEvenForAZeroTree() public view {
        // An unknown batch has a zero root; no value and proof may verify against it.
        bytes32[] memory proof = new bytes32[](0);
        assertFalse(audit.verifyInclusion(7, bytes32(0), proof));
    }

    // ---- fuzz ----

    /// @dev Any sequence of batch lengths anchors as contiguous ranges, each row of which can
    /// be found back in exactly one batch.
    function testFuzz_batchesTileTheSequence(uint16[8] memory lengths) public {
        uint64 from = 1;
        for (uint256 i = 0; i < lengths.length; ++i) {
            uint64 len = uint64(bound(lengths[i], 1, 5000));
            vm.prank(gateway);
            uint64 id = audit.anchorBatch(from, from + len - 1, _root(i));
            assertEq(id, i + 1, "batch id");
            from += len;
        }
        assertEq(audit.nextSeq(gateway), from, "nextSeq after the last batch");
        for (uint64 id = 1; id <= audit.batchCount(); ++id) {
            IAuditAnchor.Batch memory b = audit.batch(id);
            uint64 expectedFrom = id == 1 ? 1 : audit.batch(id - 1).toSeq + 1; // one gateway
            assertEq(b.fromSeq, expectedFrom, "contiguous");
        }
    }

    /// @dev Only the one start right after the last anchored row is ever accepted.
    function testFuzz_rejectsEveryOtherStart(uint64 firstLen, uint64 fromSeq, uint64 toSeq) public {
        firstLen = uint64(bound(firstLen, 1, 1000));
        vm.prank(gateway);
        audit.anchorBatch(1, firstLen, _root(1));
        uint64 expectedFrom = firstLen + 1;
        vm.assume(fromSeq != expectedFrom);
        vm.expectRevert(_range(expectedFrom, fromSeq, toSeq));
        vm.prank(gateway);
        audit.anchorBatch(fromSeq, toSeq, _root(2));
    }
}

/// @dev Invariant campaign: the fuzzer drives `AuditHandler`, a registered gateway that sends
/// both well-formed and arbitrary ranges; whatever it does, the anchored ranges tile [1, nextSeq).
contract AuditAnchorInvariantTest is CarechainFixture {
    AuditHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new AuditHandler(audit);
        vm.prank(governor);
        audit.registerGateway(address(handler));
        targetContract(address(handler));
    }

    function invariant_rangesStayContiguousFromOne() public view {
        uint64 count = audit.batchCount();
        uint64 expectedFrom = 1;
        for (uint64 id = 1; id <= count; ++id) {
            IAuditAnchor.Batch memory b = audit.batch(id);
            assertEq(b.fromSeq, expectedFrom, "batch starts right after the previous one");
            assertGe(b.toSeq, b.fromSeq, "batch is not empty");
            assertTrue(b.root != bytes32(0), "batch has a root");
            expectedFrom = b.toSeq + 1;
        }
        assertEq(audit.nextSeq(address(handler)), expectedFrom, "nextSeq follows the last batch");
    }

    function invariant_everyAcceptedBatchIsCounted() public view {
        assertEq(audit.batchCount(), handler.accepted(), "batch count");
        assertEq(audit.nextSeq(address(handler)), handler.lastTo() + 1, "nextSeq");
    }
}

/// @dev Invariant handler: a registered gateway that tries both well-formed next ranges and
/// arbitrary ones, and counts the ones the contract accepted.
contract AuditHandler is Test {
    AuditAnchor internal immutable AUDIT;
    uint256 public accepted;
    uint64 public lastTo;

    constructor(AuditAnchor audit_) {
        AUDIT = audit_;
    }

    function anchorNext(uint64 length, bytes32 root) external {
        uint64 from = AUDIT.nextSeq(address(this));
        length = uint64(bound(length, 1, 10_000));
        _try(from, from + length - 1, root);
    }

    function anchorAnything(uint64 fromSeq, uint64 toSeq, bytes32 root) external {
        _try(fromSeq, toSeq, root);
    }

    function anchorOverlapping(uint64 back, uint64 length) external {
        uint64 next = AUDIT.nextSeq(address(this));
        uint64 from = uint64(bound(back, 0, next - 1));
        _try(from, from + uint64(bound(length, 0, 100)), keccak256(abi.encode(back, length)));
    }

    function _try(uint64 fromSeq, uint64 toSeq, bytes32 root) private {
        try AUDIT.anchorBatch(fromSeq, toSeq, root) returns (uint64) {
            ++accepted;
            lastTo = toSeq;
        } catch {}
    }
}
