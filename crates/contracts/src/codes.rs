//! The FHIR code tables of `contracts/libraries/FhirCodes.sol`.
//!
//! Bit `i` of an on-chain bitmap stands for entry `i` of a table. The order is part of the
//! protocol: entries are only ever appended, never reordered, so the discriminants below are
//! the bit indices and must never change. `FhirCodes.sol` is the source: a test here parses it
//! and fails on any difference (names, order, counts and masks).

use std::{fmt, str::FromStr};

/// A code that is not in a table, or a bitmap with bits outside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The name is not a resource type of the table.
    #[error("unknown FHIR resource type `{0}` (see `carechain codes`)")]
    UnknownResourceType(String),
    /// The name is not one of the SMART v2 actions `c r u d s`.
    #[error(
        "unknown action `{0}`: expected one of c, r, u, d, s (or create, read, update, delete, search)"
    )]
    UnknownAction(String),
    /// The code is not a purpose of use of the table.
    #[error("unknown purpose of use `{0}` (see `carechain codes`)")]
    UnknownPurpose(String),
    /// The bit index is outside the table.
    #[error("bit index {index} is outside the {table} table")]
    IndexOutOfRange {
        /// Which table was indexed.
        table: &'static str,
        /// The offending index.
        index: u8,
    },
}

macro_rules! code_table {
    (
        $(#[$meta:meta])*
        $name:ident, $table:literal, $bits:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $index:literal => $code:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $index, )+
        }

        impl $name {
            /// Every entry, in bit order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];
            /// Number of entries in the table.
            pub const COUNT: u8 = Self::ALL.len() as u8;
            /// Bitmap of every entry.
            pub const ALL_BITS: $bits = ((1u128 << Self::ALL.len()) - 1) as $bits;

            /// The bit index of this entry.
            pub const fn index(self) -> u8 {
                self as u8
            }

            /// This entry's single bit.
            pub const fn bit(self) -> $bits {
                1 << (self as u8)
            }

            /// The code as written in FHIR.
            pub const fn code(self) -> &'static str {
                match self { $( $name::$variant => $code, )+ }
            }

            /// The entry at bit index `index`.
            pub fn from_index(index: u8) -> Result<Self, CodeError> {
                Self::ALL
                    .get(usize::from(index))
                    .copied()
                    .ok_or(CodeError::IndexOutOfRange { table: $table, index })
            }

            /// The entries whose bits are set in `bits`; bits outside the table are ignored.
            pub fn from_bits(bits: $bits) -> Vec<Self> {
                Self::ALL.iter().copied().filter(|e| bits & e.bit() != 0).collect()
            }

            /// The bitmap of `entries`.
            pub fn to_bits(entries: &[Self]) -> $bits {
                entries.iter().fold(0, |acc, e| acc | e.bit())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }

        impl TryFrom<u8> for $name {
            type Error = CodeError;
            fn try_from(index: u8) -> Result<Self, CodeError> {
                Self::from_index(index)
            }
        }
    };
}

