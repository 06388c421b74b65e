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

    /// @notice Relationship of a delegate to the patient (FHIR RelatedPerson).
    enum DelegateKind {
        None,
        Guardian,
        Caregiver,
        Proxy
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
        InvalidRequest
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
    /// @notice The caller is neither the patient nor an active delegate.
    error ConsentUnauthorizedActor(address actor, address patient);
    /// @notice There is no stored consent to revoke.
    error ConsentNotFound(address patient, address grantee);
    /// @notice The signature's deadline has passed.
    error ConsentExpiredSignature(uint256 deadline);
    /// @notice The signature does not verify for the claimed signer.
    error ConsentInvalidSignature(address signer);
    /// @notice The nonce is not the patient's current nonce.
    error ConsentInvalidNonce(address patient, uint256 currentNonce);
    /// @notice A new nonce must be larger than the current one, by at most 2**64.
    error ConsentInvalidNonceIncrease(uint256 currentNonce, uint256 newNonce);
    /// @notice The delegate is the zero address or the patient, or the kind is `None`.
    error ConsentInvalidDelegate(address delegate);
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

    /// @notice Grant or replace a consent; the caller is the patient or an active delegate.
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

    /// @notice Revoke a consent; the caller is the patient or an active delegate.
    function revoke(address patient, address grantee) external;

    /// @notice Grant by an EIP-712 `Grant` signature of the patient or an active delegate
    /// (`signer`), submitted by anyone.
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
    ) external;

    /// @notice Revoke by an EIP-712 `Revoke` signature of the patient or an active delegate.
    function revokeBySig(
        address patient,
        address grantee,
        uint256 deadline,
        address signer,
        bytes calldata signature
    ) external;

    /// @notice Cancel every outstanding signature of `patient` by raising the nonce.
    function invalidateNonces(address patient, uint256 newNonce) external;

    /// @notice Add or update a delegate (patient only).
    function setDelegate(address delegate, DelegateKind kind, uint40 validUntil) external;
    /// @notice Remove a delegate (patient only).
    function removeDelegate(address delegate) external;

    /// @notice Open a time-boxed emergency access to `patient` for the caller's organisation.
    function openBreakGlass(address patient, BreakGlassReason reason, uint32 duration)
        external
        returns (uint64 id);
    /// @notice Close the caller's organisation's open session for `patient`.
    function closeBreakGlass(address patient) external;
    /// @notice Set the maximum break-glass duration in seconds (governance only).
    function setMaxBreakGlassDuration(uint32 maxDuration) external;

    /// @notice Allowed or denied, and why: resolves `requester` to its organisation and statuses.
    /// `resourceType`, `action` and `purpose` are bit indices into the `FhirCodes` tables.
    function decide(address patient, address requester, uint8 resourceType, uint8 action, uint8 purpose)
        external
        view
        returns (bool allowed, Basis basis);

    /// @notice The stored consent of `patient` to `grantee`.
    function consentOf(address patient, address grantee) external view returns (Consent memory);
    /// @notice The delegate's kind and expiry.
    function delegateOf(address patient, address delegate)
        external
        view
        returns (DelegateKind kind, uint40 validUntil);
    /// @notice Whether `delegate` is an unexpired delegate of `patient`.
    function isActiveDelegate(address patient, address delegate) external view returns (bool);
    /// @notice The break-glass session of `patient` for `org` (possibly expired).
    function breakGlassOf(address patient, address org) external view returns (BreakGlassSession memory);
    /// @notice The patient's current signature nonce.
    function nonces(address patient) external view returns (uint256);
    /// @notice Maximum break-glass duration in seconds.
    function maxBreakGlassDuration() external view returns (uint32);
}
