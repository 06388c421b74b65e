// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title SymbolicVm
/// @notice The symbolic-value cheatcodes of Halmos that this project's symbolic tests use, and only
/// those, declared from Halmos' documentation. Halmos answers them at
/// `address(uint160(uint256(keccak256("svm cheat code"))))`; under forge they do not exist, so
/// only Halmos runs the `check_` functions that call them.
interface SymbolicVm {
    /// @notice A fresh symbolic unsigned integer of `bits` bits.
    function createUint(uint256 bits, string calldata name) external returns (uint256 value);
    /// @notice A fresh symbolic address.
    function createAddress(string calldata name) external returns (address value);
    /// @notice Fresh symbolic bytes of length `length`.
    function createBytes(uint256 length, string calldata name) external returns (bytes memory value);
    /// @notice Symbolic calldata for any external function of the named contract (view and pure
    /// functions only when `includeViewFunctions`).
    function createCalldata(string calldata contractName, bool includeViewFunctions)
        external
        returns (bytes memory data);
}

/// @dev Where Halmos answers `SymbolicVm`.
SymbolicVm constant svm = SymbolicVm(address(uint160(uint256(keccak256("svm cheat code")))));
