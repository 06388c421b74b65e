// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title FhirCodes
/// @notice The fixed, documented code tables that the on-chain consent mirror of FHIR
/// `Consent.provision` is expressed in. Bit `i` of a bitmap stands for entry `i` of a table.
/// The order is part of the protocol: entries are only ever appended, never reordered.
///
/// Resource types (bit index -> FHIR R4 resource type), `uint64` bitmap:
///   0 Patient, 1 Observation, 2 Condition, 3 MedicationRequest, 4 AllergyIntolerance,
///   5 Procedure, 6 Immunization, 7 Encounter, 8 DiagnosticReport, 9 DocumentReference,
///   10 CarePlan, 11 MedicationStatement, 12 Consent, 13 AuditEvent, 14 MedicationAdministration,
///   15 CareTeam, 16 Goal, 17 ImagingStudy, 18 Device, 19 SupplyDelivery, 20 Claim,
///   21 ExplanationOfBenefit, 22 Coverage, 23 Provenance
///
/// Bits 14 to 23 complete the resource types with patient data that Synthea emits. Directory
/// resources carry no patient data and have no bit: Organization, Practitioner, PractitionerRole,
/// Location, and Medication (a product definition that MedicationRequest and
/// MedicationAdministration refer to; what a patient takes is in those). Members read them
/// without consent.
///
/// `crates/contracts/src/codes.rs` mirrors these tables; a test there parses this file and fails
/// on any difference.
///
/// Actions (SMART App Launch v2 scopes), `uint8` mask:
///   0 c (create), 1 r (read), 2 u (update), 3 d (delete), 4 s (search)
///
/// Purposes of use (HL7 v3 PurposeOfUse), `uint16` bitmap:
///   0 TREAT, 1 ETREAT, 2 HPAYMT, 3 HOPERAT, 4 HRESCH, 5 PUBHLTH, 6 PATRQT, 7 CAREMGT,
///   8 COC, 9 HLEGAL
library FhirCodes {
    /// @notice Number of resource types defined in the table above.
    uint8 internal constant RESOURCE_TYPE_COUNT = 24;
    /// @notice Number of SMART v2 actions.
    uint8 internal constant ACTION_COUNT = 5;
    /// @notice Number of purposes of use defined in the table above.
    uint8 internal constant PURPOSE_COUNT = 10;

    /// @notice Mask of every defined resource type.
    uint64 internal constant ALL_RESOURCE_TYPES = 0xffffff;
    /// @notice Mask of every action.
    uint8 internal constant ALL_ACTIONS = 0x1f;
    /// @notice Mask of every defined purpose.
    uint16 internal constant ALL_PURPOSES = 0x03ff;

    /// @notice Action index for create.
    uint8 internal constant ACTION_CREATE = 0;
    /// @notice Action index for read.
    uint8 internal constant ACTION_READ = 1;
    /// @notice Action index for update.
    uint8 internal constant ACTION_UPDATE = 2;
    /// @notice Action index for delete.
    uint8 internal constant ACTION_DELETE = 3;
    /// @notice Action index for search.
    uint8 internal constant ACTION_SEARCH = 4;

    /// @notice Purpose index for TREAT.
    uint8 internal constant PURPOSE_TREAT = 0;
    /// @notice Purpose index for ETREAT (emergency treatment): the only purpose break-glass serves.
    uint8 internal constant PURPOSE_ETREAT = 1;
}
