// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {IAuditAnchor} from "./interfaces/IAuditAnchor.sol";
import {AnchorTree} from "./libraries/AnchorTree.sol";

/// @title AuditAnchor
/// @notice Merkle roots of contiguous batches of each gateway's hash-chained audit log, anchored
/// by registered gateway service keys. Each gateway's log has its own sequence: the ranges of
/// one gateway's batches, taken together, cover `[1, nextSeq(gateway) - 1]` without gap or
/// overlap, so compliance can verify any row of that gateway's log by its sequence number alone.
contract AuditAnchor is IAuditAnchor, AccessControl {
    /// @notice Role of consortium governance: a multisig or timelock in production.
    bytes32 public constant GOVERNOR_ROLE = keccak256("GOVERNOR_ROLE");

    mapping(address gateway => bool) private _gateways;
    mapping(uint64 batchId => Batch) private _batches;
    /// @dev Each gateway's last anchored sequence number (0 before its first batch).
    mapping(address gateway => uint64) private _lastSeq;
    uint64 private _batchCount;

    /// @notice Create the anchor with `governor` as governance and role administrator.
    /// @param governor Holder of `GOVERNOR_ROLE` and `DEFAULT_ADMIN_ROLE`.
    constructor(address governor) {
        if (governor == address(0)) revert AuditInvalidInput();
        _grantRole(DEFAULT_ADMIN_ROLE, governor);
        _grantRole(GOVERNOR_ROLE, governor);
    }

    /// @inheritdoc IAuditAnchor
    function registerGateway(address gateway) external onlyRole(GOVERNOR_ROLE) {
        if (gateway == address(0)) revert AuditInvalidInput();
        if (_gateways[gateway]) revert AuditInvalidGatewayStatus(gateway, true);
        _gateways[gateway] = true;
        emit GatewayRegistered(gateway);
    }

    /// @inheritdoc IAuditAnchor
    function removeGateway(address gateway) external onlyRole(GOVERNOR_ROLE) {
        if (!_gateways[gateway]) revert AuditInvalidGatewayStatus(gateway, false);
        _gateways[gateway] = false;
        emit GatewayRemoved(gateway);
    }

    /// @inheritdoc IAuditAnchor
    function anchorBatch(uint64 fromSeq, uint64 toSeq, bytes32 root) external returns (uint64 batchId) {
        if (!_gateways[msg.sender]) revert AuditUnauthorizedGateway(msg.sender);
        if (root == bytes32(0)) revert AuditInvalidInput();
        uint64 expectedFrom = _lastSeq[msg.sender] + 1;
        // `toSeq` may not be the largest uint64, or `nextSeq` would overflow.
        if (fromSeq != expectedFrom || toSeq < fromSeq || toSeq == type(uint64).max) {
            revert AuditInvalidRange(expectedFrom, fromSeq, toSeq);
        }
        batchId = _batchCount + 1;
        _lastSeq[msg.sender] = toSeq;
        _batchCount = batchId;
        _batches[batchId] = Batch({
            fromSeq: fromSeq,
            toSeq: toSeq,
            anchoredAt: uint40(block.timestamp),
            gateway: msg.sender,
            root: root
        });
        emit AuditBatchAnchored(batchId, msg.sender, fromSeq, toSeq, root);
    }

    /// @inheritdoc IAuditAnchor
    function isGateway(address gateway) external view returns (bool) {
        return _gateways[gateway];
    }

    /// @inheritdoc IAuditAnchor
    function nextSeq(address gateway) external view returns (uint64) {
        return _lastSeq[gateway] + 1;
    }

    /// @inheritdoc IAuditAnchor
    function batchCount() external view returns (uint64) {
        return _batchCount;
    }

    /// @inheritdoc IAuditAnchor
    function batch(uint64 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @inheritdoc IAuditAnchor
    function verifyInclusion(uint64 batchId, bytes32 leafValue, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 root = _batches[batchId].root;
        return root != bytes32(0) && AnchorTree.verify(proof, root, leafValue);
    }
}
