// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title AnchorTree
/// @notice The Merkle tree conventions shared by `RecordRegistry` and `AuditAnchor`:
/// leaf = keccak256(keccak256(value)), inner node = keccak256 of its two children in ascending
/// order, an odd node is carried up unchanged (its level is simply absent from the proof).
/// Hashing the value twice keeps a leaf from ever being read as an inner node of 64 bytes.
library AnchorTree {
    /// @notice The leaf that commits to `value`.
    function leaf(bytes32 value) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(keccak256(abi.encodePacked(value))));
    }

    /// @notice Whether `proof` links the leaf of `value` to `root`.
    function verify(bytes32[] calldata proof, bytes32 root, bytes32 value) internal pure returns (bool) {
        return MerkleProof.verifyCalldata(proof, root, leaf(value));
    }
}