code_table! {
    /// FHIR R4 resource types covered by consent (`uint64` bitmap on chain).
    ResourceType, "resource type", u64 {
        /// `Patient`.
        Patient = 0 => "Patient",
        /// `Observation`.
        Observation = 1 => "Observation",
        /// `Condition`.
        Condition = 2 => "Condition",
        /// `MedicationRequest`.
        MedicationRequest = 3 => "MedicationRequest",
        /// `AllergyIntolerance`.
        AllergyIntolerance = 4 => "AllergyIntolerance",
        /// `Procedure`.
        Procedure = 5 => "Procedure",
        /// `Immunization`.
        Immunization = 6 => "Immunization",
        /// `Encounter`.
        Encounter = 7 => "Encounter",
        /// `DiagnosticReport`.
        DiagnosticReport = 8 => "DiagnosticReport",
        /// `DocumentReference`.
        DocumentReference = 9 => "DocumentReference",
        /// `CarePlan`.
        CarePlan = 10 => "CarePlan",
        /// `MedicationStatement`.
        MedicationStatement = 11 => "MedicationStatement",
        /// `Consent`.
        Consent = 12 => "Consent",
        /// `AuditEvent`.
        AuditEvent = 13 => "AuditEvent",
        /// `MedicationAdministration`.
        MedicationAdministration = 14 => "MedicationAdministration",
        /// `CareTeam`.
        CareTeam = 15 => "CareTeam",
        /// `Goal`.
        Goal = 16 => "Goal",
        /// `ImagingStudy`.
        ImagingStudy = 17 => "ImagingStudy",
        /// `Device`.
        Device = 18 => "Device",
        /// `SupplyDelivery`.
        SupplyDelivery = 19 => "SupplyDelivery",
        /// `Claim`.
        Claim = 20 => "Claim",
        /// `ExplanationOfBenefit`.
        ExplanationOfBenefit = 21 => "ExplanationOfBenefit",
        /// `Coverage`.
        Coverage = 22 => "Coverage",
        /// `Provenance`.
        Provenance = 23 => "Provenance",
    }
}

/// FHIR resource types without patient data and without a consent bit: the consortium's
/// directory and product definitions, which members read without consent (`FhirCodes.sol`).
pub const DIRECTORY_RESOURCE_TYPES: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Medication",
];

code_table! {
    /// SMART App Launch v2 scope actions (`uint8` mask on chain).
    Action, "action", u8 {
        /// `c`: create.
        Create = 0 => "c",
        /// `r`: read.
        Read = 1 => "r",
        /// `u`: update.
        Update = 2 => "u",
        /// `d`: delete.
        Delete = 3 => "d",
        /// `s`: search.
        Search = 4 => "s",
    }
}

code_table! {
    /// HL7 v3 PurposeOfUse codes (`uint16` bitmap on chain).
    Purpose, "purpose", u16 {
        /// `TREAT`: treatment.
        Treat = 0 => "TREAT",
        /// `ETREAT`: emergency treatment, the only purpose break-glass serves.
        EmergencyTreat = 1 => "ETREAT",
        /// `HPAYMT`: healthcare payment.
        Payment = 2 => "HPAYMT",
        /// `HOPERAT`: healthcare operations.
        Operations = 3 => "HOPERAT",
        /// `HRESCH`: healthcare research.
        Research = 4 => "HRESCH",
        /// `PUBHLTH`: public health.
        PublicHealth = 5 => "PUBHLTH",
        /// `PATRQT`: patient requested.
        PatientRequest = 6 => "PATRQT",
        /// `CAREMGT`: care management.
        CareManagement = 7 => "CAREMGT",
        /// `COC`: coordination of care.
        CoordinationOfCare = 8 => "COC",
        /// `HLEGAL`: legal.
        Legal = 9 => "HLEGAL",
    }
}

impl Action {
    /// The long name (`create`, `read`, ...).
    pub const fn long_name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Search => "search",
        }
    }
}

impl Purpose {
    /// The HL7 display text.
    pub const fn display(self) -> &'static str {
        match self {
            Self::Treat => "treatment",
            Self::EmergencyTreat => "emergency treatment",
            Self::Payment => "healthcare payment",
            Self::Operations => "healthcare operations",
            Self::Research => "healthcare research",
            Self::PublicHealth => "public health",
            Self::PatientRequest => "patient requested",
            Self::CareManagement => "care management",
            Self::CoordinationOfCare => "coordination of care",
            Self::Legal => "legal",
        }
    }
}

impl FromStr for ResourceType {
    type Err = CodeError;

    /// Parses the FHIR resource type name; the match is exact (FHIR names are case-sensitive).
    fn from_str(s: &str) -> Result<Self, CodeError> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.code() == s)
            .ok_or_else(|| CodeError::UnknownResourceType(s.to_owned()))
    }
}

impl FromStr for Action {
    type Err = CodeError;

