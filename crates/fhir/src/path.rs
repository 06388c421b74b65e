//! FHIRPath locations built on the stack while walking a resource, rendered only for an issue.

use std::fmt::Write as _;

/// One step of a location.
#[derive(Clone, Copy, Debug)]
enum Step<'a> {
    /// The resource type the path starts from (`Observation`), or nothing for a top-level
    /// value that is not a resource.
    Root(&'a str),
    /// `.name`
    Field(&'a str),
    /// `[i]`
    Index(usize),
}

/// A location: a step and the location it extends. Lives on the walker's stack, so building one
/// costs nothing; [`Path::render`] allocates only when an issue is reported.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    step: Step<'a>,
}

impl<'a> Path<'a> {
    pub(crate) fn root(name: &'a str) -> Self {
        Self {
            parent: None,
            step: Step::Root(name),
        }
    }

    pub(crate) fn field(&'a self, name: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            step: Step::Field(name),
        }
    }

    pub(crate) fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            step: Step::Index(i),
        }
    }

    /// `Bundle.entry[3].resource.code`
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.write(out);
        }
        match self.step {
            Step::Root(name) => out.push_str(name),
            Step::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Step::Index(i) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Path;

    #[test]
    fn renders_fhirpath() {
        let root = Path::root("Bundle");
        let entry = root.field("entry");
        let third = entry.index(3);
        let resource = third.field("resource");
        assert_eq!(
            resource.field("code").render(),
            "Bundle.entry[3].resource.code"
        );
        assert_eq!(
            Path::root("").field("resourceType").render(),
            "resourceType"
        );
    }
}
