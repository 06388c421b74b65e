// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title ScriptVm
/// @notice The Foundry cheatcodes the deploy scripts use, kept apart from the test base's `Vm`
/// so that scripts and tests can grow their cheatcode lists independently.
interface ScriptVm {
    /// @dev Where forge is running the code; the order is forge's own and must not change.
    enum ForgeContext {
        TestGroup,
        Test,
        Coverage,
        Snapshot,
        ScriptGroup,
        ScriptDryRun,
        ScriptBroadcast,
        ScriptResume,
        Unknown
    }

    function startBroadcast(address signer) external;
    function stopBroadcast() external;
    function isContext(ForgeContext context) external view returns (bool result);
    function envOr(string calldata name, address defaultValue) external view returns (address value);
    function envOr(string calldata name, uint256 defaultValue) external view returns (uint256 value);
    function envOr(string calldata name, string calldata defaultValue)
        external
        view
        returns (string memory value);
    function toString(uint256 value) external pure returns (string memory stringifiedValue);
    function toString(address value) external pure returns (string memory stringifiedValue);
    function writeFile(string calldata path, string calldata data) external;
}

/// @title ScriptBase
/// @notice The cheatcode handle and a `log` that prints through forge's console precompile, so
/// scripts report what they did without depending on forge-std.
abstract contract ScriptBase {
    ScriptVm internal constant vm = ScriptVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev forge's console address: calls to it are printed, never executed on chain.
    address private constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;

    /// @dev forge's scripts run with this sender when no signer was given on the command line.
    address internal constant FORGE_DEFAULT_SENDER = 0x1804c8AB1F12E6bbf3894d4083f33e07309d1f38;

    function log(string memory message) internal view {
        // The console call has no effect beyond the printed line; its result is irrelevant.
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string)", message));
        ok;
    }
}
