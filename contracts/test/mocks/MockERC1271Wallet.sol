// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title MockERC1271Wallet
/// @notice Test-only contract wallet: a signature is valid when its single owner key signed the
/// digest. `setRejectAll` lets a test revoke every signature at once.
contract MockERC1271Wallet is IERC1271 {
    address public immutable OWNER;
    bool public rejectAll;

    constructor(address owner) {
        OWNER = owner;
    }

    function setRejectAll(bool reject) external {
        rejectAll = reject;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(hash, signature);
        if (!rejectAll && err == ECDSA.RecoverError.NoError && recovered == OWNER) {
            return IERC1271.isValidSignature.selector;
        }
        return 0xffffffff;
    }
}
