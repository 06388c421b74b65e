//! FHIR R4 helpers: dates, resources, and the CapabilityStatement.

pub mod capability;
pub mod date;
pub mod resource;
