// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IConsentRegistry} from "../../interfaces/IConsentRegistry.sol";

/// @title ConsentTypedData
/// @notice Test-side EIP-712 encoder of the ConsentRegistry's `Grant`, `Revoke`, `SetDelegate`,
/// `SetProxy` and `RemoveDelegate` types, written
/// from the type strings and EIP-712 itself rather than from the contract's own `grantDigest`, so
/// a wrong hash in the contract fails the tests instead of agreeing with itself. A library so the
/// unit tests and the invariant handler share it.
library ConsentTypedData {
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant GRANT_TYPEHASH = keccak256(
        "Grant(address patient,address grantee,uint64 resourceTypes,uint8 actions,uint16 purposes,"
        "uint40 validFrom,uint40 validUntil,bytes32 consentHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant REVOKE_TYPEHASH =
        keccak256("Revoke(address patient,address grantee,uint256 nonce,uint256 deadline)");
    bytes32 internal constant SET_DELEGATE_TYPEHASH = keccak256(
        "SetDelegate(address patient,address delegate,string relationship,uint40 validUntil,uint256 nonce,"
        "uint256 deadline)"
    );
    bytes32 internal constant SET_PROXY_TYPEHASH = keccak256(
        "SetProxy(address patient,address proxy,uint40 validUntil,uint64 resourceTypes,uint8 actions,"
        "uint16 purposes,uint256 nonce,uint256 deadline)"
    );
    bytes32 internal constant REMOVE_DELEGATE_TYPEHASH =
        keccak256("RemoveDelegate(address patient,address delegate,uint256 nonce,uint256 deadline)");

    /// @dev Order of the secp256k1 group: `s` above half of it is the malleable twin of a signature.
    uint256 internal constant SECP256K1_N =
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    function domainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                DOMAIN_TYPEHASH,
                keccak256("carechain ConsentRegistry"),
                keccak256("1"),
                chainId,
                verifyingContract
            )
        );
    }

    function typedDigest(address verifyingContract, uint256 chainId, bytes32 structHash)
        internal
        pure
        returns (bytes32)
    {
        return
            keccak256(abi.encodePacked("\x19\x01", domainSeparator(verifyingContract, chainId), structHash));
    }

    function grantStructHash(IConsentRegistry.Grant memory g, uint256 nonce) internal pure returns (bytes32) {
        // Two halves because every field is one 32-byte word: their concatenation is `abi.encode`
        // of the whole struct, and the legacy code generator cannot hold eleven values at once.
        return keccak256(
            bytes.concat(
                abi.encode(GRANT_TYPEHASH, g.patient, g.grantee, g.resourceTypes, g.actions, g.purposes),
                abi.encode(g.validFrom, g.validUntil, g.consentHash, nonce, g.deadline)
            )
        );
    }

    function grantDigest(
        IConsentRegistry.Grant memory g,
        uint256 nonce,
        address verifyingContract,
        uint256 chainId
    ) internal pure returns (bytes32) {
        return typedDigest(verifyingContract, chainId, grantStructHash(g, nonce));
    }

    function revokeDigest(
        address patient,
        address grantee,
        uint256 nonce,
        uint256 deadline,
        address verifyingContract,
        uint256 chainId
    ) internal pure returns (bytes32) {
        return typedDigest(
            verifyingContract,
            chainId,
            keccak256(abi.encode(REVOKE_TYPEHASH, patient, grantee, nonce, deadline))
        );
    }

    /// @dev `relationship` is the word a wallet shows: "guardian" or "caregiver".
    function setDelegateDigest(
        address patient,
        address delegate,
        string memory relationship,
        uint40 validUntil,
        uint256 nonce,
        uint256 deadline,
        address verifyingContract,
        uint256 chainId
    ) internal pure returns (bytes32) {
        return typedDigest(
            verifyingContract,
            chainId,
            keccak256(
                abi.encode(
                    SET_DELEGATE_TYPEHASH,
                    patient,
                    delegate,
                    keccak256(bytes(relationship)),
                    validUntil,
                    nonce,
                    deadline
                )
            )
        );
    }

    function setProxyDigest(
        address patient,
        address proxy,
        uint40 validUntil,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint256 nonce,
        uint256 deadline,
        address verifyingContract,
        uint256 chainId
    ) internal pure returns (bytes32) {
        bytes32 structHash = keccak256(
            bytes.concat(
                abi.encode(SET_PROXY_TYPEHASH, patient, proxy, validUntil, resourceTypes),
                abi.encode(actions, purposes, nonce, deadline)
            )
        );
        return typedDigest(verifyingContract, chainId, structHash);
    }

    function removeDelegateDigest(
        address patient,
        address delegate,
        uint256 nonce,
        uint256 deadline,
        address verifyingContract,
        uint256 chainId
    ) internal pure returns (bytes32) {
        return typedDigest(
            verifyingContract,
            chainId,
            keccak256(abi.encode(REMOVE_DELEGATE_TYPEHASH, patient, delegate, nonce, deadline))
        );
    }

    /// @dev The same signature with `s` replaced by `n - s` and `v` flipped: valid for plain
    /// `ecrecover`, and exactly the malleable form EIP-2 and OpenZeppelin reject.
    function highS(bytes memory signature) internal pure returns (bytes memory) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
    }
}
