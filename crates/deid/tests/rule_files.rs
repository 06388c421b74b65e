//! Rule files that are wrong are refused, with an error that says where and why.

use carechain_deid::{Error, Rules};

fn refused(text: &str) -> Error {
    match Rules::from_toml(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

fn rule_error(text: &str) -> (usize, String, String) {
    match refused(text) {
        Error::Rule {
            index,
            selector,
            reason,
        } => (index, selector, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn toml_and_shape_errors_name_the_line() {
    let e = refused("name = \"x\"\n[[rule]\npath = 1").to_string();
    assert!(
        e.starts_with("the rule file cannot be read:") && e.contains("line 2"),
        "{e}"
    );
    let e = refused("[[rule]]\npath = \"Patient.name\"\nmethd = \"redact\"\n").to_string();
    assert!(e.contains("unknown field `methd`"), "{e}");
    let e = refused("[[rule]]\npath = \"Patient.name\"\nmethod = \"scramble\"\n").to_string();
    assert!(
        e.contains("unknown variant `scramble`") && e.contains("cryptoHash"),
        "{e}"
    );
    let e = refused("[dates]\nmode = \"month\"\n").to_string();
    assert!(e.contains("unknown variant `month`"), "{e}");
    let e = refused("colour = \"blue\"\n").to_string();
    assert!(e.contains("unknown field `colour`"), "{e}");
}

#[test]
fn selectors_are_checked_against_the_r4_definitions() {
    let ok = "[[rule]]\npath = \"Patient.name\"\nmethod = \"redact\"\n";
    assert!(Rules::from_toml(ok).is_ok());
    let (index, selector, reason) = rule_error(&format!(
        "{ok}\n[[rule]]\npath = [\"Patient.name\", \"Patient.adress.city\"]\nmethod = \"redact\"\n"
    ));
    assert_eq!(
        (index, selector.as_str()),
        (2, r#"path = ["Patient.name", "Patient.adress.city"]"#)
    );
    assert_eq!(
        reason,
        "`Patient.adress.city`: Patient has no element `adress`"
    );
    let cases = [
        (
            "type = \"HumanNames\"\nmethod = \"redact\"",
            "not an R4 resource, datatype or primitive type",
        ),
        (
            "type = \"Patient.name\"\nmethod = \"redact\"",
            "is a path: write it as `path`",
        ),
        (
            "path = \"Observation.value[x].nothing\"\nmethod = \"redact\"",
            "has no element `nothing`",
        ),
        (
            "path = \"Bundle.entry.resource.id\"\nmethod = \"redact\"",
            "cannot go into them",
        ),
        (
            "path = \"Patient.name\"\ntype = \"string\"\nmethod = \"redact\"",
            "not both",
        ),
        ("method = \"redact\"", "needs a selector"),
        ("path = []\nmethod = \"redact\"", "lists nothing"),
        (
            "type = \"string\"\nmethod = \"dateShift\"",
            "dateShift applies to date, dateTime, instant values",
        ),
        (
            "path = \"Patient.gender\"\nmethod = \"generalize\"\nto = \"zip3\"",
            "only reaches code",
        ),
        (
            "path = \"Patient.birthDate\"\nmethod = \"generalize\"",
            "generalize needs `to`",
        ),
        (
            "path = \"Patient.birthDate\"\nmethod = \"generalize\"\nto = \"age\"",
            "must reach an Age",
        ),
        (
            "path = \"Patient.birthDate\"\nmethod = \"generalize\"\nto = \"decade\"",
            "generalize to `decade`",
        ),
        (
            "path = \"Patient.birthDate\"\nmethod = \"redact\"\nto = \"year\"",
            "`to` belongs to generalize",
        ),
        (
            "path = \"Patient.gender\"\nmethod = \"substitute\"",
            "substitute needs a `value`",
        ),
        (
            "path = \"Patient.gender\"\nmethod = \"keep\"\nvalue = \"x\"",
            "`value` belongs to substitute",
        ),
        (
            "path = \"Patient.birthDate\"\nmethod = \"substitute\"\nvalue = 1979-05-27",
            "TOML date-time",
        ),
        (
            "type = \"HumanName\"\nurl = \"http://x\"\nmethod = \"redact\"",
            "must reach an Extension",
        ),
        (
            "type = \"Extension\"\nurl = []\nmethod = \"redact\"",
            "at least one extension url",
        ),
        (
            "type = \"HumanName\"\nmethod = \"redact\"\nsafe_harbor = [\"S\"]",
            "not a Safe Harbor identifier letter",
        ),
    ];
    for (body, expected) in cases {
        let (index, _, reason) = rule_error(&format!("[[rule]]\n{body}\n"));
        assert_eq!(index, 1);
        assert!(reason.contains(expected), "{body}: {reason}");
    }
}

#[test]
fn settings_are_checked() {
    let cases = [
        (
            "[drop]\ntypes = [\"Patients\"]",
            "drop.types",
            "`Patients` is not an R4 resource type",
        ),
        (
            "[drop]\nsafe_harbor = [\"a\"]",
            "drop.safe_harbor",
            "not a Safe Harbor identifier letter",
        ),
        (
            "[security]\nlabels = [\"SECRET\"]",
            "security.labels",
            "`SECRET` is not one of",
        ),
        (
            "[dates]\nmax_shift_days = 0",
            "dates.max_shift_days",
            "0 is not between 1 and 3650",
        ),
        (
            "[dates]\nmax_shift_days = 4000",
            "dates.max_shift_days",
            "4000 is not between",
        ),
    ];
    for (text, expected_setting, expected) in cases {
        match refused(text) {
            Error::Setting { setting, reason } => {
                assert_eq!(setting, expected_setting);
                assert!(reason.contains(expected), "{text}: {reason}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let many = "[[rule]]\ntype = \"string\"\nmethod = \"redact\"\n".repeat(129);
    assert!(matches!(
        refused(&many),
        Error::Setting {
            setting: "rule",
            ..
        }
    ));
    assert_eq!(
        Rules::from_toml(&many[..many.len() / 129 * 128])
            .map(|r| r.len())
            .ok(),
        Some(128)
    );
}

#[test]
fn an_empty_file_is_valid_and_covers_nothing() {
    let rules = Rules::from_toml("").expect("an empty file is valid");
    assert!(rules.is_empty());
    assert_eq!(rules.name(), "unnamed rules");
    assert!(rules.safe_harbor_coverage().is_empty());
}
