//! The patient portal (issue 20): a web page served by the gateway at `GET /portal`, on the
//! API's own origin, that works with the wallet a patient already has.
//!
//! - [`assets`]: the page's HTML, CSS and ES modules (`gateway/portal/`), compiled into the
//!   binary and served with a strict Content-Security-Policy (no inline script, nothing from
//!   another origin); no build step.
//! - [`prepare`]: the EIP-712 typed data a wallet signs, prepared from what the patient chose
//!   with the one definition in `carechain_contracts::typed_data`; the page submits the signed
//!   result to the existing relay (`POST /relay/consent`).
//! - [`words`]: that message in the words shown before signing.
//! - [`directory`]: organisation names, the patient's delegates and their records' custodians,
//!   read from the index.
//!
//! Everything else the page shows comes from the gateway's existing API: sign-in
//! (`/auth/login`), records (FHIR searches), consents (`GET /Consent?patient=`), the access log
//! (`GET /AuditEvent?patient=`).

pub mod assets;
pub mod directory;
pub mod prepare;
pub mod words;
