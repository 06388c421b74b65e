// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title IAuditAnchor
/// @notice Merkle roots of batches of the gateways' hash-chained audit log. Batches cover
/// contiguous, never overlapping ranges of audit sequence numbers, starting at 1. The tree is
/// built as in `IRecordRegistry` with each row's chained hash as the value.
interface IAuditAnchor {
    /// @notice One anchored batch.
    struct Batch {
        uint64 fromSeq;
        uint64 toSeq;
        uint40 anchoredAt;
        address gateway;
        bytes32 root;
    }

    /// @notice The caller is not a registered gateway.
    error AuditUnauthorizedGateway(address caller);
    /// @notice The range does not start right after the last anchored one, or is empty.
    error AuditInvalidRange(uint64 expectedFrom, uint64 fromSeq, uint64 toSeq);
    /// @notice The root or gateway address is zero.
    error AuditInvalidInput();
    /// @notice The gateway is already registered, or not registered.
    error AuditInvalidGatewayStatus(address gateway, bool registered);

    /// @notice A gateway service key was registered (governance).
    event GatewayRegistered(address indexed gateway);
    /// @notice A gateway service key was removed (governance).
    event GatewayRemoved(address indexed gateway);
    /// @notice A batch of audit rows `[fromSeq, toSeq]` was anchored.
    event AuditBatchAnchored(
        uint64 indexed batchId, address indexed gateway, uint64 fromSeq, uint64 toSeq, bytes32 root
    );

    /// @notice Register a gateway service key (governance only).
    function registerGateway(address gateway) external;
    /// @notice Remove a gateway service key (governance only).
    function removeGateway(address gateway) external;
    /// @notice Anchor the Merkle root of audit rows `[fromSeq, toSeq]`.
    function anchorBatch(uint64 fromSeq, uint64 toSeq, bytes32 root) external returns (uint64 batchId);

    /// @notice Whether `gateway` is registered.
    function isGateway(address gateway) external view returns (bool);
    /// @notice The next sequence number `gateway` must anchor from: each registered gateway's
    /// audit log has a sequence of its own, starting at 1.
    function nextSeq(address gateway) external view returns (uint64);
    /// @notice Number of anchored batches (batch ids run from 1).
    function batchCount() external view returns (uint64);
    /// @notice An anchored batch.
    function batch(uint64 batchId) external view returns (Batch memory);
    /// @notice Whether `leafValue` is included by `proof` in batch `batchId`.
    function verifyInclusion(uint64 batchId, bytes32 leafValue, bytes32[] calldata proof)
        external
        view
        returns (bool);
}
