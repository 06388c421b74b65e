// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title IMembershipMirror
/// @notice A contract that keeps its own copy of which member keys and organisations are active,
/// so that its hot paths answer from its own storage instead of calling the `ProviderRegistry`.
/// The registry pushes every status change to its mirror in the same transaction as the change,
/// so a suspension takes effect in the mirror at once.
interface IMembershipMirror {
    /// @notice The caller is not the provider registry the mirror follows.
    error MirrorUnauthorizedRegistry(address caller);
    /// @notice The registry does not push to this contract, so copying state into it is refused.
    error MirrorNotWired();

    /// @notice Member key `key` of organisation `org` became active (`active`) or stopped being active.
    function onMemberStatusChanged(address key, address org, bool active) external;

    /// @notice Organisation `org` became active (`active`) or stopped being active.
    function onOrganisationStatusChanged(address org, bool active) external;
}
