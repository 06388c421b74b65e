// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title IConsentRegistry
/// @notice A patient's consent, a compact on-chain mirror of FHIR `Consent.provision`, with
/// delegates, gas-free EIP-712 signed changes and time-boxed break-glass access. The bit
/// tables for resource types, actions and purposes are documented in `FhirCodes`.
interface IConsentRegistry {
    /// @notice One consent: the scope granted to one grantee, packed into one storage slot.
    /// `validUntil == 0` means no consent is stored.
    struct Consent {
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
        uint40 validFrom;
        uint40 validUntil;
    }

    /// @notice Relationship of a delegate to the patient (FHIR RelatedPerson), and with it what the
    /// delegate may do for the patient:
    ///
    /// | Kind      | Reads and searches   | Grants                                  | Revokes                |
    /// | --------- | -------------------- | --------------------------------------- | ---------------------- |
    /// | Guardian  | every resource type  | any scope                               | any consent            |
    /// | Proxy     | its delegated types  | only within its delegated scope         | only what it granted   |
    /// | Caregiver | every resource type  | never                                   | never                  |
    ///
    /// A Guardian is the patient's legal representative (RelatedPerson.relationship `GUARD`, a
    /// parent or a court-appointed guardian, or a healthcare power of attorney): FHIR names such
    /// a person a Consent `performer` or `grantor` acting for the patient, so it may make any
    /// consent decision the patient could. A Proxy is an agent the patient appointed for part of
    /// their affairs: its authority is itself a consent provision, so it consents only inside the
    /// resource types, actions and purposes the patient delegated and may withdraw only what it
    /// granted itself. A Caregiver (family member, carer) is a RelatedPerson who helps with care:
    /// patient portals give such a person proxy *access*, never the patient's right to consent.
    /// Whatever a delegate grants ends no later than its delegation and stops allowing once the
    /// delegation is removed, replaced by another kind or scope, or expires; no delegate grants to
    /// itself, to its own organisation or to a member key of that organisation. Managing
    /// delegates and cancelling signatures is for the patient alone.
    enum DelegateKind {
        None,
        Guardian,
        Caregiver,
        Proxy
    }

    /// @notice A signed grant: the EIP-712 `Grant` type's fields, in its order and types. As a
    /// static struct it is ABI-encoded as these ten words in a row, which is what gets hashed.
    struct Grant {
        address patient;
        address grantee;
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
        uint40 validFrom;
        uint40 validUntil;
        bytes32 consentHash;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice A delegation as stored: one slot.
    /// @dev `id` is unique over the registry and stored in every consent the delegate grants, so
    /// `decide` finds whether that delegation is still in force. Re-setting an unexpired delegation
    /// with the same kind and scope keeps its id (only its end moves); any other change starts a
    /// new id, which cuts what was granted under the old one. The scope is a Proxy's only.
    struct Delegation {
        DelegateKind kind;
        uint40 validUntil;
        uint40 id;
        uint64 resourceTypes;
        uint8 actions;
        uint16 purposes;
    }

    /// @notice Coded reason for an emergency access; free text is never accepted.
    enum BreakGlassReason {
        None,
        PatientUnconscious,
        LifeThreatening,
        ImminentRiskOfHarm,
        PatientUnableToCommunicate
    }

    /// @notice Why `decide` answered as it did. Values 1-5 allow, every other value denies.
    /// `DelegationEnded`: the consent covered the request, but the delegation under which a
    /// delegate granted it has ended (removed, replaced or expired).
    enum Basis {
        NoConsent,
        OwnData,
        Delegate,
        MemberConsent,
        OrganisationConsent,
        BreakGlass,
        UnknownRequester,
        KeySuspended,
        OrganisationSuspended,
        ConsentExpired,
        ConsentNotYetValid,
        ResourceTypeNotCovered,
        ActionNotCovered,
        PurposeNotCovered,
        InvalidRequest,
        DelegationEnded
    }

    /// @notice A break-glass session for one patient and one organisation.
    struct BreakGlassSession {
        uint64 id;
        address opener;
        uint40 openedAt;
        uint40 expiresAt;
        BreakGlassReason reason;
    }

