// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title Vm
/// @notice The Foundry cheatcodes this project uses, and only those. The cheatcode contract lives
/// at `address(uint160(uint256(keccak256("hevm cheat code"))))`.
interface Vm {
    // Caller and environment
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function chainId(uint256 newChainId) external;
    function deal(address account, uint256 newBalance) external;
    function etch(address target, bytes calldata newRuntimeBytecode) external;
    function label(address account, string calldata newLabel) external;
    function getBlockNumber() external view returns (uint256 height);

    // Keys and signatures
    function addr(uint256 privateKey) external pure returns (address keyAddr);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);

    // Expectations
    function expectRevert() external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit() external;
    function expectEmit(address emitter) external;
    function assume(bool condition) external pure;

    // State snapshots
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);

    // Scripts
    function startBroadcast() external;
    function stopBroadcast() external;
    function envOr(string calldata name, string calldata defaultValue)
        external
        view
        returns (string memory value);
    function toString(uint256 value) external pure returns (string memory stringifiedValue);
    function toString(address value) external pure returns (string memory stringifiedValue);
    function toString(bytes32 value) external pure returns (string memory stringifiedValue);
    function writeFile(string calldata path, string calldata data) external;
}
