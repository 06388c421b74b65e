//! Consent and delegation in the words a patient reads before signing: every line is derived
//! from the very message the wallet will be asked to sign, never from the form that asked.

use alloy::primitives::U256;
use carechain_contracts::{Action, Purpose, ResourceType, typed_data::ConsentMessage};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Unix seconds as RFC 3339 (UTC), for the page to show in the reader's own time zone.
pub fn instant(secs: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp(secs, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Unix seconds in words (`31 January 2027, 14:00 UTC`).
pub fn date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map_or_else(
            || secs.to_string(),
            |t| t.format("%-d %B %Y, %H:%M UTC").to_string(),
        )
}

fn line(label: &str, text: impl Into<String>) -> Value {
    json!({"label": label, "text": text.into()})
}

fn list<T>(items: Vec<T>, show: impl Fn(T) -> String) -> String {
    items.into_iter().map(show).collect::<Vec<_>>().join(", ")
}

/// What a relationship word lets a delegate do, as the contract's `DelegateKind` table says.
pub fn relationship_in_words(word: &str) -> &'static str {
    match word {
        "guardian" => "guardian: may read all your records and give or withdraw access for you",
        "caregiver" => "caregiver: may read all your records, but never changes who has access",
        "proxy" => {
            "proxy: may use and give access to the records below, for these purposes only, and withdraw only what they gave"
        }
        _ => "an unknown relationship",
    }
}

/// The lines shown before the wallet is asked to sign `message`; `counterparty` is how the
/// directory names the other party (an organisation's name), when it does.
pub fn describe(message: &ConsentMessage, counterparty: Option<&str>) -> Vec<Value> {
    let other = match counterparty {
        Some(name) => format!("{name} ({:#x})", message.counterparty()),
        None => format!("{:#x}", message.counterparty()),
    };
    let deadline = u64::try_from(message.deadline()).unwrap_or(u64::MAX);
    let mut lines = match message {
        ConsentMessage::Grant(g) => vec![
            line("You give access to", other),
            line(
                "Which records",
                list(ResourceType::from_bits(g.resourceTypes), |t| {
                    t.code().to_owned()
                }),
            ),
            line(
                "What they may do",
                list(Action::from_bits(g.actions), |a| a.long_name().to_owned()),
            ),
            line(
                "For what purpose",
                list(Purpose::from_bits(g.purposes), |p| {
                    format!("{} ({})", p.display(), p.code())
                }),
            ),
            line(
                "From",
                if g.validFrom.is_zero() {
                    "as soon as it is recorded".to_owned()
                } else {
                    date(g.validFrom.to::<u64>())
                },
            ),
            line("Until", date(g.validUntil.to::<u64>())),
        ],
        ConsentMessage::Revoke(_) => vec![line("You withdraw all access of", other)],
        ConsentMessage::SetDelegate(d) => vec![
            line("Who may act for you", other),
            line("As", relationship_in_words(&d.relationship)),
            line("Until", date(d.validUntil.to::<u64>())),
        ],
        ConsentMessage::SetProxy(p) => vec![
            line("Who may act for you", other),
            line("As", relationship_in_words("proxy")),
            line(
                "Which records",
                list(ResourceType::from_bits(p.resourceTypes), |t| {
                    t.code().to_owned()
                }),
            ),
            line(
                "What they may do",
                list(Action::from_bits(p.actions), |a| a.long_name().to_owned()),
            ),
            line(
                "For what purpose",
                list(Purpose::from_bits(p.purposes), |p| {
                    format!("{} ({})", p.display(), p.code())
                }),
            ),
            line("Until", date(p.validUntil.to::<u64>())),
        ],
        ConsentMessage::RemoveDelegate(_) => vec![line("Who may no longer act for you", other)],
    };
    lines.push(line(
        "Your signature",
        format!(
            "can be used once, until {}; it costs you nothing",
            date(deadline)
        ),
    ));
    lines
}

/// The deadline of a signature asked for at `now` (unix seconds): long enough to read and sign,
/// short enough that an unused signature soon stops counting.
pub fn deadline(now: u64) -> U256 {
    U256::from(now.saturating_add(30 * 60))
}