    /// @notice The grantee is the zero address or the patient.
    error ConsentInvalidGrantee(address grantee);
    /// @notice The scope is empty or names bits outside the code tables.
    error ConsentInvalidScope(uint64 resourceTypes, uint8 actions, uint16 purposes);
    /// @notice The validity period is empty or already over.
    error ConsentInvalidPeriod(uint40 validFrom, uint40 validUntil);
    /// @notice The caller is neither the patient nor an active delegate of the patient.
    error ConsentUnauthorizedActor(address actor, address patient);
    /// @notice The delegate is active, but its kind may not do this (a Caregiver never changes
    /// consent).
    error ConsentUnauthorizedDelegate(address delegate, address patient, DelegateKind kind);
    /// @notice Only the patient may do this (cancel signatures); delegates may not.
    error ConsentPatientOnly(address actor, address patient);
    /// @notice A Proxy granted beyond the scope the patient delegated to it (shown).
    error ConsentScopeExceedsDelegation(
        address delegate, uint64 resourceTypes, uint8 actions, uint16 purposes
    );
    /// @notice A delegate's grant would outlive its delegation, which ends at `delegationEnd`.
    error ConsentPeriodExceedsDelegation(uint40 validUntil, uint40 delegationEnd);
    /// @notice A delegate named itself, its own organisation or a member key of that organisation.
    error ConsentInvalidDelegateGrantee(address delegate, address grantee);
    /// @notice A Proxy may replace or revoke only the consents it granted itself.
    error ConsentNotGrantedByDelegate(address patient, address grantee, address delegate);
    /// @notice There is no stored consent to revoke.
    error ConsentNotFound(address patient, address grantee);
    /// @notice The signature's deadline has passed.
    error ConsentExpiredSignature(uint256 deadline);
    /// @notice The signature does not verify for the claimed signer.
    error ConsentInvalidSignature(address signer);
    /// @notice The signed nonce is not the patient's current nonce (used, cancelled or ahead).
    error ConsentInvalidNonce(address patient, uint256 currentNonce);
    /// @notice A new nonce must be larger than the current one, by at most 2**64.
    error ConsentInvalidNonceIncrease(uint256 currentNonce, uint256 newNonce);
    /// @notice The delegate is the zero address or the patient, or the kind is `None`, or a Proxy
    /// was set without a scope (`setProxy` sets one).
    error ConsentInvalidDelegate(address delegate);
    /// @notice The address is not a delegate of the patient: nothing to remove.
    error ConsentDelegateNotFound(address patient, address delegate);
    /// @notice The patient is the zero address.
    error ConsentInvalidPatient(address patient);
    /// @notice The requester may not open break-glass (not an active member of a hospital or clinic).
    error ConsentBreakGlassUnauthorized(address requester);
    /// @notice The reason is `None` or the duration is zero or above the governance maximum.
    error ConsentBreakGlassInvalid(BreakGlassReason reason, uint32 duration, uint32 maxDuration);
    /// @notice There is no open break-glass session to close.
    error ConsentBreakGlassNotOpen(address patient, address org);
    /// @notice A constructor argument (registry or governor) is the zero address.
    error ConsentInvalidConfiguration();

