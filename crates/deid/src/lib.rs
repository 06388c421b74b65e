//! De-identification of FHIR R4 resources for research exports: a library the gateway's Bulk
//! Data export calls on every resource it writes for a research organisation.
//!
//! ```
//! use carechain_deid::{DeidSecret, Deidentifier, Rules};
//! use serde_json::json;
//!
//! let secret = DeidSecret::from_bytes(&[42u8; 32])?;        // the consortium's, configured
//! let deid = Deidentifier::new(Rules::safe_harbor(), &secret, "study-17", "org-hospital-a")?;
//! let wallet = "0x00000000000000000000000000000000000000aa";
//! let patient = deid.patient(wallet)?;                     // once per patient
//! let observation = json!({
//!     "resourceType": "Observation", "id": "obs-1", "status": "final",
//!     "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2",
//!                          "display": "Body Height"}], "text": "Body height"},
//!     "subject": {"reference": format!("Patient/{wallet}"), "display": "Aaron Brekke"},
//!     "effectiveDateTime": "2010-03-01T06:22:41-05:00",
//!     "valueQuantity": {"value": 173.9, "unit": "cm"},
//! });
//! let out = patient.deidentify(&observation)?.expect("Observations are kept");
//! assert_eq!(out["subject"], json!({"reference": format!("Patient/{}", patient.pseudonym())}));
//! assert_eq!(out["effectiveDateTime"], "2010");
//! assert_eq!(out["code"]["coding"][0]["display"], "Body Height");
//! assert!(out["code"].get("text").is_none());
//! assert_ne!(out["id"], "obs-1");
//! assert_eq!(out["meta"]["security"][0]["code"], "PSEUDED");
//! # Ok::<(), carechain_deid::Error>(())
//! ```
//!
//! - [`Rules`]: a rule file (TOML) with `path`/`type` selectors and the methods `keep`,
//!   `redact`, `cryptoHash`, `dateShift`, `generalize` and `substitute`; the HIPAA Safe Harbor
//!   set is built in ([`rules::SAFE_HARBOR`]). `crates/deid/README.md` documents the format and
//!   what each Safe Harbor rule does.
//! - [`Deidentifier`]: one per study and custodian, keyed by the consortium's
//!   [`DeidSecret`]. A patient's pseudonym and date offset are the same at every custodian in a
//!   study and differ between studies ([`keys`] gives the construction).
//! - Every output is valid R4 when its input is: where R4 requires an element the rules removed,
//!   a `data-absent-reason` extension (`masked`) stands in for it.
//! - [`scan`]: a PHI scanner for the output, which the tests run over every exported line.
//!
//! The walk is driven by the R4 definitions ([`carechain_fhir::schema`]): elements it does not
//! know (not R4, or of the wrong JSON shape) are dropped, never passed through.

mod date;
mod engine;
mod error;
pub mod keys;
pub mod rules;
pub mod scan;

pub use date::Date;
pub use engine::{DATA_ABSENT_REASON, Deidentifier, PatientScope, RESTRICTED_ZIP3};
pub use error::Error;
pub use keys::{DeidSecret, Wallet};
pub use rules::{DateMode, Rules};

#[cfg(test)]
mod tests {
    #[test]
    fn a_deidentifier_is_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<crate::Deidentifier>();
        shareable::<crate::PatientScope<'static>>();
    }
}
