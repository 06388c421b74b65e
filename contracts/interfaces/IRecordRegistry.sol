// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title IRecordRegistry
/// @notice Integrity anchors for FHIR record versions. A version hash is the keccak-256 of the
/// version's RFC 8785 canonical JSON; no clinical data is ever stored. Batches are anchored
/// as a Merkle root: leaf = keccak256(keccak256(versionHash)), inner node = keccak256 of the
/// two children in ascending order, an odd node is carried up unchanged.
interface IRecordRegistry {
    /// @notice Stored anchor of one version hash.
    struct Anchor {
        address org;
        uint40 anchoredAt;
    }

    /// @notice Stored anchor of one batch root.
    struct BatchAnchor {
        address org;
        uint40 anchoredAt;
        uint32 count;
    }

    /// @notice The caller is not an active member of an active organisation.
    error RecordUnauthorizedAnchorer(address caller);
    /// @notice The hash or root is zero, or the batch count is zero.
    error RecordInvalidInput();
    /// @notice The caller's organisation has already anchored this version hash or batch root.
    error RecordAlreadyAnchored(bytes32 hash);

    /// @notice One version hash was anchored for `org`.
    event RecordAnchored(address indexed org, bytes32 indexed versionHash, address anchorer);
    /// @notice A Merkle root over `count` version hashes was anchored for `org`.
    event RecordBatchAnchored(address indexed org, bytes32 indexed root, uint32 count, address anchorer);

    /// @notice Anchor one version hash for the caller's organisation.
    function anchor(bytes32 versionHash) external;
    /// @notice Anchor a Merkle root over `count` version hashes for the caller's organisation.
    function anchorBatch(bytes32 root, uint32 count) external;

    /// @notice `org`'s anchor of a single version hash (zero org when none). Anchors are per
    /// organisation: another organisation anchoring the same hash neither blocks nor counts.
    function anchorOf(bytes32 versionHash, address org) external view returns (Anchor memory);
    /// @notice `org`'s anchor of a batch root (zero org when none).
    function batchOf(bytes32 root, address org) external view returns (BatchAnchor memory);
    /// @notice Whether `versionHash` is anchored for `org`, singly.
    function verifyAnchor(bytes32 versionHash, address org) external view returns (bool);
    /// @notice Whether `versionHash` is included, by `proof`, in a batch root anchored for `org`.
    function verifyInclusion(bytes32 versionHash, bytes32 root, bytes32[] calldata proof, address org)
        external
        view
        returns (bool);
}