    /// @notice A consent was granted or replaced. `consentHash` is the keccak-256 of the
    /// canonical (RFC 8785) FHIR Consent JSON. `actor` is the patient or the delegate who acted.
    event ConsentGranted(
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
    /// @notice A consent was revoked.
    event ConsentRevoked(address indexed patient, address indexed grantee, address indexed actor);
    /// @notice Outstanding signatures below `newNonce` were cancelled.
    event NoncesInvalidated(address indexed patient, address indexed actor, uint256 newNonce);
    /// @notice A delegate was added or updated.
    event DelegateSet(
        address indexed patient, address indexed delegate, DelegateKind kind, uint40 validUntil
    );
    /// @notice A Proxy's delegated scope was set (right after its `DelegateSet`): the most it may
    /// grant, and the resource types it may read.
    event ProxyScopeSet(
        address indexed patient,
        address indexed delegate,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes
    );
    /// @notice A delegate was removed.
    event DelegateRemoved(address indexed patient, address indexed delegate);
    /// @notice A break-glass session was opened; always subject to compliance review.
    event BreakGlassOpened(
        uint64 indexed id,
        address indexed patient,
        address indexed org,
        address opener,
        BreakGlassReason reason,
        uint40 expiresAt
    );
    /// @notice A break-glass session was closed before its expiry.
    event BreakGlassClosed(uint64 indexed id, address indexed patient, address indexed org, address closer);
    /// @notice Governance changed the maximum break-glass duration.
    event BreakGlassMaxDurationSet(uint32 maxDuration);

    /// @notice Grant or replace a consent. The caller is the patient, or an active Guardian or
    /// Proxy of the patient within its authority (see `DelegateKind`).
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

    /// @notice Revoke a consent. The caller is the patient, an active Guardian, or an active
    /// Proxy for a consent it granted.
    function revoke(address patient, address grantee) external;

    /// @notice Grant by an EIP-712 `Grant` signature of the patient or an authorised active
    /// delegate (`signer`, an EOA or an ERC-1271 wallet), submitted by anyone. `nonce` is the
    /// patient's current nonce, which the signature uses up.
    function grantBySig(Grant calldata request, address signer, bytes calldata signature) external;

    /// @notice Revoke by an EIP-712 `Revoke` signature of the patient or an authorised active
    /// delegate, submitted by anyone.
    function revokeBySig(
        address patient,
        address grantee,
        uint256 nonce,
        uint256 deadline,
        address signer,
        bytes calldata signature
    ) external;

    /// @notice Cancel every outstanding signature of `patient` by raising the nonce (the patient
    /// only).
    function invalidateNonces(address patient, uint256 newNonce) external;

    /// @notice Appoint or update a Guardian or Caregiver (the patient, for their own delegates).
    function setDelegate(address delegate, DelegateKind kind, uint40 validUntil) external;
    /// @notice Appoint or update a Proxy with the scope it may grant within and read.
    function setProxy(
        address delegate,
        uint40 validUntil,
        uint64 resourceTypes,
        uint8 actions,
        uint16 purposes
    ) external;
    /// @notice Remove a delegate (the patient only); what it granted stops allowing.
    function removeDelegate(address delegate) external;

    /// @notice `setDelegate` by an EIP-712 `SetDelegate` signature of the patient (an EOA or an
    /// ERC-1271 wallet), submitted by anyone: gas-free for the patient.
    function setDelegateBySig(
        address patient,
        address delegate,
        DelegateKind kind,
        uint40 validUntil,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice `setProxy` by an EIP-712 `SetProxy` signature of the patient, submitted by anyone.
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
    ) external;

    /// @notice `removeDelegate` by an EIP-712 `RemoveDelegate` signature of the patient,
    /// submitted by anyone.
    function removeDelegateBySig(
        address patient,
        address delegate,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Open a time-boxed emergency access to `patient` for the caller's organisation.
    function openBreakGlass(address patient, BreakGlassReason reason, uint32 duration)
        external
        returns (uint64 id);
    /// @notice Close the caller's organisation's open session for `patient`.
    function closeBreakGlass(address patient) external;
    /// @notice Set the maximum break-glass duration in seconds (governance only). Lowering it cuts
    /// running sessions short; raising it never lengthens or re-opens a session opened before.
    function setMaxBreakGlassDuration(uint32 maxDuration) external;

    /// @notice Allowed or denied, why, and until when that answer holds by the passing of time
    /// alone: resolves `requester` to its organisation and statuses. `resourceType`, `action`
    /// and `purpose` are bit indices into the `FhirCodes` tables.
    /// @return allowed Whether the request is allowed now.
    /// @return basis Why.
    /// @return until The first moment (unix seconds) at which time alone may change `allowed`:
    /// when allowed, the earliest end of what allows it (the consent's `validUntil`, the end of
    /// the delegation that granted it, the break-glass session's end, or the requester's own
    /// delegation for `Basis.Delegate`); when denied, the earliest `validFrom` of a consent looked
    /// at that has not started yet. `type(uint40).max` when time alone changes nothing.
    function decide(address patient, address requester, uint8 resourceType, uint8 action, uint8 purpose)
        external
        view
        returns (bool allowed, Basis basis, uint40 until);

    /// @notice The stored consent of `patient` to `grantee`.
    function consentOf(address patient, address grantee) external view returns (Consent memory);
    /// @notice The delegation a stored consent was granted under (`id` 0: the patient's own) and
    /// when that delegation ends (0 once removed or replaced).
    function grantingDelegationOf(address patient, address grantee)
        external
        view
        returns (uint40 id, uint40 delegationEnd);
    /// @notice The delegate's kind and expiry.
    function delegateOf(address patient, address delegate)
        external
        view
        returns (DelegateKind kind, uint40 validUntil);
    /// @notice The whole stored delegation of `delegate` for `patient`.
    function delegationOf(address patient, address delegate) external view returns (Delegation memory);
    /// @notice Whether `delegate` is an unexpired delegate of `patient`.
    function isActiveDelegate(address patient, address delegate) external view returns (bool);
    /// @notice The break-glass session of `patient` for `org` (possibly expired).
    function breakGlassOf(address patient, address org) external view returns (BreakGlassSession memory);
    /// @notice The patient's current signature nonce.
    function nonces(address patient) external view returns (uint256);
    /// @notice Maximum break-glass duration in seconds.
    function maxBreakGlassDuration() external view returns (uint32);
}
