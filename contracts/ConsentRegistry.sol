// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IConsentRegistry} from "./interfaces/IConsentRegistry.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {FhirCodes} from "./libraries/FhirCodes.sol";

/// @title ConsentRegistry
/// @notice The patient's consent, delegates, signed (gas-free) consent changes and break-glass
/// sessions, and the one `decide` view the gateway asks before every access.
///
/// Decision rules, in order:
/// 1. an index outside the `FhirCodes` tables (or a zero patient or requester) is an invalid request;
/// 2. a requester that is a member key in the `ProviderRegistry` is denied while the key or its
///    organisation is not active, whatever else it is: a suspended key is denied everywhere,
///    also as a delegate or for its holder's own data;
/// 3. the patient may do anything with their own data;
/// 4. an active delegate may read and search the patient's data; for other actions a delegate is
///    resolved like any other requester;
/// 5. any other requester must be a member key: an organisation address is an identifier that
///    consent can name, never a requester itself;
/// 6. a consent to the key itself, then a consent to its organisation, allows;
/// 7. an open break-glass session of the key's organisation allows purpose ETREAT, for every
///    resource type and every action except delete;
/// 8. otherwise the most specific denial found while looking: expired < not yet valid < resource
///    type < action < purpose not covered, and `NoConsent` when nothing applied at all.
///
/// Granting never calls the registry: a patient may consent to an organisation before it is
/// admitted, and statuses are checked when `decide` is asked.
contract ConsentRegistry is IConsentRegistry, AccessControl, EIP712 {
    /// @notice Role of consortium governance: a multisig or timelock in production.
    bytes32 public constant GOVERNOR_ROLE = keccak256("GOVERNOR_ROLE");

    /// @notice EIP-712 type hash of a signed grant.
    bytes32 public constant GRANT_TYPEHASH = keccak256(
        "Grant(address patient,address grantee,uint64 resourceTypes,uint8 actions,uint16 purposes,"
        "uint40 validFrom,uint40 validUntil,bytes32 consentHash,uint256 nonce,uint256 deadline)"
    );

    /// @notice EIP-712 type hash of a signed revocation.
    bytes32 public constant REVOKE_TYPEHASH =
        keccak256("Revoke(address patient,address grantee,uint256 nonce,uint256 deadline)");

    /// @dev Largest step `invalidateNonces` may take, so the nonce can never be pushed to overflow.
    uint256 private constant MAX_NONCE_INCREASE = 2 ** 64;

    /// @notice The provider registry requesters are resolved against.
    IProviderRegistry public immutable REGISTRY;

    /// @dev A delegate's relationship and expiry.
    struct Delegation {
        DelegateKind kind;
        uint40 validUntil;
    }

    mapping(address patient => mapping(address grantee => Consent)) private _consents;
    mapping(address patient => uint256) private _nonces;
    mapping(address patient => mapping(address delegate => Delegation)) private _delegations;
    mapping(address patient => mapping(address org => BreakGlassSession)) private _breakGlass;
    uint64 private _lastBreakGlassId;
    uint32 private _maxBreakGlassDuration;

    /// @notice Create the registry.
    /// @param registry The provider registry requesters are resolved against.
    /// @param governor Holder of `GOVERNOR_ROLE` and `DEFAULT_ADMIN_ROLE`.
    /// @param maxBreakGlassDuration_ Longest break-glass session in seconds (0 disables break-glass).
    constructor(IProviderRegistry registry, address governor, uint32 maxBreakGlassDuration_)
        EIP712("carechain ConsentRegistry", "1")
    {
        if (address(registry) == address(0) || governor == address(0)) revert ConsentInvalidConfiguration();
        REGISTRY = registry;
        _grantRole(DEFAULT_ADMIN_ROLE, governor);
        _grantRole(GOVERNOR_ROLE, governor);
        _maxBreakGlassDuration = maxBreakGlassDuration_;
        emit BreakGlassMaxDurationSet(maxBreakGlassDuration_);
    }

    // ----------------------------------------------------------------------------------------
    // Consent
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IConsentRegistry
    function grant(
        address patient,
        address grantee,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint40 validFrom,
        uint40 validUntil,
        bytes32 consentHash
    ) external {
        _requireActor(msg.sender, patient);
        _grant(
            patient, grantee, resourceTypes, actions, purposes, validFrom, validUntil, consentHash, msg.sender
        );
    }

    /// @inheritdoc IConsentRegistry
    function revoke(address patient, address grantee) external {
        _requireActor(msg.sender, patient);
        _revoke(patient, grantee, msg.sender);
    }

    /// @inheritdoc IConsentRegistry
    function grantBySig(
        address patient,
        address grantee,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint40 validFrom,
        uint40 validUntil,
        bytes32 consentHash,
        uint256 deadline,
        address signer,
        bytes calldata signature
    ) external {
        _useSignature(patient, _grantStructHashFromCalldata(patient, deadline), deadline, signer, signature);
        _grant(patient, grantee, resourceTypes, actions, purposes, validFrom, validUntil, consentHash, signer);
    }

    /// @inheritdoc IConsentRegistry
    function revokeBySig(
        address patient,
        address grantee,
        uint256 deadline,
        address signer,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(REVOKE_TYPEHASH, patient, grantee, _nonces[patient], deadline)
        );
        _useSignature(patient, structHash, deadline, signer, signature);
        _revoke(patient, grantee, signer);
    }

    /// @inheritdoc IConsentRegistry
    function invalidateNonces(address patient, uint256 newNonce) external {
        _requireActor(msg.sender, patient);
        uint256 current = _nonces[patient];
        if (newNonce <= current || newNonce - current > MAX_NONCE_INCREASE) {
            revert ConsentInvalidNonceIncrease(current, newNonce);
        }
        _nonces[patient] = newNonce;
        emit NoncesInvalidated(patient, msg.sender, newNonce);
    }

    // ----------------------------------------------------------------------------------------
    // Delegates
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IConsentRegistry
    function setDelegate(address delegate, DelegateKind kind, uint40 validUntil) external {
        if (delegate == address(0) || delegate == msg.sender || kind == DelegateKind.None) {
            revert ConsentInvalidDelegate(delegate);
        }
        if (validUntil <= block.timestamp) revert ConsentInvalidPeriod(0, validUntil);
        _delegations[msg.sender][delegate] = Delegation(kind, validUntil);
        emit DelegateSet(msg.sender, delegate, kind, validUntil);
    }

    /// @inheritdoc IConsentRegistry
    function removeDelegate(address delegate) external {
        if (_delegations[msg.sender][delegate].kind == DelegateKind.None) {
            revert ConsentInvalidDelegate(delegate);
        }
        delete _delegations[msg.sender][delegate];
        emit DelegateRemoved(msg.sender, delegate);
    }

    // ----------------------------------------------------------------------------------------
    // Break-glass
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IConsentRegistry
    function openBreakGlass(address patient, BreakGlassReason reason, uint32 duration)
        external
        returns (uint64 id)
    {
        (address org, IProviderRegistry.OrgKind kind) = REGISTRY.activeOrganisationOf(msg.sender);
        if (
            org == address(0)
                || (kind != IProviderRegistry.OrgKind.Hospital && kind != IProviderRegistry.OrgKind.Clinic)
        ) {
            revert ConsentBreakGlassUnauthorized(msg.sender);
        }
        uint32 maxDuration = _maxBreakGlassDuration;
        if (reason == BreakGlassReason.None || duration == 0 || duration > maxDuration) {
            revert ConsentBreakGlassInvalid(reason, duration, maxDuration);
        }
        // Session ids are a uint64 counter; 2**64 sessions will never be opened.
        unchecked {
            id = ++_lastBreakGlassId;
        }
        uint40 expiresAt = uint40(block.timestamp) + duration;
        _breakGlass[patient][org] = BreakGlassSession({
            id: id,
            opener: msg.sender,
            openedAt: uint40(block.timestamp),
            expiresAt: expiresAt,
            reason: reason
        });
        emit BreakGlassOpened(id, patient, org, msg.sender, reason, expiresAt);
    }

    /// @inheritdoc IConsentRegistry
    function closeBreakGlass(address patient) external {
        // Any active member of the organisation may end its session, whatever the kind.
        // slither-disable-next-line unused-return (the kind is deliberately not checked)
        (address org,) = REGISTRY.activeOrganisationOf(msg.sender);
        if (org == address(0)) revert ConsentBreakGlassUnauthorized(msg.sender);
        BreakGlassSession storage session = _breakGlass[patient][org];
        if (session.expiresAt <= block.timestamp) revert ConsentBreakGlassNotOpen(patient, org);
        // The session stays on record, ended now.
        session.expiresAt = uint40(block.timestamp);
        emit BreakGlassClosed(session.id, patient, org, msg.sender);
    }

    /// @inheritdoc IConsentRegistry
    function setMaxBreakGlassDuration(uint32 maxDuration) external onlyRole(GOVERNOR_ROLE) {
        _maxBreakGlassDuration = maxDuration;
        emit BreakGlassMaxDurationSet(maxDuration);
    }

    // ----------------------------------------------------------------------------------------
    // Decision
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IConsentRegistry
    function decide(address patient, address requester, uint8 resourceType, uint8 action, uint8 purpose)
        external
        view
        returns (bool allowed, Basis basis)
    {
        if (
            resourceType >= FhirCodes.RESOURCE_TYPE_COUNT || action >= FhirCodes.ACTION_COUNT
                || purpose >= FhirCodes.PURPOSE_COUNT || patient == address(0) || requester == address(0)
        ) return (false, Basis.InvalidRequest);

        // Statuses first: a suspension must not be bypassed through the own-data or delegate rule.
        IProviderRegistry.Member memory m = REGISTRY.member(requester);
        if (m.status != IProviderRegistry.Status.None) {
            if (m.status != IProviderRegistry.Status.Active) return (false, Basis.KeySuspended);
            if (REGISTRY.organisation(m.org).status != IProviderRegistry.Status.Active) {
                return (false, Basis.OrganisationSuspended);
            }
        }
        if (requester == patient) return (true, Basis.OwnData);
        if (
            (action == FhirCodes.ACTION_READ || action == FhirCodes.ACTION_SEARCH)
                && isActiveDelegate(patient, requester)
        ) return (true, Basis.Delegate);
        if (m.status == IProviderRegistry.Status.None) return (false, Basis.UnknownRequester);

        Basis denial = _check(_consents[patient][requester], resourceType, action, purpose);
        if (denial == Basis.MemberConsent) return (true, Basis.MemberConsent);
        Basis orgDenial = _check(_consents[patient][m.org], resourceType, action, purpose);
        if (orgDenial == Basis.MemberConsent) return (true, Basis.OrganisationConsent);
        if (orgDenial > denial) denial = orgDenial;

        if (_breakGlassOpen(_breakGlass[patient][m.org])) {
            if (purpose != FhirCodes.PURPOSE_ETREAT) {
                if (Basis.PurposeNotCovered > denial) denial = Basis.PurposeNotCovered;
            } else if (action == FhirCodes.ACTION_DELETE) {
                if (Basis.ActionNotCovered > denial) denial = Basis.ActionNotCovered;
            } else {
                return (true, Basis.BreakGlass);
            }
        }
        return (false, denial);
    }

    // ----------------------------------------------------------------------------------------
    // Views
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IConsentRegistry
    function consentOf(address patient, address grantee) external view returns (Consent memory) {
        return _consents[patient][grantee];
    }

    /// @inheritdoc IConsentRegistry
    function delegateOf(address patient, address delegate)
        external
        view
        returns (DelegateKind kind, uint40 validUntil)
    {
        Delegation storage d = _delegations[patient][delegate];
        return (d.kind, d.validUntil);
    }

    /// @inheritdoc IConsentRegistry
    function isActiveDelegate(address patient, address delegate) public view returns (bool) {
        Delegation storage d = _delegations[patient][delegate];
        return d.kind != DelegateKind.None && d.validUntil > block.timestamp;
    }

    /// @inheritdoc IConsentRegistry
    function breakGlassOf(address patient, address org) external view returns (BreakGlassSession memory) {
        return _breakGlass[patient][org];
    }

    /// @notice Whether the break-glass session of `patient` for `org` allows access now: it is
    /// neither expired nor closed, nor older than the current governance maximum.
    function isBreakGlassOpen(address patient, address org) external view returns (bool) {
        return _breakGlassOpen(_breakGlass[patient][org]);
    }

    /// @inheritdoc IConsentRegistry
    function nonces(address patient) external view returns (uint256) {
        return _nonces[patient];
    }

    /// @inheritdoc IConsentRegistry
    function maxBreakGlassDuration() external view returns (uint32) {
        return _maxBreakGlassDuration;
    }

    /// @notice The EIP-712 digest a `Grant` signature signs, for wallets and relayers.
    function grantDigest(
        address patient,
        address grantee,
        Consent calldata scope,
        bytes32 consentHash,
        uint256 nonce,
        uint256 deadline
    ) external view returns (bytes32) {
        return _hashTypedDataV4(_hashGrant(patient, grantee, scope, consentHash, nonce, deadline));
    }

    /// @notice The EIP-712 digest a `Revoke` signature signs, for wallets and relayers.
    function revokeDigest(address patient, address grantee, uint256 nonce, uint256 deadline)
        external
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(REVOKE_TYPEHASH, patient, grantee, nonce, deadline)));
    }

    /// @notice The EIP-712 domain separator of this deployment on the current chain.
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ----------------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------------

    function _grant(
        address patient,
        address grantee,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint40 validFrom,
        uint40 validUntil,
        bytes32 consentHash,
        address actor
    ) private {
        if (grantee == address(0) || grantee == patient) {
            revert ConsentInvalidGrantee(grantee);
        }
        if (
            resourceTypes == 0 || resourceTypes & ~FhirCodes.ALL_RESOURCE_TYPES != 0 || actions == 0
                || actions & ~FhirCodes.ALL_ACTIONS != 0 || purposes == 0
                || purposes & ~FhirCodes.ALL_PURPOSES != 0
        ) revert ConsentInvalidScope(resourceTypes, actions, purposes);
        if (validUntil <= block.timestamp || validUntil <= validFrom) {
            revert ConsentInvalidPeriod(validFrom, validUntil);
        }
        _consents[patient][grantee] = Consent(resourceTypes, actions, purposes, validFrom, validUntil);
        emit ConsentGranted(
            patient, grantee, actor, resourceTypes, actions, purposes, validFrom, validUntil, consentHash
        );
    }

    function _revoke(address patient, address grantee, address actor) private {
        if (_consents[patient][grantee].validUntil == 0) revert ConsentNotFound(patient, grantee);
        delete _consents[patient][grantee];
        emit ConsentRevoked(patient, grantee, actor);
    }

    function _requireActor(address actor, address patient) private view {
        if (actor != patient && !isActiveDelegate(patient, actor)) {
            revert ConsentUnauthorizedActor(actor, patient);
        }
    }

    /// @dev Checks a signature over `structHash` (built with the patient's current nonce) and
    /// consumes that nonce, so the signature can never be used again.
    function _useSignature(
        address patient,
        bytes32 structHash,
        uint256 deadline,
        address signer,
        bytes calldata signature
    ) private {
        if (block.timestamp > deadline) revert ConsentExpiredSignature(deadline);
        _requireActor(signer, patient);
        if (!SignatureChecker.isValidSignatureNowCalldata(signer, _hashTypedDataV4(structHash), signature)) {
            revert ConsentInvalidSignature(signer);
        }
        // The nonce only grows by one here or by at most 2**64 in `invalidateNonces`: it cannot
        // come near 2**256.
        unchecked {
            ++_nonces[patient];
        }
    }

    /// @dev The `Grant` struct hash for a `grantBySig` call. Its first eight parameters are static,
    /// so they are ABI-encoded as eight 32-byte words right after the selector, in the order and
    /// encoding of the type's first eight fields, and the ABI decoder has already rejected any
    /// dirty word: they are hashed straight from calldata, which also keeps the stack shallow.
    function _grantStructHashFromCalldata(address patient, uint256 deadline) private view returns (bytes32) {
        return
            keccak256(bytes.concat(GRANT_TYPEHASH, msg.data[4:260], abi.encode(_nonces[patient], deadline)));
    }

    /// @dev The typed data is hashed in two halves: every field is a 32-byte word, so
    /// concatenating the halves is exactly `abi.encode` of the whole and keeps the stack shallow.
    function _hashGrant(
        address patient,
        address grantee,
        Consent memory scope,
        bytes32 consentHash,
        uint256 nonce,
        uint256 deadline
    ) private pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                abi.encode(
                    GRANT_TYPEHASH, patient, grantee, scope.resourceTypes, scope.actions, scope.purposes
                ),
                abi.encode(scope.validFrom, scope.validUntil, consentHash, nonce, deadline)
            )
        );
    }

    /// @dev `Basis.MemberConsent` when `c` covers the request now, else why not.
    function _check(Consent storage c, uint8 resourceType, uint8 action, uint8 purpose)
        private
        view
        returns (Basis)
    {
        Consent memory consent = c;
        if (consent.validUntil == 0) return Basis.NoConsent;
        if (consent.validUntil <= block.timestamp) return Basis.ConsentExpired;
        if (consent.validFrom > block.timestamp) return Basis.ConsentNotYetValid;
        if (consent.resourceTypes & (uint64(1) << resourceType) == 0) return Basis.ResourceTypeNotCovered;
        if (consent.actions & (uint8(1) << action) == 0) return Basis.ActionNotCovered;
        if (consent.purposes & (uint16(1) << purpose) == 0) return Basis.PurposeNotCovered;
        return Basis.MemberConsent;
    }

    /// @dev A session is open until its expiry, and never beyond the current governance
    /// maximum counted from its opening, so lowering the maximum cuts running sessions short.
    function _breakGlassOpen(BreakGlassSession storage session) private view returns (bool) {
        uint256 openedAt = session.openedAt;
        uint256 expiresAt = session.expiresAt;
        uint256 cap = openedAt + _maxBreakGlassDuration;
        return block.timestamp < expiresAt && block.timestamp < cap;
    }
}
