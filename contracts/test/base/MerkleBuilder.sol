// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title MerkleBuilder
/// @notice Test-side reference implementation of the anchor tree conventions, written from the
/// documentation rather than from `AnchorTree`: leaf = keccak256(keccak256(value)), inner node =
/// keccak256 of the two children in ascending order, an odd node carried up unchanged.
library MerkleBuilder {
    function leafOf(bytes32 value) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(keccak256(abi.encodePacked(value))));
    }

    function parentOf(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encodePacked(a, b)) : keccak256(abi.encodePacked(b, a));
    }

    /// @notice Root over `values` and the proof of `values[index]`.
    function build(bytes32[] memory values, uint256 index)
        internal
        pure
        returns (bytes32 root, bytes32[] memory proof)
    {
        uint256 n = values.length;
        bytes32[] memory level = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            level[i] = leafOf(values[i]);
        }
        bytes32[] memory path = new bytes32[](64);
        uint256 depth = 0;
        uint256 pos = index;
        while (n > 1) {
            uint256 sibling = pos ^ 1;
            if (sibling < n) path[depth++] = level[sibling];
            uint256 m = (n + 1) / 2;
            for (uint256 i = 0; i < m; ++i) {
                level[i] = 2 * i + 1 < n ? parentOf(level[2 * i], level[2 * i + 1]) : level[2 * i];
            }
            n = m;
            pos /= 2;
        }
        proof = new bytes32[](depth);
        for (uint256 i = 0; i < depth; ++i) {
            proof[i] = path[i];
        }
        root = level[0];
    }
}