    /// Parses `c r u d s` or the long names, case-insensitively.
    fn from_str(s: &str) -> Result<Self, CodeError> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.code() == lower || a.long_name() == lower)
            .ok_or_else(|| CodeError::UnknownAction(s.to_owned()))
    }
}

impl FromStr for Purpose {
    type Err = CodeError;

    /// Parses the HL7 code, case-insensitively.
    fn from_str(s: &str) -> Result<Self, CodeError> {
        let upper = s.to_ascii_uppercase();
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.code() == upper)
            .ok_or_else(|| CodeError::UnknownPurpose(s.to_owned()))
    }
}

/// Parses a comma-separated list of names (e.g. `Observation,Condition`) into a bitmap.
pub fn parse_resource_types(list: &str) -> Result<u64, CodeError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .try_fold(0u64, |acc, s| Ok(acc | s.parse::<ResourceType>()?.bit()))
}

/// Parses a SMART-style action string (`cruds`, `rs`) or a comma-separated list into a mask.
pub fn parse_actions(list: &str) -> Result<u8, CodeError> {
    if !list.contains(',') && list.len() <= 5 && list.chars().all(|c| "cruds".contains(c)) {
        return list.chars().try_fold(0u8, |acc, c| {
            Ok(acc | c.to_string().parse::<Action>()?.bit())
        });
    }
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .try_fold(0u8, |acc, s| Ok(acc | s.parse::<Action>()?.bit()))
}

