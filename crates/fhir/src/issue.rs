//! What validation reports: issues, and the OperationOutcome that carries them over HTTP.

use std::fmt;

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Processing could not go on at all.
    Fatal,
    /// The resource is not valid R4: it must be refused.
    Error,
    /// Valid, but something is probably wrong.
    Warning,
    /// For information only.
    Information,
}

impl Severity {
    /// The FHIR code (`error`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fatal => "fatal",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code`: the FHIR issue types this validator reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IssueCode {
    /// `invalid`: the content is not valid at all (not a JSON object, an unknown resource type).
    Invalid,
    /// `structure`: an unknown element, the wrong JSON type, an array where one value belongs
    /// or the reverse, an empty object or array, `null`, two choices of one `[x]` element.
    Structure,
    /// `required`: a required element (minimum cardinality 1) is missing.
    Required,
    /// `value`: a primitive is not in its type's lexical space or range (or is empty).
    Value,
    /// `invariant`: a constraint of the spec failed (dom-2 to dom-5, ext-1).
    Invariant,
    /// `code-invalid`: a code is not in the value set of its required binding.
    CodeInvalid,
    /// `too-long`: a string is longer than the spec allows.
    TooLong,
    /// `too-costly`: too many issues; the rest were not reported.
    TooCostly,
    /// `business-rule`: valid R4, but against a rule of the server that stores it (for the
    /// gateway: a reference into another patient's records). Not reported by [`crate::validate`].
    BusinessRule,
}

impl IssueCode {
    /// The FHIR code (`code-invalid`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Structure => "structure",
            Self::Required => "required",
            Self::Value => "value",
            Self::Invariant => "invariant",
            Self::CodeInvalid => "code-invalid",
            Self::TooLong => "too-long",
            Self::TooCostly => "too-costly",
            Self::BusinessRule => "business-rule",
        }
    }
}

/// One thing wrong with a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// How bad it is (every issue the validator reports today is an [`Severity::Error`]).
    pub severity: Severity,
    /// What kind of problem it is.
    pub code: IssueCode,
    /// Where: a FHIRPath location such as `Observation.component[1].valueQuantity` or
    /// `Bundle.entry[3].resource.code` (empty when the input is not a resource at all).
    pub expression: String,
    /// What is wrong, for a person.
    pub diagnostics: String,
}

impl Issue {
    /// The issue as an `OperationOutcome.issue` element.
    pub fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity.as_str(),
            "code": self.code.as_str(),
            "diagnostics": self.diagnostics,
        });
        if !self.expression.is_empty() {
            issue["expression"] = json!([self.expression]);
        }
        issue
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.expression.is_empty() {
            write!(
                f,
                "{} ({}): {}",
                self.severity.as_str(),
                self.code.as_str(),
                self.diagnostics
            )
        } else {
            write!(
                f,
                "{} ({}) at {}: {}",
                self.severity.as_str(),
                self.code.as_str(),
                self.expression,
                self.diagnostics
            )
        }
    }
}

/// A resource that is not valid FHIR R4, with every issue found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid FHIR R4 resource: {}", Summary(.issues))]
pub struct ValidationError {
    /// The issues, in document order (never empty).
    pub issues: Vec<Issue>,
}

impl ValidationError {
    /// The issues as a FHIR R4 OperationOutcome.
    pub fn to_operation_outcome(&self) -> Value {
        operation_outcome(&self.issues)
    }
}

/// Renders issues as a FHIR R4 OperationOutcome (`issue[].severity/code/diagnostics/expression`).
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}

/// `3 issues; first: error (required) at Observation.code: ...`
struct Summary<'a>(&'a [Issue]);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("no issues"),
            [only] => write!(f, "{only}"),
            [first, ..] => write!(f, "{} issues; first: {first}", self.0.len()),
        }
    }
}
