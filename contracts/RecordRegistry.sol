// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IMembershipMirror} from "./interfaces/IMembershipMirror.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {IRecordRegistry} from "./interfaces/IRecordRegistry.sol";
import {AnchorTree} from "./libraries/AnchorTree.sol";

/// @title RecordRegistry
/// @notice Integrity anchors for FHIR record versions, single or batched by Merkle root, each for
/// the organisation of the member key that anchors it.
///
/// Who may anchor is answered from this contract's own mirror of the `ProviderRegistry`, which
/// the registry keeps current by pushing every key and organisation status change here in the
/// same transaction (see `IMembershipMirror`). A suspension in the registry therefore blocks
/// anchoring at once, while `anchor` reads a single slot of its own instead of calling out.
///
/// To answer from one slot, each active key's entry carries a copy of its organisation's status;
/// an organisation status change rewrites the entries of the organisation's active keys, which
/// is why an organisation may have at most `MAX_ACTIVE_KEYS_PER_ORG` active keys.
contract RecordRegistry is IRecordRegistry, IMembershipMirror {
    /// @notice Most active keys an organisation may have, so that suspending it stays well inside
    /// a block (about 7,500 gas per key).
    uint256 public constant MAX_ACTIVE_KEYS_PER_ORG = 1000;

    /// @notice The provider registry this contract mirrors.
    IProviderRegistry public immutable REGISTRY;

    /// @dev Mirror entry of an active member key; all zero when the key is not active.
    struct KeyEntry {
        address org;
        bool orgActive;
        uint32 index;
    }

    mapping(address key => KeyEntry) private _keyEntries;
    // slither-disable-next-line uninitialized-state (a mapping: filled through storage pointers in _setKeyActive)
    mapping(address org => address[]) private _activeKeys;
    mapping(address org => bool) private _orgActive;

    // Keyed by organisation first: an anchor only ever speaks for its own organisation, so a
    // member of another organisation who learns a hash (from the mempool, say) cannot take
    // it first and leave the custodian unable to anchor its own record.
    mapping(address org => mapping(bytes32 versionHash => Anchor)) private _anchors;
    mapping(address org => mapping(bytes32 root => BatchAnchor)) private _batches;

    /// @notice An organisation would exceed `MAX_ACTIVE_KEYS_PER_ORG` active keys.
    error RecordTooManyKeys(address org);

    /// @notice Create the registry following `registry`. Wire it with
    /// `registry.setMembershipMirror(this)`; members admitted before that are copied over with
    /// `syncMembership`.
    constructor(IProviderRegistry registry) {
        if (address(registry) == address(0)) revert RecordInvalidInput();
        REGISTRY = registry;
    }

    // ----------------------------------------------------------------------------------------
    // Anchoring
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IRecordRegistry
    function anchor(bytes32 versionHash) external {
        if (versionHash == bytes32(0)) revert RecordInvalidInput();
        address org = _anchoringOrg();
        Anchor storage entry = _anchors[org][versionHash];
        if (entry.org != address(0)) revert RecordAlreadyAnchored(versionHash);
        entry.org = org;
        entry.anchoredAt = uint40(block.timestamp);
        emit RecordAnchored(org, versionHash, msg.sender);
    }

    /// @inheritdoc IRecordRegistry
    function anchorBatch(bytes32 root, uint32 count) external {
        if (root == bytes32(0) || count == 0) revert RecordInvalidInput();
        address org = _anchoringOrg();
        BatchAnchor storage entry = _batches[org][root];
        if (entry.org != address(0)) revert RecordAlreadyAnchored(root);
        entry.org = org;
        entry.anchoredAt = uint40(block.timestamp);
        entry.count = count;
        emit RecordBatchAnchored(org, root, count, msg.sender);
    }

    // ----------------------------------------------------------------------------------------
    // Membership mirror
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IMembershipMirror
    function onMemberStatusChanged(address key, address org, bool active) external {
        if (msg.sender != address(REGISTRY)) revert MirrorUnauthorizedRegistry(msg.sender);
        _setKeyActive(key, org, active);
    }

    /// @inheritdoc IMembershipMirror
    function onOrganisationStatusChanged(address org, bool active) external {
        if (msg.sender != address(REGISTRY)) revert MirrorUnauthorizedRegistry(msg.sender);
        _setOrganisationActive(org, active);
    }

    /// @notice Copy the registry's current state of `accounts` (keys or organisations) into the
    /// mirror. Anyone may call it: it only ever writes what the registry says. Needed only for
    /// accounts registered before this contract was set as the registry's mirror; organisations
    /// should be synced before their keys. Refused unless this contract is the registry's mirror,
    /// since a copy that receives no pushes would go stale.
    /// @param accounts Member keys and organisation addresses to copy.
    function syncMembership(address[] calldata accounts) external {
        if (address(REGISTRY.membershipMirror()) != address(this)) revert MirrorNotWired();
        for (uint256 i = 0; i < accounts.length; ++i) {
            address account = accounts[i];
            IProviderRegistry.Status orgStatus = REGISTRY.organisation(account).status;
            if (orgStatus != IProviderRegistry.Status.None) {
                _setOrganisationActive(account, orgStatus == IProviderRegistry.Status.Active);
            }
            IProviderRegistry.Member memory m = REGISTRY.member(account);
            if (m.status != IProviderRegistry.Status.None) {
                _setKeyActive(account, m.org, m.status == IProviderRegistry.Status.Active);
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Views
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IRecordRegistry
    function anchorOf(bytes32 versionHash, address org) external view returns (Anchor memory) {
        return _anchors[org][versionHash];
    }

    /// @inheritdoc IRecordRegistry
    function batchOf(bytes32 root, address org) external view returns (BatchAnchor memory) {
        return _batches[org][root];
    }

    /// @inheritdoc IRecordRegistry
    function verifyAnchor(bytes32 versionHash, address org) external view returns (bool) {
        return org != address(0) && _anchors[org][versionHash].org == org;
    }

    /// @inheritdoc IRecordRegistry
    function verifyInclusion(bytes32 versionHash, bytes32 root, bytes32[] calldata proof, address org)
        external
        view
        returns (bool)
    {
        return
            org != address(0) && _batches[org][root].org == org && AnchorTree.verify(proof, root, versionHash);
    }

    /// @notice The organisation `key` may anchor for: its own when both the key and the
    /// organisation are active, else the zero address.
    function anchoringOrganisationOf(address key) public view returns (address) {
        KeyEntry storage entry = _keyEntries[key];
        return entry.orgActive ? entry.org : address(0);
    }

    /// @notice The active keys of `org` as mirrored here, in no particular order.
    function activeKeysOf(address org) external view returns (address[] memory) {
        return _activeKeys[org];
    }

    // ----------------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------------

    function _anchoringOrg() private view returns (address org) {
        org = anchoringOrganisationOf(msg.sender);
        if (org == address(0)) revert RecordUnauthorizedAnchorer(msg.sender);
    }

    /// @dev Idempotent, so that `syncMembership` may replay what was already pushed.
    function _setKeyActive(address key, address org, bool active) private {
        KeyEntry storage entry = _keyEntries[key];
        if (active) {
            if (entry.org != address(0)) return;
            address[] storage keys = _activeKeys[org];
            uint256 count = keys.length;
            if (count >= MAX_ACTIVE_KEYS_PER_ORG) revert RecordTooManyKeys(org);
            // forge-lint: disable-next-line(unsafe-typecast)
            _keyEntries[key] = KeyEntry({org: org, orgActive: _orgActive[org], index: uint32(count)});
            keys.push(key);
        } else {
            address keyOrg = entry.org;
            if (keyOrg == address(0)) return;
            address[] storage keys = _activeKeys[keyOrg];
            uint32 index = entry.index;
            address last = keys[keys.length - 1];
            keys[index] = last;
            _keyEntries[last].index = index;
            keys.pop();
            delete _keyEntries[key];
        }
    }

    function _setOrganisationActive(address org, bool active) private {
        _orgActive[org] = active;
        address[] storage keys = _activeKeys[org];
        uint256 count = keys.length;
        for (uint256 i = 0; i < count; ++i) {
            _keyEntries[keys[i]].orgActive = active;
        }
    }
}
