//! The contract between the indexer and the services that read its index (the gateway).
//!
//! - **The cursor.** `indexer_cursor` holds, per chain, the last block whose events, block
//!   hashes and derived state are committed. A reader decides at or after that block, and
//!   checks in the same statement as its data read that the cursor has not moved when it
//!   relies on a decision made at that cursor: [`CURSOR_SQL`] and [`cursor_subquery`].
//! - **The notifications.** In the transaction that commits a change, the indexer sends
//!   `NOTIFY` on one [`Channel`] per kind of change, with a JSON payload that names the chain,
//!   the block and the [`Subject`] the change is about ([`Notification`]). A commit touching
//!   many subjects, a backfill batch or a rollback sends [`Subject::All`].
//! - **The progress mark.** Every commit that sends the notifications of its blocks (one that
//!   keeps the derived state current, a catch-up, a rollback) ends with one on
//!   [`Channel::Indexed`] naming the commit's last block. Notifications of one transaction
//!   arrive in the order sent, and transactions in commit order, so a reader that has read
//!   the mark for block N has read every change notification of the blocks up to N: what it
//!   derived from blocks at or below N and has not dropped is still true at every cursor up
//!   to N. A commit that notifies nothing (a backfill batch before the derived state catches
//!   up) sends no mark.

use alloy::primitives::Address;
use serde_json::Value;

/// The last block the indexer has committed for a chain (`$1`: the chain id).
pub const CURSOR_SQL: &str = "SELECT block_number FROM indexer_cursor WHERE chain_id = $1";

/// The indexer's cursor for the chain whose id is bound at `chain_id_placeholder` (e.g.
/// `"$3"`), as a scalar subquery to embed in a reader's statement, so that the data and the
/// cursor come from one snapshot.
pub fn cursor_subquery(chain_id_placeholder: &str) -> String {
    format!(
        "(SELECT indexer_cursor.block_number FROM indexer_cursor \
         WHERE indexer_cursor.chain_id = {chain_id_placeholder})"
    )
}

/// What kind of change a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Consent, delegate and break-glass changes (subject: the patient).
    Consent,
    /// Organisation and member key changes (subject: the organisation).
    Membership,
    /// Record anchors (subject: the custodian organisation) and audit batches (subject: the
    /// gateway that anchored them).
    Anchor,
    /// The progress mark: every change notification up to the payload's block has been sent
    /// (no subject).
    Indexed,
}

impl Channel {
    /// Every channel that announces changes (what [`Subject::All`] is sent on).
    pub const CHANGES: [Self; 3] = [Self::Consent, Self::Membership, Self::Anchor];

    /// Every channel.
    pub const ALL: [Self; 4] = [Self::Consent, Self::Membership, Self::Anchor, Self::Indexed];

    /// The PostgreSQL channel name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Consent => "carechain_consent",
            Self::Membership => "carechain_membership",
            Self::Anchor => "carechain_anchor",
            Self::Indexed => "carechain_indexed",
        }
    }

    /// The channel called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Who or what a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A patient (consent channel).
    Patient(Address),
    /// An organisation (membership and anchor channels).
    Org(Address),
    /// A gateway's audit-anchoring key (anchor channel).
    Gateway(Address),
    /// Anything may have changed: drop everything derived from the index.
    All,
}

impl Subject {
    /// The payload key naming this kind of subject (`None` for [`Subject::All`]).
    const fn key(self) -> Option<&'static str> {
        match self {
            Self::Patient(_) => Some("patient"),
            Self::Org(_) => Some("org"),
            Self::Gateway(_) => Some("gateway"),
            Self::All => None,
        }
    }
}

/// One notification: the chain, the block whose commit sent it, and the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// The chain id.
    pub chain_id: u64,
    /// The block the indexer had committed when it sent this (for a rollback: the fork block).
    /// `None` only for a payload without one (older senders).
    pub block: Option<u64>,
    /// What changed.
    pub subject: Subject,
}

impl Notification {
    /// A notification about `subject` from the commit of `block`.
    pub const fn new(chain_id: u64, block: u64, subject: Subject) -> Self {
        Self {
            chain_id,
            block: Some(block),
            subject,
        }
    }

