// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IMembershipMirror} from "./IMembershipMirror.sol";

/// @title IProviderRegistry
/// @notice Consortium membership: organisations admitted by governance and the member keys
/// (practitioners, services) that act for them. An organisation is identified by an address
/// (its identifier, typically the organisation's own administrative wallet); a member key is
/// linked to exactly one organisation. A suspended organisation or key is denied everywhere.
interface IProviderRegistry {
    /// @notice Kinds of organisation in the consortium.
    enum OrgKind {
        None,
        Hospital,
        Clinic,
        Lab,
        Pharmacy,
        Insurer,
        Research,
        Compliance
    }

    /// @notice Lifecycle of an organisation or key. `Retired` is final (a rotated or removed key).
    enum Status {
        None,
        Active,
        Suspended,
        Retired
    }

    /// @notice What a member key is used for.
    enum MemberRole {
        Practitioner,
        Service
    }

    /// @notice Stored state of an organisation.
    struct Organisation {
        OrgKind kind;
        Status status;
        uint40 admittedAt;
    }

    /// @notice Stored state of a member key.
    struct Member {
        address org;
        Status status;
        MemberRole role;
        uint40 since;
    }

    /// @notice The address is already an organisation or a member key.
    error ProviderAlreadyRegistered(address account);
    /// @notice The address is not a registered organisation.
    error ProviderUnknownOrganisation(address org);
    /// @notice The address is not a registered member key.
    error ProviderUnknownMember(address key);
    /// @notice The zero address, or an organisation kind of `None`, was given.
    error ProviderInvalidInput();
    /// @notice The organisation or key is not in the status the operation needs.
    error ProviderInvalidStatus(address account, Status status);
    /// @notice The caller may not manage this organisation's keys.
    error ProviderUnauthorizedManager(address caller, address org);
    /// @notice The membership mirror is already set; it is wired once.
    error ProviderMirrorAlreadySet(address mirror);

    /// @notice An organisation was admitted by governance.
    event OrganisationAdmitted(address indexed org, OrgKind kind, string name);
    /// @notice An organisation was suspended (`Suspended`) or reinstated (`Active`).
    event OrganisationStatusChanged(address indexed org, Status status);
    /// @notice A member key was linked to an organisation.
    event MemberAdded(address indexed org, address indexed key, MemberRole role);
    /// @notice A member key was suspended, reinstated or retired.
    event MemberStatusChanged(address indexed org, address indexed key, Status status);
    /// @notice A member key was replaced by a new one; the old key is retired.
    event MemberKeyRotated(address indexed org, address indexed oldKey, address indexed newKey);
    /// @notice The membership mirror that receives every status change was set (governance).
    event MembershipMirrorSet(address indexed mirror);
    /// @notice The organisation's FHIR endpoint (its gateway's base URL) was published or changed;
    /// an empty `url` withdraws it.
    event EndpointSet(address indexed org, string url);

    /// @notice Admit an organisation (governance only).
    function admitOrganisation(address org, OrgKind kind, string calldata name) external;
    /// @notice Suspend an active organisation (governance only).
    function suspendOrganisation(address org) external;
    /// @notice Reinstate a suspended organisation (governance only).
    function reinstateOrganisation(address org) external;

    /// @notice Link a new key to an organisation (governance or the organisation address).
    function addMember(address org, address key, MemberRole role) external;
    /// @notice Suspend an active key (governance or its organisation).
    function suspendMember(address key) external;
    /// @notice Reinstate a suspended key (governance or its organisation).
    function reinstateMember(address key) external;
    /// @notice Retire a key for good (governance or its organisation).
    function retireMember(address key) external;
    /// @notice Replace a key by a new one (governance, its organisation, or the key itself).
    function rotateMemberKey(address oldKey, address newKey) external;

    /// @notice Set, once, the mirror that every key and organisation status change is pushed to
    /// in the same transaction (governance only).
    function setMembershipMirror(IMembershipMirror mirror) external;

    /// @notice Publish (or, with an empty `url`, withdraw) the base URL of `org`'s FHIR endpoint:
    /// where the other members' gateways ask for the records `org` keeps. Callable by the
    /// organisation itself or governance; the keys its gateway acts with are its `Service`
    /// members. At most 512 bytes, `https://` (or `http://` for a development consortium).
    function setEndpoint(address org, string calldata url) external;

    /// @notice The membership mirror, or the zero address when none is set.
    function membershipMirror() external view returns (IMembershipMirror);
    /// @notice Stored state of an organisation.
    function organisation(address org) external view returns (Organisation memory);
    /// @notice Stored state of a member key.
    function member(address key) external view returns (Member memory);
    /// @notice The organisation of `key` when both the key and its organisation are active,
    /// else the zero address.
    function activeOrganisationOf(address key) external view returns (address org, OrgKind kind);
    /// @notice The published FHIR endpoint of `org` (empty when none).
    function endpoint(address org) external view returns (string memory);
}
