// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "./Vm.sol";

/// @title Test
/// @notice The project's small test base: the cheatcode handle, assertions that revert with a
/// readable message (a reverting test fails), `bound` for fuzz inputs, and the invariant-target
/// hooks forge looks up by name (`targetContracts`, `targetSelectors`, `targetSenders`).
abstract contract Test {
    /// @dev Invariant target: a contract and the selectors the fuzzer may call on it.
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    address[] private _targetContracts;
    FuzzSelector[] private _targetSelectors;
    address[] private _targetSenders;

    // ------------------------------------------------------------------------------------------
    // Invariant targets, read by forge through these getters
    // ------------------------------------------------------------------------------------------

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetSelectors;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetSenders;
    }

    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function targetSelector(FuzzSelector memory selector) internal {
        _targetSelectors.push(selector);
    }

    function targetSender(address sender) internal {
        _targetSenders.push(sender);
    }

    // ------------------------------------------------------------------------------------------
    // Assertions
    // ------------------------------------------------------------------------------------------

    function fail(string memory message) internal pure {
        revert(string.concat("assertion failed: ", message));
    }

    function assertTrue(bool condition, string memory message) internal pure {
        if (!condition) fail(message);
    }

    function assertTrue(bool condition) internal pure {
        assertTrue(condition, "expected true");
    }

    function assertFalse(bool condition, string memory message) internal pure {
        if (condition) fail(message);
    }

    function assertFalse(bool condition) internal pure {
        assertFalse(condition, "expected false");
    }

    function assertEq(uint256 left, uint256 right, string memory message) internal pure {
        if (left != right) {
            fail(string.concat(message, ": ", vm.toString(left), " != ", vm.toString(right)));
        }
    }

    function assertEq(uint256 left, uint256 right) internal pure {
        assertEq(left, right, "uint256 differ");
    }

    function assertEq(address left, address right, string memory message) internal pure {
        if (left != right) {
            fail(string.concat(message, ": ", vm.toString(left), " != ", vm.toString(right)));
        }
    }

    function assertEq(address left, address right) internal pure {
        assertEq(left, right, "address differ");
    }

    function assertEq(bytes32 left, bytes32 right, string memory message) internal pure {
        if (left != right) {
            fail(string.concat(message, ": ", vm.toString(left), " != ", vm.toString(right)));
        }
    }

    function assertEq(bytes32 left, bytes32 right) internal pure {
        assertEq(left, right, "bytes32 differ");
    }

    function assertEq(bool left, bool right, string memory message) internal pure {
        if (left != right) fail(string.concat(message, left ? ": true != false" : ": false != true"));
    }

    function assertEq(bool left, bool right) internal pure {
        assertEq(left, right, "bool differ");
    }

    function assertEq(string memory left, string memory right, string memory message) internal pure {
        if (keccak256(bytes(left)) != keccak256(bytes(right))) {
            fail(string.concat(message, ": \"", left, "\" != \"", right, "\""));
        }
    }

    function assertEq(string memory left, string memory right) internal pure {
        assertEq(left, right, "string differ");
    }

    function assertLe(uint256 left, uint256 right, string memory message) internal pure {
        if (left > right) fail(string.concat(message, ": ", vm.toString(left), " > ", vm.toString(right)));
    }

    function assertGe(uint256 left, uint256 right, string memory message) internal pure {
        if (left < right) fail(string.concat(message, ": ", vm.toString(left), " < ", vm.toString(right)));
    }

    // ------------------------------------------------------------------------------------------
    // Fuzz helpers
    // ------------------------------------------------------------------------------------------

    /// @dev Maps any `x` into `[min, max]`, leaving values already inside unchanged so that
    /// the fuzzer's edge-case dictionary still reaches the bounds.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min;
        // `size + 1` overflows only for the full range, where every x is already inside.
        unchecked {
            return min + (x % (size + 1));
        }
    }
}
