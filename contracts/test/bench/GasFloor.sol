// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title GasFloor
/// @notice Baseline for `bench/gas`: the least any first consent grant can cost on the chain the
/// benchmark runs on. `record` takes the same calldata as `ConsentRegistry.grant`, writes one new
/// storage slot under the same two-level key and emits an event of the same shape (three indexed
/// addresses, the same data), and checks nothing. `ConsentRegistry.grant` is measured against it
/// in the same run, so its figure reads as overhead over the EVM floor whatever the gas schedule.
contract GasFloor {
    /// @dev The same packing as `IConsentRegistry.Consent`: one slot (ConsentRegistry adds the
    /// granting delegation's id in spare bits, written in the same SSTORE).
    struct Packed {
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
        uint40 validFrom;
        uint40 validUntil;
    }

    mapping(address patient => mapping(address grantee => Packed)) private _slots;

    /// @notice Same topics and data as `IConsentRegistry.ConsentGranted`.
    event Recorded(
        address indexed patient,
        address indexed grantee,
        address indexed actor,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint40 validFrom,
        uint40 validUntil,
        bytes32 consentHash
    );

    /// @notice Store one packed slot and emit one event, with no validation at all.
    function record(
        address patient,
        address grantee,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint40 validFrom,
        uint40 validUntil,
        bytes32 consentHash
    ) external {
        Packed storage slot = _slots[patient][grantee];
        // One SSTORE of the packed word, as `ConsentRegistry` writes it: a struct assignment would
        // read and write the slot once per field, which no grant needs to pay.
        assembly ("memory-safe") {
            sstore(
                slot.slot,
                or(
                    or(
                        and(resourceTypes, 0xffffffffffffffff),
                        or(shl(64, and(actions, 0xff)), shl(72, and(purposes, 0xffff)))
                    ),
                    or(shl(88, and(validFrom, 0xffffffffff)), shl(128, and(validUntil, 0xffffffffff)))
                )
            )
        }
        emit Recorded(
            patient, grantee, msg.sender, resourceTypes, actions, purposes, validFrom, validUntil, consentHash
        );
    }
}
