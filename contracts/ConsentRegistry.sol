// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IConsentRegistry} from "./interfaces/IConsentRegistry.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {FhirCodes} from "./libraries/FhirCodes.sol";

/// @title ConsentRegistry
/// @notice The patient's consent, delegates, signed (gas-free) consent and delegate changes and
/// break-glass sessions, and the one `decide` view the gateway asks before every access.
///
/// Decision rules, in order:
/// 1. an index outside the `FhirCodes` tables (or a zero patient or requester) is an invalid request;
/// 2. a requester that is a member key in the `ProviderRegistry` is denied while the key or its
///    organisation is not active, whatever else it is: a suspended key is denied everywhere,
///    also as a delegate or for its holder's own data;
/// 3. the patient may do anything with their own data;
/// 4. an active delegate may read and search the patient's data (a Proxy: the resource types
///    delegated to it); for other actions a delegate is resolved like any other requester;
/// 5. any other requester must be a member key: an organisation address is an identifier that
///    consent can name, never a requester itself;
/// 6. a consent to the key itself, then a consent to its organisation, allows; a consent a
///    delegate granted allows only while the delegation it was granted under is in force;
/// 7. an open break-glass session of the key's organisation allows purpose ETREAT, for every
///    resource type and every action except delete;
/// 8. otherwise the most specific denial found while looking: expired < not yet valid < resource
///    type < action < purpose not covered < delegation ended, and `NoConsent` when nothing
///    applied at all.
///
/// What each kind of delegate may do is the table on `IConsentRegistry.DelegateKind`.
///
/// Granting never calls the registry for the patient's own grants: a patient may consent to an
/// organisation before it is admitted, and statuses are checked when `decide` is asked.
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

    /// @notice EIP-712 type hash of a signed Guardian or Caregiver appointment. The relationship
    /// is signed as a word ("guardian", "caregiver") so that a wallet shows it as such.
    bytes32 public constant SET_DELEGATE_TYPEHASH = keccak256(
        "SetDelegate(address patient,address delegate,string relationship,uint40 validUntil,uint256 nonce,"
        "uint256 deadline)"
    );

    /// @notice EIP-712 type hash of a signed Proxy appointment with its delegated scope.
    bytes32 public constant SET_PROXY_TYPEHASH = keccak256(
        "SetProxy(address patient,address proxy,uint40 validUntil,uint64 resourceTypes,uint8 actions,"
        "uint16 purposes,uint256 nonce,uint256 deadline)"
    );

    /// @notice EIP-712 type hash of a signed delegate removal.
    bytes32 public constant REMOVE_DELEGATE_TYPEHASH =
        keccak256("RemoveDelegate(address patient,address delegate,uint256 nonce,uint256 deadline)");

    /// @dev Largest step `invalidateNonces` may take, so the nonce can never be pushed to overflow.
    uint256 private constant MAX_NONCE_INCREASE = 2 ** 64;

    /// @dev `until` when time alone changes nothing.
    uint40 private constant FOREVER = type(uint40).max;

    /// @notice The provider registry requesters are resolved against.
    IProviderRegistry public immutable REGISTRY;

    /// @dev A consent as stored: the public `Consent` plus the id of the delegation it was granted
    /// under (0: granted by the patient), in the slot's spare bits. One slot.
    struct StoredConsent {
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
        uint40 validFrom;
        uint40 validUntil;
        uint40 delegation;
    }

    /// @dev A lowering of the break-glass maximum: every session opened at or before `at` ends no
    /// later than `maxDuration` after its opening, whatever the maximum becomes later.
    struct MaxCut {
        uint40 at;
        uint32 maxDuration;
    }

    mapping(address patient => mapping(address grantee => StoredConsent)) private _consents;
    mapping(address patient => uint256) private _nonces;
    mapping(address patient => mapping(address delegate => Delegation)) private _delegations;
    /// @dev When the delegation with this id ends; 0 once it was removed or replaced.
    mapping(uint40 id => uint40 validUntil) private _delegationEnds;
    mapping(address patient => mapping(address org => BreakGlassSession)) private _breakGlass;
    /// @dev Lowerings of the maximum still binding some session: `at` and `maxDuration` both
    /// strictly increase along the array (a lowering drops every earlier one it is stricter than).
    MaxCut[] private _maxCuts;
    uint64 private _lastBreakGlassId;
    uint32 private _maxBreakGlassDuration;
    uint40 private _lastDelegationId;

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
        // A delegate's grant carries the delegation it was made under; the patient's own, none.
        uint40 delegation = msg.sender == patient
            ? 0
            : _delegateMayGrant(patient, grantee, resourceTypes, actions, purposes, validUntil, msg.sender);
        _grant(
            patient,
            grantee,
            resourceTypes,
            actions,
            purposes,
            validFrom,
            validUntil,
            consentHash,
            msg.sender,
            delegation
        );
    }

    /// @inheritdoc IConsentRegistry
    function revoke(address patient, address grantee) external {
        _revoke(patient, grantee, msg.sender);
    }

    /// @inheritdoc IConsentRegistry
    function grantBySig(Grant calldata request, address signer, bytes calldata signature) external {
        // Copying the request checks every field (a word with dirty high bits reverts), so the raw
        // calldata words hashed next are exactly the values used afterwards.
        Grant memory g = request;
        _useSignature(g.patient, g.nonce, _grantStructHashFromCalldata(), g.deadline, signer, signature);
        uint40 delegation = signer == g.patient
            ? 0
            : _delegateMayGrant(
                g.patient, g.grantee, g.resourceTypes, g.actions, g.purposes, g.validUntil, signer
            );
        _grant(
            g.patient,
            g.grantee,
            g.resourceTypes,
            g.actions,
            g.purposes,
            g.validFrom,
            g.validUntil,
            g.consentHash,
            signer,
            delegation
        );
    }

    /// @inheritdoc IConsentRegistry
    function revokeBySig(
        address patient,
        address grantee,
        uint256 nonce,
        uint256 deadline,
        address signer,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(abi.encode(REVOKE_TYPEHASH, patient, grantee, nonce, deadline));
        _useSignature(patient, nonce, structHash, deadline, signer, signature);
        _revoke(patient, grantee, signer);
    }

    /// @inheritdoc IConsentRegistry
    function invalidateNonces(address patient, uint256 newNonce) external {
        if (msg.sender != patient) revert ConsentPatientOnly(msg.sender, patient);
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
        if (kind == DelegateKind.Proxy) revert ConsentInvalidDelegate(delegate);
        _setDelegate(msg.sender, delegate, kind, validUntil, 0, 0, 0);
    }

    /// @inheritdoc IConsentRegistry
    function setProxy(
        address delegate,
        uint40 validUntil,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes
    ) external {
        _setDelegate(msg.sender, delegate, DelegateKind.Proxy, validUntil, resourceTypes, actions, purposes);
    }

    /// @inheritdoc IConsentRegistry
    function removeDelegate(address delegate) external {
        _removeDelegate(msg.sender, delegate);
    }

    /// @inheritdoc IConsentRegistry
    function setDelegateBySig(
        address patient,
        address delegate,
        DelegateKind kind,
        uint40 validUntil,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        _useSignature(
            patient,
            nonce,
            _hashSetDelegate(patient, delegate, kind, validUntil, nonce, deadline),
            deadline,
            patient,
            signature
        );
        if (kind == DelegateKind.Proxy) revert ConsentInvalidDelegate(delegate);
        _setDelegate(patient, delegate, kind, validUntil, 0, 0, 0);
    }

    /// @inheritdoc IConsentRegistry
    function setProxyBySig(
        address patient,
        address delegate,
        uint40 validUntil,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        // The eight static parameters are the `SetProxy` fields in order: hashed from calldata.
        bytes32 structHash = keccak256(bytes.concat(SET_PROXY_TYPEHASH, msg.data[4:260]));
        _useSignature(patient, nonce, structHash, deadline, patient, signature);
        _setDelegate(patient, delegate, DelegateKind.Proxy, validUntil, resourceTypes, actions, purposes);
    }

    /// @inheritdoc IConsentRegistry
    function removeDelegateBySig(
        address patient,
        address delegate,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(REMOVE_DELEGATE_TYPEHASH, patient, delegate, nonce, deadline)
        );
        _useSignature(patient, nonce, structHash, deadline, patient, signature);
        _removeDelegate(patient, delegate);
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
        if (patient == address(0)) revert ConsentInvalidPatient(patient);
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
        uint32 previous = _maxBreakGlassDuration;
        _maxBreakGlassDuration = maxDuration;
        if (maxDuration < previous) {
            // A lowering binds every session opened so far, for good: an earlier lowering that
            // is no stricter than this one binds nothing this one does not, so it is dropped.
            uint256 n = _maxCuts.length;
            while (n != 0 && _maxCuts[n - 1].maxDuration >= maxDuration) {
                _maxCuts.pop();
                --n;
            }
            _maxCuts.push(MaxCut(uint40(block.timestamp), maxDuration));
        }
        emit BreakGlassMaxDurationSet(maxDuration);
    }

    // ----------------------------------------------------------------------------------------
    // Decision
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IConsentRegistry
    function decide(address patient, address requester, uint8 resourceType, uint8 action, uint8 purpose)
        external
        view
        returns (bool allowed, Basis basis, uint40 until)
    {
        if (
            resourceType >= FhirCodes.RESOURCE_TYPE_COUNT || action >= FhirCodes.ACTION_COUNT
                || purpose >= FhirCodes.PURPOSE_COUNT || patient == address(0) || requester == address(0)
        ) return (false, Basis.InvalidRequest, FOREVER);

        // Statuses first: a suspension must not be bypassed through the own-data or delegate rule.
        IProviderRegistry.Member memory m = REGISTRY.member(requester);
        if (m.status != IProviderRegistry.Status.None) {
            if (m.status != IProviderRegistry.Status.Active) return (false, Basis.KeySuspended, FOREVER);
            if (REGISTRY.organisation(m.org).status != IProviderRegistry.Status.Active) {
                return (false, Basis.OrganisationSuspended, FOREVER);
            }
        }
        if (requester == patient) return (true, Basis.OwnData, FOREVER);
        if (action == FhirCodes.ACTION_READ || action == FhirCodes.ACTION_SEARCH) {
            uint40 delegateUntil = _readingDelegationEnd(patient, requester, resourceType);
            if (delegateUntil != 0) return (true, Basis.Delegate, delegateUntil);
        }
        if (m.status == IProviderRegistry.Status.None) return (false, Basis.UnknownRequester, FOREVER);

        uint40 orgUntil;
        (basis, until) = _check(_consents[patient][requester], resourceType, action, purpose);
        if (basis == Basis.MemberConsent) return (true, basis, until);
        Basis orgBasis;
        (orgBasis, orgUntil) = _check(_consents[patient][m.org], resourceType, action, purpose);
        if (orgBasis == Basis.MemberConsent) return (true, Basis.OrganisationConsent, orgUntil);
        if (orgBasis > basis) basis = orgBasis;
        if (orgUntil < until) until = orgUntil;

        uint256 sessionEnd = _breakGlassEnd(_breakGlass[patient][m.org]);
        if (block.timestamp < sessionEnd) {
            if (purpose != FhirCodes.PURPOSE_ETREAT) {
                if (Basis.PurposeNotCovered > basis) basis = Basis.PurposeNotCovered;
            } else if (action == FhirCodes.ACTION_DELETE) {
                if (Basis.ActionNotCovered > basis) basis = Basis.ActionNotCovered;
            } else {
                // casting to 'uint40' is safe because the end is at most the session's uint40 expiry.
                // forge-lint: disable-next-line(unsafe-typecast)
                return (true, Basis.BreakGlass, uint40(sessionEnd));
            }
        }
        return (false, basis, until);
    }

    // ----------------------------------------------------------------------------------------
    // Views
    // ----------------------------------------------------------------------------------------

    /// @inheritdoc IConsentRegistry
    function consentOf(address patient, address grantee) external view returns (Consent memory) {
        StoredConsent storage c = _consents[patient][grantee];
        return Consent(c.resourceTypes, c.actions, c.purposes, c.validFrom, c.validUntil);
    }

    /// @inheritdoc IConsentRegistry
    function grantingDelegationOf(address patient, address grantee)
        external
        view
        returns (uint40 id, uint40 delegationEnd)
    {
        id = _consents[patient][grantee].delegation;
        if (id != 0) delegationEnd = _delegationEnds[id];
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
    function delegationOf(address patient, address delegate) external view returns (Delegation memory) {
        return _delegations[patient][delegate];
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
    /// neither expired nor closed, nor cut by a lowering of the maximum since it opened.
    function isBreakGlassOpen(address patient, address org) external view returns (bool) {
        return block.timestamp < _breakGlassEnd(_breakGlass[patient][org]);
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

    /// @notice The EIP-712 digest a `SetDelegate` signature signs, for wallets and relayers.
    function setDelegateDigest(
        address patient,
        address delegate,
        DelegateKind kind,
        uint40 validUntil,
        uint256 nonce,
        uint256 deadline
    ) external view returns (bytes32) {
        return _hashTypedDataV4(_hashSetDelegate(patient, delegate, kind, validUntil, nonce, deadline));
    }

    /// @notice The EIP-712 digest a `SetProxy` signature signs, for wallets and relayers.
    function setProxyDigest(
        address patient,
        address delegate,
        uint40 validUntil,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint256 nonce,
        uint256 deadline
    ) external view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                bytes.concat(
                    abi.encode(SET_PROXY_TYPEHASH, patient, delegate, validUntil, resourceTypes),
                    abi.encode(actions, purposes, nonce, deadline)
                )
            )
        );
    }

    /// @notice The EIP-712 digest a `RemoveDelegate` signature signs, for wallets and relayers.
    function removeDelegateDigest(address patient, address delegate, uint256 nonce, uint256 deadline)
        external
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(REMOVE_DELEGATE_TYPEHASH, patient, delegate, nonce, deadline))
        );
    }

    /// @notice The EIP-712 domain separator of this deployment on the current chain.
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ----------------------------------------------------------------------------------------
    // Internals: consent
    // ----------------------------------------------------------------------------------------

    /// @dev Stores a consent once its arguments check out; `delegation` is the id of the
    /// delegation the actor granted under (0 for the patient), already checked.
    function _grant(
        address patient,
        address grantee,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint40 validFrom,
        uint40 validUntil,
        bytes32 consentHash,
        address actor,
        uint40 delegation
    ) private {
        if (grantee == address(0) || grantee == patient) {
            revert ConsentInvalidGrantee(grantee);
        }
        _requireValidScope(resourceTypes, actions, purposes);
        if (validUntil <= block.timestamp || validUntil <= validFrom) {
            revert ConsentInvalidPeriod(validFrom, validUntil);
        }
        StoredConsent storage stored = _consents[patient][grantee];
        // The whole slot in one SSTORE, in `StoredConsent`'s packing (fields from the low bits up):
        // a struct assignment would read and write the slot once per field.
        assembly ("memory-safe") {
            sstore(
                stored.slot,
                or(
                    or(
                        and(resourceTypes, 0xffffffffffffffff),
                        or(shl(64, and(actions, 0xff)), shl(72, and(purposes, 0xffff)))
                    ),
                    or(
                        shl(88, and(validFrom, 0xffffffffff)),
                        or(shl(128, and(validUntil, 0xffffffffff)), shl(168, and(delegation, 0xffffffffff)))
                    )
                )
            )
        }
        emit ConsentGranted(
            patient, grantee, actor, resourceTypes, actions, purposes, validFrom, validUntil, consentHash
        );
    }

    /// @dev Checks that `delegate` may grant this for `patient` (see `DelegateKind`); returns the
    /// id of its delegation, which the consent then carries.
    function _delegateMayGrant(
        address patient,
        address grantee,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes,
        uint40 validUntil,
        address delegate
    ) private view returns (uint40) {
        Delegation memory d = _actingDelegation(patient, delegate);
        if (d.kind == DelegateKind.Proxy) {
            if (
                resourceTypes & ~d.resourceTypes != 0 || actions & ~d.actions != 0
                    || purposes & ~d.purposes != 0
            ) revert ConsentScopeExceedsDelegation(delegate, d.resourceTypes, d.actions, d.purposes);
            StoredConsent storage existing = _consents[patient][grantee];
            if (existing.validUntil != 0 && existing.delegation != d.id) {
                revert ConsentNotGrantedByDelegate(patient, grantee, delegate);
            }
        }
        if (validUntil > d.validUntil) revert ConsentPeriodExceedsDelegation(validUntil, d.validUntil);
        _requireNotSelfDealing(delegate, grantee);
        return d.id;
    }

    /// @dev A delegate may not name itself, its organisation or a member key of its organisation.
    /// Its organisation is the one it is a member key of, or itself when it is an organisation's
    /// address (which manages that organisation's keys). Keys it holds under other addresses are
    /// not knowable on chain.
    function _requireNotSelfDealing(address delegate, address grantee) private view {
        if (grantee == delegate) revert ConsentInvalidDelegateGrantee(delegate, grantee);
        address org = REGISTRY.member(delegate).org;
        if (org == address(0) && REGISTRY.organisation(delegate).kind != IProviderRegistry.OrgKind.None) {
            org = delegate;
        }
        if (org != address(0) && (grantee == org || REGISTRY.member(grantee).org == org)) {
            revert ConsentInvalidDelegateGrantee(delegate, grantee);
        }
    }

    function _revoke(address patient, address grantee, address actor) private {
        StoredConsent storage c = _consents[patient][grantee];
        if (actor != patient) {
            Delegation memory d = _actingDelegation(patient, actor);
            if (d.kind == DelegateKind.Proxy && c.validUntil != 0 && c.delegation != d.id) {
                revert ConsentNotGrantedByDelegate(patient, grantee, actor);
            }
        }
        if (c.validUntil == 0) revert ConsentNotFound(patient, grantee);
        delete _consents[patient][grantee];
        emit ConsentRevoked(patient, grantee, actor);
    }

    /// @dev The delegation under which `actor` changes `patient`'s consent: an active Guardian or
    /// Proxy. A stranger or an ended delegation is not an actor at all; a Caregiver never changes
    /// consent.
    function _actingDelegation(address patient, address actor) private view returns (Delegation memory d) {
        d = _delegations[patient][actor];
        if (d.kind == DelegateKind.None || d.validUntil <= block.timestamp) {
            revert ConsentUnauthorizedActor(actor, patient);
        }
        if (d.kind == DelegateKind.Caregiver) revert ConsentUnauthorizedDelegate(actor, patient, d.kind);
    }

    function _requireValidScope(uint64 resourceTypes, uint8 actions, uint16 purposes) private pure {
        if (
            resourceTypes == 0 || resourceTypes & ~FhirCodes.ALL_RESOURCE_TYPES != 0 || actions == 0
                || actions & ~FhirCodes.ALL_ACTIONS != 0 || purposes == 0
                || purposes & ~FhirCodes.ALL_PURPOSES != 0
        ) revert ConsentInvalidScope(resourceTypes, actions, purposes);
    }

    // ----------------------------------------------------------------------------------------
    // Internals: delegates
    // ----------------------------------------------------------------------------------------

    function _setDelegate(
        address patient,
        address delegate,
        DelegateKind kind,
        uint40 validUntil,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes
    ) private {
        if (delegate == address(0) || delegate == patient || kind == DelegateKind.None) {
            revert ConsentInvalidDelegate(delegate);
        }
        if (kind == DelegateKind.Proxy) _requireValidScope(resourceTypes, actions, purposes);
        if (validUntil <= block.timestamp) revert ConsentInvalidPeriod(0, validUntil);
        Delegation storage stored = _delegations[patient][delegate];
        uint40 id = stored.id;
        bool sameAuthority = stored.kind == kind && stored.validUntil > block.timestamp
            && stored.resourceTypes == resourceTypes && stored.actions == actions
            && stored.purposes == purposes;
        if (!sameAuthority) {
            // What was granted under the previous delegation ends with it.
            if (id != 0) delete _delegationEnds[id];
            // A uint40 counter of delegations will never wrap.
            unchecked {
                id = ++_lastDelegationId;
            }
        }
        _delegations[patient][delegate] = Delegation(kind, validUntil, id, resourceTypes, actions, purposes);
        _delegationEnds[id] = validUntil;
        emit DelegateSet(patient, delegate, kind, validUntil);
        if (kind == DelegateKind.Proxy) {
            emit ProxyScopeSet(patient, delegate, resourceTypes, actions, purposes);
        }
    }

    function _removeDelegate(address patient, address delegate) private {
        Delegation storage stored = _delegations[patient][delegate];
        if (stored.kind == DelegateKind.None) revert ConsentDelegateNotFound(patient, delegate);
        delete _delegationEnds[stored.id];
        delete _delegations[patient][delegate];
        emit DelegateRemoved(patient, delegate);
    }

    /// @dev The end of `requester`'s delegation when it lets it read `resourceType` of `patient`
    /// now, else 0.
    function _readingDelegationEnd(address patient, address requester, uint8 resourceType)
        private
        view
        returns (uint40)
    {
        Delegation storage d = _delegations[patient][requester];
        (DelegateKind kind, uint40 validUntil, uint64 resourceTypes) = (d.kind, d.validUntil, d.resourceTypes);
        if (kind == DelegateKind.None || validUntil <= block.timestamp) return 0;
        if (kind == DelegateKind.Proxy && resourceTypes & (uint64(1) << resourceType) == 0) return 0;
        return validUntil;
    }

    // ----------------------------------------------------------------------------------------
    // Internals: signatures
    // ----------------------------------------------------------------------------------------

    /// @dev Checks a signature over `structHash` made for the patient's current nonce and uses that
    /// nonce up, so the signature can never be used again.
    function _useSignature(
        address patient,
        uint256 nonce,
        bytes32 structHash,
        uint256 deadline,
        address signer,
        bytes calldata signature
    ) private {
        if (block.timestamp > deadline) revert ConsentExpiredSignature(deadline);
        uint256 current = _nonces[patient];
        if (nonce != current) revert ConsentInvalidNonce(patient, current);
        if (!SignatureChecker.isValidSignatureNowCalldata(signer, _hashTypedDataV4(structHash), signature)) {
            revert ConsentInvalidSignature(signer);
        }
        // The nonce only grows by one here or by at most 2**64 in `invalidateNonces`: it cannot
        // come near 2**256.
        unchecked {
            _nonces[patient] = current + 1;
        }
    }

    /// @dev The `Grant` struct hash for a `grantBySig` call. Its first parameter is a static struct
    /// of the type's ten fields in order and encoding, ABI-encoded as ten 32-byte words right
    /// after the selector, already checked for dirty words by the copy to memory: they are hashed
    /// straight from calldata.
    function _grantStructHashFromCalldata() private pure returns (bytes32) {
        return keccak256(bytes.concat(GRANT_TYPEHASH, msg.data[4:324]));
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

    function _hashSetDelegate(
        address patient,
        address delegate,
        DelegateKind kind,
        uint40 validUntil,
        uint256 nonce,
        uint256 deadline
    ) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                SET_DELEGATE_TYPEHASH, patient, delegate, _relationshipHash(kind), validUntil, nonce, deadline
            )
        );
    }

    /// @dev EIP-712 encodes a `string` field as the keccak of its bytes. A Proxy or `None` is never
    /// appointed through `SetDelegate`; their words only let such a call fail on its argument.
    function _relationshipHash(DelegateKind kind) private pure returns (bytes32) {
        if (kind == DelegateKind.Guardian) return keccak256("guardian");
        if (kind == DelegateKind.Caregiver) return keccak256("caregiver");
        if (kind == DelegateKind.Proxy) return keccak256("proxy");
        return keccak256("");
    }

    // ----------------------------------------------------------------------------------------
    // Internals: decision
    // ----------------------------------------------------------------------------------------

    /// @dev `Basis.MemberConsent` and the end of what allows when `c` covers the request now;
    /// else why not, with the consent's `validFrom` when only time stands in the way.
    function _check(StoredConsent storage c, uint8 resourceType, uint8 action, uint8 purpose)
        private
        view
        returns (Basis, uint40)
    {
        StoredConsent memory consent = c;
        if (consent.validUntil == 0) return (Basis.NoConsent, FOREVER);
        if (consent.validUntil <= block.timestamp) return (Basis.ConsentExpired, FOREVER);
        if (consent.validFrom > block.timestamp) return (Basis.ConsentNotYetValid, consent.validFrom);
        if (consent.resourceTypes & (uint64(1) << resourceType) == 0) {
            return (Basis.ResourceTypeNotCovered, FOREVER);
        }
        if (consent.actions & (uint8(1) << action) == 0) return (Basis.ActionNotCovered, FOREVER);
        if (consent.purposes & (uint16(1) << purpose) == 0) return (Basis.PurposeNotCovered, FOREVER);
        uint40 until = consent.validUntil;
        if (consent.delegation != 0) {
            uint40 delegationEnd = _delegationEnds[consent.delegation];
            if (delegationEnd <= block.timestamp) return (Basis.DelegationEnded, FOREVER);
            if (delegationEnd < until) until = delegationEnd;
        }
        return (Basis.MemberConsent, until);
    }

    /// @dev When `session` stops allowing: its expiry, or earlier when a lowering of the maximum
    /// at or after its opening cut it (the strictest such lowering is the first one at or after
    /// it, as `_maxCuts` grows stricter towards the past). 0 when there is no session.
    function _breakGlassEnd(BreakGlassSession storage session) private view returns (uint256 end) {
        end = session.expiresAt;
        if (end <= block.timestamp) return end;
        uint256 openedAt = session.openedAt;
        uint256 low = 0;
        uint256 high = _maxCuts.length;
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (_maxCuts[mid].at < openedAt) low = mid + 1;
            else high = mid;
        }
        if (low < _maxCuts.length) {
            uint256 cap = openedAt + _maxCuts[low].maxDuration;
            if (cap < end) end = cap;
        }
    }
}
