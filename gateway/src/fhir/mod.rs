//! FHIR R4 helpers: dates, resources, and the CapabilityStatement.

pub mod date;
pub mod resource;
