//! The one error type of the crate. No variant carries a value taken from a resource: an error
//! may be logged where PHI must not be.

/// What can go wrong setting up a [`crate::Deidentifier`] or de-identifying a resource.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The rule file is not TOML, or not of the rule file's shape (the message says where).
    #[error("the rule file cannot be read: {0}")]
    RuleFile(String),
    /// One rule of the file is wrong: which one (counted from 1), its selector and why.
    #[error("rule {index} ({selector}): {reason}")]
    Rule {
        /// The rule's position in the file, from 1.
        index: usize,
        /// Its selector as written (`path = "Patient.name"`).
        selector: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting outside the rules (`[dates]`, `[security]`, `[drop]`) is wrong.
    #[error("rule file setting {setting}: {reason}")]
    Setting {
        /// The setting (`dates.max_shift_days`).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The de-identification secret is shorter than 32 bytes.
    #[error("the de-identification secret must be at least 32 bytes, got {0}")]
    SecretTooShort(usize),
    /// The de-identification secret given as hex is not hex.
    #[error("the de-identification secret is not hex")]
    SecretNotHex,
    /// The study id is empty.
    #[error("the study id must not be empty")]
    EmptyStudy,
    /// A patient wallet is not `0x` followed by 40 hex digits.
    #[error("a patient wallet must be 0x followed by 40 hex digits")]
    InvalidWallet,
    /// The value given is not a JSON object with the `resourceType` of an R4 resource.
    #[error("not a FHIR R4 resource (a JSON object with a known resourceType)")]
    NotAResource,
}
