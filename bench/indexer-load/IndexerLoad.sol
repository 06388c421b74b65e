// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// Bench-only load generator for bench/indexer: emits many real registry events per
/// transaction by calling the deployed registries in a loop. Never deployed outside a bench.
interface ILoadConsent {
    function grant(
        address patient,
        address grantee,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint40 validFrom,
        uint40 validUntil,
        bytes32 consentHash
    ) external;
}

interface ILoadRecords {
    function anchor(bytes32 versionHash) external;
}

interface ILoadAudit {
    function nextSeq() external view returns (uint64);
    function anchorBatch(uint64 fromSeq, uint64 toSeq, bytes32 root) external returns (uint64);
}

/// @notice Grants consents as the patient (this contract), anchors records as a member key
/// and audit batches as a gateway; the governance registers it as both beforehand.
contract IndexerLoad {
    /// @notice `n` grants from this contract to grantees `start .. start + n - 1`.
    function grants(ILoadConsent consents, uint256 start, uint256 n) external {
        for (uint256 i = start; i < start + n; ++i) {
            consents.grant(
                address(this), address(uint160(0x10000 + i)), 0xb, 3, 1, 0, 4_000_000_000, bytes32(i + 1)
            );
        }
    }

    /// @notice `n` record anchors of distinct version hashes.
    function anchors(ILoadRecords records, uint256 start, uint256 n) external {
        for (uint256 i = start; i < start + n; ++i) {
            records.anchor(keccak256(abi.encode(i)));
        }
    }

    /// @notice `n` audit batches of one sequence number each.
    function auditBatches(ILoadAudit audit, uint256 n) external {
        uint64 seq = audit.nextSeq();
        for (uint256 i = 0; i < n; ++i) {
            audit.anchorBatch(seq, seq, bytes32(uint256(seq) + 1));
            ++seq;
        }
    }
}
