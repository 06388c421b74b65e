// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {IMembershipMirror} from "./interfaces/IMembershipMirror.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";

/// @title ProviderRegistry
/// @notice Consortium membership: organisations admitted by governance and the member keys that
/// act for them.
///
/// Rules kept by this contract:
/// - an address is either an organisation or a member key, never both, and a retired key is
///   never registered again (retirement is final);
/// - an organisation manages its own keys through its own address while it is active; governance
///   (`GOVERNOR_ROLE`) may always manage them, also while the organisation is suspended;
/// - a key may rotate itself while it is active, so a suspension cannot be escaped by rotating;
/// - every status change is pushed, in the same transaction, to the membership mirror when one
///   is set, so contracts that answer from a mirror see a suspension at once.
contract ProviderRegistry is IProviderRegistry, AccessControl {
    /// @notice Role of consortium governance: a multisig or timelock in production.
    bytes32 public constant GOVERNOR_ROLE = keccak256("GOVERNOR_ROLE");

    mapping(address org => Organisation) private _organisations;
    mapping(address key => Member) private _members;
    IMembershipMirror private _mirror;
    mapping(address org => string url) private _endpoints;

    /// @dev Longest endpoint URL accepted.
    uint256 private constant MAX_ENDPOINT_BYTES = 512;

    /// @notice Create the registry with `governor` as governance and role administrator.
    /// @param governor Holder of `GOVERNOR_ROLE` and `DEFAULT_ADMIN_ROLE`.
    constructor(address governor) {
        if (governor == address(0)) revert ProviderInvalidInput();
        _grantRole(DEFAULT_ADMIN_ROLE, governor);
        _grantRole(GOVERNOR_ROLE, governor);
    }

    // ----------------------------------------------------------------------------------------
    // Organisations
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IProviderRegistry
    function admitOrganisation(address org, OrgKind kind, string calldata name)
        external
        onlyRole(GOVERNOR_ROLE)
    {
        if (org == address(0) || kind == OrgKind.None) revert ProviderInvalidInput();
        _requireUnregistered(org);
        _organisations[org] =
            Organisation({kind: kind, status: Status.Active, admittedAt: uint40(block.timestamp)});
        emit OrganisationAdmitted(org, kind, name);
        _pushOrganisation(org, true);
    }

    /// @inheritdoc IProviderRegistry
    function suspendOrganisation(address org) external onlyRole(GOVERNOR_ROLE) {
        _setOrganisationStatus(org, Status.Active, Status.Suspended);
    }

    /// @inheritdoc IProviderRegistry
    function reinstateOrganisation(address org) external onlyRole(GOVERNOR_ROLE) {
        _setOrganisationStatus(org, Status.Suspended, Status.Active);
    }

    // ----------------------------------------------------------------------------------------
    // Member keys
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IProviderRegistry
    function addMember(address org, address key, MemberRole role) external {
        // slither-disable-next-line incorrect-equality (an enum read from storage, not a balance or a timestamp)
        if (_organisations[org].status == Status.None) revert ProviderUnknownOrganisation(org);
        _requireManager(org);
        if (key == address(0)) revert ProviderInvalidInput();
        _requireUnregistered(key);
        _members[key] = Member({org: org, status: Status.Active, role: role, since: uint40(block.timestamp)});
        emit MemberAdded(org, key, role);
        _pushMember(key, org, true);
    }

    /// @inheritdoc IProviderRegistry
    function suspendMember(address key) external {
        _setMemberStatus(key, Status.Active, Status.Suspended);
    }

    /// @inheritdoc IProviderRegistry
    function reinstateMember(address key) external {
        _setMemberStatus(key, Status.Suspended, Status.Active);
    }

    /// @inheritdoc IProviderRegistry
    function retireMember(address key) external {
        Member storage m = _members[key];
        address org = m.org;
        Status status = m.status;
        if (status == Status.None) revert ProviderUnknownMember(key);
        _requireManager(org);
        if (status == Status.Retired) revert ProviderInvalidStatus(key, status);
        m.status = Status.Retired;
        emit MemberStatusChanged(org, key, Status.Retired);
        _pushMember(key, org, false);
    }

    /// @inheritdoc IProviderRegistry
    function rotateMemberKey(address oldKey, address newKey) external {
        Member memory old = _members[oldKey];
        // slither-disable-next-line incorrect-equality (an enum read from storage, not a balance or a timestamp)
        if (old.status == Status.None) revert ProviderUnknownMember(oldKey);
        // An active key may replace itself (e.g. a lost device); a suspended one may not.
        if (msg.sender != oldKey || old.status != Status.Active) _requireManager(old.org);
        // slither-disable-next-line incorrect-equality (an enum read from storage, not a balance or a timestamp)
        if (old.status == Status.Retired) revert ProviderInvalidStatus(oldKey, old.status);
        if (newKey == address(0)) revert ProviderInvalidInput();
        _requireUnregistered(newKey);

        _members[oldKey].status = Status.Retired;
        _members[newKey] =
            Member({org: old.org, status: old.status, role: old.role, since: uint40(block.timestamp)});
        emit MemberKeyRotated(old.org, oldKey, newKey);
        _pushMember(oldKey, old.org, false);
        // slither-disable-next-line incorrect-equality (an enum read from storage, not a balance or a timestamp)
        _pushMember(newKey, old.org, old.status == Status.Active);
    }

    // ----------------------------------------------------------------------------------------
    // Mirror
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IProviderRegistry
    function setMembershipMirror(IMembershipMirror mirror) external onlyRole(GOVERNOR_ROLE) {
        if (address(mirror) == address(0)) revert ProviderInvalidInput();
        // Wired once: a replaced mirror would stop receiving suspensions and answer from stale
        // state, so replacing it is not offered at all.
        if (address(_mirror) != address(0)) revert ProviderMirrorAlreadySet(address(_mirror));
        _mirror = mirror;
        emit MembershipMirrorSet(address(mirror));
    }

    // ----------------------------------------------------------------------------------------
    // Directory
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IProviderRegistry
    function setEndpoint(address org, string calldata url) external {
        // slither-disable-next-line incorrect-equality (an enum read from storage, not a balance or a timestamp)
        if (_organisations[org].status == Status.None) revert ProviderUnknownOrganisation(org);
        _requireManager(org);
        bytes calldata raw = bytes(url);
        if (raw.length > MAX_ENDPOINT_BYTES) revert ProviderInvalidInput();
        if (raw.length != 0 && !_hasPrefix(raw, "https://") && !_hasPrefix(raw, "http://")) {
            revert ProviderInvalidInput();
        }
        _endpoints[org] = url;
        emit EndpointSet(org, url);
    }

    // ----------------------------------------------------------------------------------------
    // Views
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IProviderRegistry
    function membershipMirror() external view returns (IMembershipMirror) {
        return _mirror;
    }

    /// @inheritdoc IProviderRegistry
    function organisation(address org) external view returns (Organisation memory) {
        return _organisations[org];
    }

    /// @inheritdoc IProviderRegistry
    function member(address key) external view returns (Member memory) {
        return _members[key];
    }

    /// @inheritdoc IProviderRegistry
    function activeOrganisationOf(address key) external view returns (address org, OrgKind kind) {
        Member storage m = _members[key];
        if (m.status != Status.Active) return (address(0), OrgKind.None);
        Organisation storage o = _organisations[m.org];
        if (o.status != Status.Active) return (address(0), OrgKind.None);
        return (m.org, o.kind);
    }

    /// @inheritdoc IProviderRegistry
    function endpoint(address org) external view returns (string memory) {
        return _endpoints[org];
    }

    // ----------------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------------

    function _hasPrefix(bytes calldata raw, bytes memory prefix) private pure returns (bool) {
        if (raw.length < prefix.length) return false;
        for (uint256 i = 0; i < prefix.length; ++i) {
            if (raw[i] != prefix[i]) return false;
        }
        return true;
    }

    function _setOrganisationStatus(address org, Status from, Status to) private {
        Organisation storage o = _organisations[org];
        Status status = o.status;
        if (status == Status.None) revert ProviderUnknownOrganisation(org);
        if (status != from) revert ProviderInvalidStatus(org, status);
        o.status = to;
        emit OrganisationStatusChanged(org, to);
        _pushOrganisation(org, to == Status.Active);
    }

    function _setMemberStatus(address key, Status from, Status to) private {
        Member storage m = _members[key];
        address org = m.org;
        Status status = m.status;
        if (status == Status.None) revert ProviderUnknownMember(key);
        _requireManager(org);
        if (status != from) revert ProviderInvalidStatus(key, status);
        m.status = to;
        emit MemberStatusChanged(org, key, to);
        _pushMember(key, org, to == Status.Active);
    }

    /// @dev Governance may always manage an organisation's keys; the organisation itself only
    /// while it is active, so a suspended organisation cannot stage keys for its reinstatement.
    function _requireManager(address org) private view {
        if (hasRole(GOVERNOR_ROLE, msg.sender)) return;
        if (msg.sender == org && _organisations[org].status == Status.Active) return;
        revert ProviderUnauthorizedManager(msg.sender, org);
    }

    function _requireUnregistered(address account) private view {
        if (_organisations[account].status != Status.None || _members[account].status != Status.None) {
            revert ProviderAlreadyRegistered(account);
        }
    }

    function _pushMember(address key, address org, bool active) private {
        IMembershipMirror mirror = _mirror;
        if (address(mirror) != address(0)) mirror.onMemberStatusChanged(key, org, active);
    }

    function _pushOrganisation(address org, bool active) private {
        IMembershipMirror mirror = _mirror;
        if (address(mirror) != address(0)) mirror.onOrganisationStatusChanged(org, active);
    }
}