    /// The payload: `{"chainId":..,"block":..,"patient":"0x.."}` (or `"org"`, `"gateway"`), or
    /// `{"chainId":..,"block":..,"all":true}`.
    pub fn payload(&self) -> String {
        let mut out = format!(r#"{{"chainId":{}"#, self.chain_id);
        if let Some(block) = self.block {
            out.push_str(&format!(r#","block":{block}"#));
        }
        match (self.subject, self.subject.key()) {
            (Subject::Patient(a) | Subject::Org(a) | Subject::Gateway(a), Some(key)) => {
                out.push_str(&format!(r#","{key}":"{a:#x}"}}"#));
            }
            _ => out.push_str(r#","all":true}"#),
        }
        out
    }

    /// Reads a payload received on `channel`. A payload that names no subject the reader
    /// understands, or that cannot be read at all, is [`Subject::All`] (drop everything: a
    /// reader never keeps state a notification it did not understand may have invalidated).
    /// A bare `0x` address on the consent channel names a patient (the earliest senders).
    pub fn parse(channel: Channel, payload: &str) -> Self {
        let payload = payload.trim();
        let everything = |block| Self {
            chain_id: 0,
            block,
            subject: Subject::All,
        };
        if channel == Channel::Consent
            && let Ok(patient) = payload.parse::<Address>()
        {
            return Self {
                chain_id: 0,
                block: None,
                subject: Subject::Patient(patient),
            };
        }
        let Ok(json) = serde_json::from_str::<Value>(payload) else {
            return everything(None);
        };
        let block = json.get("block").and_then(Value::as_u64);
        let chain_id = json.get("chainId").and_then(Value::as_u64).unwrap_or(0);
        let address = |key: &str| {
            json.get(key)
                .and_then(Value::as_str)
                .and_then(|a| a.parse::<Address>().ok())
        };
        let subject = match channel {
            Channel::Consent => address("patient").map(Subject::Patient),
            Channel::Membership => address("org").map(Subject::Org),
            Channel::Anchor => address("org")
                .map(Subject::Org)
                .or_else(|| address("gateway").map(Subject::Gateway)),
            Channel::Indexed => None,
        };
        Self {
            chain_id,
            block,
            subject: subject.unwrap_or(Subject::All),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT: &str = "0x00000000000000000000000000000000000000aa";

    #[test]
    fn payloads_round_trip() {
        let who: Address = PATIENT.parse().expect("address");
        for (channel, subject) in [
            (Channel::Consent, Subject::Patient(who)),
            (Channel::Membership, Subject::Org(who)),
            (Channel::Anchor, Subject::Org(who)),
            (Channel::Anchor, Subject::Gateway(who)),
            (Channel::Consent, Subject::All),
        ] {
            let sent = Notification::new(31337, 12, subject);
            assert_eq!(Notification::parse(channel, &sent.payload()), sent);
        }
        assert_eq!(
            Notification::new(31337, 12, Subject::Patient(who)).payload(),
            format!(r#"{{"chainId":31337,"block":12,"patient":"{PATIENT}"}}"#)
        );
        assert_eq!(
            Notification::new(1, 2, Subject::All).payload(),
            r#"{"chainId":1,"block":2,"all":true}"#
        );
    }

    #[test]
    fn reads_bare_and_json_payloads() {
        let patient: Address = PATIENT.parse().expect("address");
        let read = |channel, payload: &str| {
            let n = Notification::parse(channel, payload);
            (n.subject, n.block)
        };
        assert_eq!(
            read(Channel::Consent, PATIENT),
            (Subject::Patient(patient), None)
        );
        let json = format!(r#"{{"chainId":31337,"block":12,"patient":"{PATIENT}"}}"#);
        assert_eq!(
            read(Channel::Consent, &json),
            (Subject::Patient(patient), Some(12))
        );
        let org = format!(r#"{{"chainId":31337,"block":13,"org":"{PATIENT}"}}"#);
        assert_eq!(
            read(Channel::Membership, &org),
            (Subject::Org(patient), Some(13))
        );
        assert_eq!(read(Channel::Membership, PATIENT), (Subject::All, None));
        assert_eq!(read(Channel::Consent, "garbage"), (Subject::All, None));
    }

    #[test]
    fn the_progress_mark_names_a_block_only() {
        let mark = Notification::new(31337, 40, Subject::All);
        assert_eq!(mark.payload(), r#"{"chainId":31337,"block":40,"all":true}"#);
        assert_eq!(Notification::parse(Channel::Indexed, &mark.payload()), mark);
        assert!(!Channel::CHANGES.contains(&Channel::Indexed));
    }

    #[test]
    fn channels_by_name() {
        for channel in Channel::ALL {
            assert_eq!(Channel::from_name(channel.name()), Some(channel));
        }
        assert_eq!(Channel::from_name("carechain_other"), None);
    }
}
