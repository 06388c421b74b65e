//! Shared building blocks for carechain's off-chain services.
//!
//! - [`bindings`]: `sol!` bindings generated from the committed `abi/*.json`, one module per
//!   contract (`ProviderRegistry`, `ConsentRegistry`, `RecordRegistry`, `AuditAnchor`), with
//!   typed calls and events.
//! - [`manifest`]: the deployment manifest written by the deploy script.
//! - [`codes`]: the FHIR code tables of `contracts/libraries/FhirCodes.sol` (resource types,
//!   SMART v2 actions, HL7 purposes of use) with their bit indices.
//! - [`merkle`]: the Merkle tree of `IRecordRegistry` / `IAuditAnchor` (roots, proofs, verify).
//! - [`enums`]: the Solidity enums (`Basis`, `Status`, `OrgKind`, ...), which a JSON ABI only
//!   knows as `uint8`.
//! - [`revert`]: ConsentRegistry refusals (custom errors) in plain words.
//! - [`consent_document`]: the FHIR Consent a grant mirrors (whose hash the grant carries).

pub mod bindings;
pub mod codes;
pub mod consent_document;
pub mod enums;
pub mod manifest;
pub mod merkle;
pub mod revert;
pub mod typed_data;

pub use bindings::{AuditAnchor, ConsentRegistry, ProviderRegistry, RecordRegistry};
pub use codes::{Action, CodeError, Purpose, ResourceType};
pub use enums::{Basis, BreakGlassReason, DelegateKind, EnumError, MemberRole, OrgKind, Status};
pub use manifest::{ContractAddresses, DeploymentManifest, ManifestError};
