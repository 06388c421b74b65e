//! Typed mirrors of the contracts' Solidity enums.
//!
//! A JSON ABI carries enums as plain `uint8`, so the `sol!` bindings expose them as `u8`;
//! these types give them names. Discriminants equal the Solidity values.

use std::fmt;

/// A `uint8` that is not a value of the Solidity enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not a valid {name} value")]
pub struct EnumError {
    /// The enum's name.
    pub name: &'static str,
    /// The offending value.
    pub value: u8,
}

macro_rules! sol_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value, in Solidity order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The Solidity name of the value.
            pub const fn name(self) -> &'static str {
                match self { $( $name::$variant => stringify!($variant), )+ }
            }
        }

        impl TryFrom<u8> for $name {
            type Error = EnumError;
            fn try_from(value: u8) -> Result<Self, EnumError> {
                Self::ALL
                    .get(usize::from(value))
                    .copied()
                    .ok_or(EnumError { name: stringify!($name), value })
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                value as u8
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

sol_enum! {
    /// Why `ConsentRegistry.decide` answered as it did. Values 1-5 allow, every other denies.
    Basis {
        /// No consent covers the requester.
        NoConsent = 0,
        /// The requester is the patient.
        OwnData = 1,
        /// The requester is an active delegate of the patient.
        Delegate = 2,
        /// A consent to the member key itself covers the request.
        MemberConsent = 3,
        /// A consent to the key's organisation covers the request.
        OrganisationConsent = 4,
        /// An open break-glass session of the organisation covers the request.
        BreakGlass = 5,
        /// The requester is neither a member key nor an organisation.
        UnknownRequester = 6,
        /// The member key is suspended or retired.
        KeySuspended = 7,
        /// The requester's organisation is suspended.
        OrganisationSuspended = 8,
        /// The consent's validity has ended.
        ConsentExpired = 9,
        /// The consent is not valid yet.
        ConsentNotYetValid = 10,
        /// The consent does not cover the resource type.
        ResourceTypeNotCovered = 11,
        /// The consent does not cover the action.
        ActionNotCovered = 12,
        /// The consent does not cover the purpose of use.
        PurposeNotCovered = 13,
        /// The request names codes outside the tables.
        InvalidRequest = 14,
        /// The consent covered the request, but the delegation a delegate granted it under has
        /// ended (removed, replaced or expired).
        DelegationEnded = 15,
    }
}

impl Basis {
    /// Whether this basis allows access (values 1-5).
    pub const fn is_allowed(self) -> bool {
        matches!(self as u8, 1..=5)
    }
}

sol_enum! {
    /// Kind of organisation in the consortium (`IProviderRegistry.OrgKind`).
    OrgKind {
        /// Not an organisation.
        None = 0,
        /// Hospital.
        Hospital = 1,
        /// Clinic.
        Clinic = 2,
        /// Laboratory.
        Lab = 3,
        /// Pharmacy.
        Pharmacy = 4,
        /// Insurer.
        Insurer = 5,
        /// Research institution.
        Research = 6,
        /// Compliance office.
        Compliance = 7,
    }
}

sol_enum! {
    /// Lifecycle of an organisation or member key (`IProviderRegistry.Status`).
    Status {
        /// Unknown.
        None = 0,
        /// Active.
        Active = 1,
        /// Suspended, may be reinstated.
        Suspended = 2,
        /// Retired for good (rotated or removed key).
        Retired = 3,
    }
}

sol_enum! {
    /// What a member key is used for (`IProviderRegistry.MemberRole`).
    MemberRole {
        /// A practitioner's key.
        Practitioner = 0,
        /// A service's key.
        Service = 1,
    }
}

sol_enum! {
    /// Relationship of a delegate to the patient (`IConsentRegistry.DelegateKind`).
    DelegateKind {
        /// Not a delegate.
        None = 0,
        /// Legal guardian.
        Guardian = 1,
        /// Caregiver.
        Caregiver = 2,
        /// Proxy.
        Proxy = 3,
    }
}

sol_enum! {
    /// Coded reason for an emergency access (`IConsentRegistry.BreakGlassReason`).
    BreakGlassReason {
        /// No reason (invalid for opening).
        None = 0,
        /// The patient is unconscious.
        PatientUnconscious = 1,
        /// Life-threatening condition.
        LifeThreatening = 2,
        /// Imminent risk of harm.
        ImminentRiskOfHarm = 3,
        /// The patient is unable to communicate.
        PatientUnableToCommunicate = 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_values_follow_the_interface() {
        assert_eq!(Basis::ALL.len(), 16);
        assert_eq!(Basis::try_from(5), Ok(Basis::BreakGlass));
        assert_eq!(Basis::try_from(14), Ok(Basis::InvalidRequest));
        assert_eq!(Basis::try_from(15), Ok(Basis::DelegationEnded));
        assert_eq!(
            Basis::try_from(16),
            Err(EnumError {
                name: "Basis",
                value: 16
            })
        );
        let allowed: Vec<u8> = Basis::ALL
            .iter()
            .filter(|b| b.is_allowed())
            .map(|b| u8::from(*b))
            .collect();
        assert_eq!(allowed, vec![1, 2, 3, 4, 5]);
        assert_eq!(Basis::PurposeNotCovered.to_string(), "PurposeNotCovered");
    }

    #[test]
    fn other_enums() {
        assert_eq!(OrgKind::try_from(7), Ok(OrgKind::Compliance));
        assert!(OrgKind::try_from(8).is_err());
        assert_eq!(Status::try_from(3), Ok(Status::Retired));
        assert_eq!(MemberRole::try_from(1), Ok(MemberRole::Service));
        assert_eq!(DelegateKind::try_from(3), Ok(DelegateKind::Proxy));
        assert_eq!(
            BreakGlassReason::try_from(4),
            Ok(BreakGlassReason::PatientUnableToCommunicate)
        );
    }
}