/// Parses a comma-separated list of purpose codes into a bitmap.
pub fn parse_purposes(list: &str) -> Result<u16, CodeError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .try_fold(0u16, |acc, s| Ok(acc | s.parse::<Purpose>()?.bit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FhirCodes.sol`, the source of the tables.
    const FHIR_CODES_SOL: &str = include_str!("../../../contracts/libraries/FhirCodes.sol");

    /// The `index name` pairs of the documented table that follows `heading` in FhirCodes.sol's
    /// NatSpec, up to the next blank comment line or the end of the comment.
    fn sol_table(heading: &str) -> Vec<(u8, String)> {
        let start = FHIR_CODES_SOL
            .find(heading)
            .unwrap_or_else(|| panic!("FhirCodes.sol has no `{heading}` table"));
        let mut pairs = Vec::new();
        for line in FHIR_CODES_SOL[start..].lines().skip(1) {
            let Some(text) = line.trim().strip_prefix("///").map(str::trim) else {
                break;
            };
            if text.is_empty() {
                break;
            }
            for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (index, name) = entry
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("unreadable table entry `{entry}`"));
                let index = index.parse().expect("a bit index");
                // Actions are documented as `c (create)`: the code is the first word.
                let name = name.split_whitespace().next().expect("a name");
                pairs.push((index, name.to_owned()));
            }
        }
        pairs
    }

    /// The value of `uint.. internal constant NAME = VALUE;` in FhirCodes.sol.
    fn sol_constant(name: &str) -> u64 {
        let needle = format!(" {name} = ");
        let start = FHIR_CODES_SOL
            .find(&needle)
            .unwrap_or_else(|| panic!("FhirCodes.sol has no constant {name}"))
            + needle.len();
        let value = FHIR_CODES_SOL[start..].split(';').next().expect("a value");
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).expect("a hex constant"),
            None => value.parse().expect("a decimal constant"),
        }
    }

    fn codes<T: Copy + std::fmt::Display>(all: &[T], index: fn(T) -> u8) -> Vec<(u8, String)> {
        all.iter().map(|e| (index(*e), e.to_string())).collect()
    }

    #[test]
    fn tables_match_fhir_codes_sol() {
        assert_eq!(
            codes(ResourceType::ALL, ResourceType::index),
            sol_table("Resource types (bit index -> FHIR R4 resource type)"),
            "resource types differ from FhirCodes.sol"
        );
        assert_eq!(
            codes(Action::ALL, Action::index),
            sol_table("Actions (SMART App Launch v2 scopes)"),
            "actions differ from FhirCodes.sol"
        );
        assert_eq!(
            codes(Purpose::ALL, Purpose::index),
            sol_table("Purposes of use (HL7 v3 PurposeOfUse)"),
            "purposes differ from FhirCodes.sol"
        );
        assert_eq!(
            u64::from(ResourceType::COUNT),
            sol_constant("RESOURCE_TYPE_COUNT")
        );
        assert_eq!(u64::from(Action::COUNT), sol_constant("ACTION_COUNT"));
        assert_eq!(u64::from(Purpose::COUNT), sol_constant("PURPOSE_COUNT"));
        assert_eq!(ResourceType::ALL_BITS, sol_constant("ALL_RESOURCE_TYPES"));
        assert_eq!(u64::from(Action::ALL_BITS), sol_constant("ALL_ACTIONS"));
        assert_eq!(u64::from(Purpose::ALL_BITS), sol_constant("ALL_PURPOSES"));
        for (action, name) in [
            (Action::Create, "ACTION_CREATE"),
            (Action::Read, "ACTION_READ"),
            (Action::Update, "ACTION_UPDATE"),
            (Action::Delete, "ACTION_DELETE"),
            (Action::Search, "ACTION_SEARCH"),
        ] {
            assert_eq!(u64::from(action.index()), sol_constant(name), "{name}");
        }
        assert_eq!(
            u64::from(Purpose::Treat.index()),
            sol_constant("PURPOSE_TREAT")
        );
        assert_eq!(
            u64::from(Purpose::EmergencyTreat.index()),
            sol_constant("PURPOSE_ETREAT")
        );
        for directory in DIRECTORY_RESOURCE_TYPES {
            assert!(
                FHIR_CODES_SOL.contains(directory),
                "FhirCodes.sol documents {directory} as a directory type"
            );
            assert!(
                directory.parse::<ResourceType>().is_err(),
                "{directory} has no bit"
            );
        }
        for (i, t) in ResourceType::ALL.iter().enumerate() {
            assert_eq!(usize::from(t.index()), i);
            assert_eq!(t.code().parse::<ResourceType>(), Ok(*t));
        }
    }

    #[test]
    fn the_parser_sees_a_changed_table() {
        // The drift check itself: a table that differs by one entry is not equal.
        let mut table = sol_table("Resource types (bit index -> FHIR R4 resource type)");
        assert_eq!(table.len(), ResourceType::ALL.len());
        table.swap(0, 1);
        assert_ne!(codes(ResourceType::ALL, ResourceType::index), table);
    }

    #[test]
    fn parses_names() {
        assert_eq!("Observation".parse(), Ok(ResourceType::Observation));
        assert!("observation".parse::<ResourceType>().is_err());
        assert_eq!("read".parse(), Ok(Action::Read));
        assert_eq!("R".parse(), Ok(Action::Read));
        assert_eq!("treat".parse(), Ok(Purpose::Treat));
        assert_eq!("ETREAT".parse(), Ok(Purpose::EmergencyTreat));
        assert_eq!(
            "NOPE".parse::<Purpose>(),
            Err(CodeError::UnknownPurpose("NOPE".into()))
        );
        assert_eq!(parse_actions("rs"), Ok(0b10010));
        assert_eq!(parse_actions("read, search"), Ok(0b10010));
        assert_eq!(parse_resource_types("Patient,Observation"), Ok(0b11));
        assert_eq!(parse_purposes("TREAT,HRESCH"), Ok(0b10001));
        assert!(parse_purposes("TREAT,X").is_err());
    }

    #[test]
    fn bitmaps_round_trip() {
        let bits = ResourceType::to_bits(&[ResourceType::Condition, ResourceType::Consent]);
        assert_eq!(bits, (1 << 2) | (1 << 12));
        assert_eq!(
            ResourceType::from_bits(bits),
            vec![ResourceType::Condition, ResourceType::Consent]
        );
        assert_eq!(
            ResourceType::from_index(24),
            Err(CodeError::IndexOutOfRange {
                table: "resource type",
                index: 24
            })
        );
    }
}
