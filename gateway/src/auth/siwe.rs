//! EIP-4361 (Sign-In with Ethereum) messages: parsing and the checks the gateway applies.

use alloy::primitives::Address;
use chrono::{DateTime, Duration, Utc};

const HEADER_SUFFIX: &str = " wants you to sign in with your Ethereum account:";

/// Why a sign-in message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiweError {
    /// The text does not follow the EIP-4361 grammar.
    #[error("malformed sign-in message: {0}")]
    Malformed(&'static str),
    /// The message names another domain.
    #[error("the message is for another domain")]
    Domain,
    /// The message names another URI.
    #[error("the message is for another URI")]
    Uri,
    /// The message names another chain.
    #[error("the message is for chain {0}, not this gateway's chain")]
    ChainId(u64),
    /// Only version 1 exists.
    #[error("unsupported message version")]
    Version,
    /// Issued in the future or too long ago.
    #[error("the message's issued-at time is out of range")]
    IssuedAt,
    /// The expiration time has passed.
    #[error("the message has expired")]
    Expired,
    /// The not-before time has not come yet.
    #[error("the message is not valid yet")]
    NotYetValid,
}

/// A parsed EIP-4361 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiweMessage {
    /// RFC 3986 authority requesting the sign-in.
    pub domain: String,
    /// The signing account.
    pub address: Address,
    /// Optional human-readable statement.
    pub statement: Option<String>,
    /// RFC 3986 URI the sign-in is for.
    pub uri: String,
    /// Always `1`.
    pub version: String,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The server-issued nonce.
    pub nonce: String,
    /// When the message was issued.
    pub issued_at: DateTime<Utc>,
    /// When the message stops being valid.
    pub expiration_time: Option<DateTime<Utc>>,
    /// When the message becomes valid.
    pub not_before: Option<DateTime<Utc>>,
    /// The `Resources:` list (URIs), e.g. an ERC-5573 capability (`urn:recap:...`) letting the
    /// gateway ask the consortium's other custodians for the signer's requests.
    pub resources: Vec<String>,
}

/// What a message must match.
#[derive(Debug, Clone)]
pub struct SiweExpectations<'a> {
    /// The gateway's domain.
    pub domain: &'a str,
    /// The gateway's sign-in URI.
    pub uri: &'a str,
    /// The chain the gateway serves.
    pub chain_id: u64,
    /// Maximum age of `issued_at`.
    pub max_age: Duration,
    /// Tolerated clock skew.
    pub skew: Duration,
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, SiweError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| SiweError::Malformed("timestamp is not RFC 3339"))
}

impl SiweMessage {
    /// Parses the message text (LF line endings, as EIP-4361 specifies).
    pub fn parse(text: &str) -> Result<Self, SiweError> {
        let mut lines = text.split('\n').peekable();
        let header = lines.next().ok_or(SiweError::Malformed("empty message"))?;
        let domain = header
            .strip_suffix(HEADER_SUFFIX)
            .ok_or(SiweError::Malformed("first line is not a sign-in request"))?;
        let domain = domain.split_once("://").map_or(domain, |(_, rest)| rest);
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            return Err(SiweError::Malformed("invalid domain"));
        }
        let address_line = lines
            .next()
            .ok_or(SiweError::Malformed("missing address"))?;
        let address = parse_address(address_line)?;
        if lines.next() != Some("") {
            return Err(SiweError::Malformed(
                "expected an empty line after the address",
            ));
        }
        // EIP-4361: `address LF LF [statement LF] LF "URI: "`. Without a statement that is two
        // empty lines; a single one (an older draft of the grammar) is accepted too.
        let mut statement = None;
        match lines.peek().copied() {
            Some("") => {
                lines.next();
            }
            Some(line) if line.starts_with("URI: ") => {}
            Some(line) => {
                statement = Some(line.to_owned());
                lines.next();
                if lines.next() != Some("") {
                    return Err(SiweError::Malformed(
                        "expected an empty line after the statement",
                    ));
                }
            }
            None => return Err(SiweError::Malformed("missing fields")),
        }
        let mut field = |name: &'static str| -> Result<String, SiweError> {
            let line = lines.next().ok_or(SiweError::Malformed("missing field"))?;
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(": "))
                .map(str::to_owned)
                .ok_or(SiweError::Malformed("fields out of order or missing"))
        };
        let uri = field("URI")?;
        let version = field("Version")?;
        let chain_id = field("Chain ID")?
            .parse::<u64>()
            .map_err(|_| SiweError::Malformed("chain id is not a number"))?;
        let nonce = field("Nonce")?;
        if nonce.len() < 8 || !nonce.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(SiweError::Malformed(
                "nonce must be at least 8 alphanumeric characters",
            ));
        }
        let issued_at = parse_time(&field("Issued At")?)?;
        let mut expiration_time = None;
        let mut not_before = None;
        let mut resources = Vec::new();
        let mut in_resources = false;
        for line in lines {
            if in_resources {
                let uri = line
                    .strip_prefix("- ")
                    .ok_or(SiweError::Malformed("the resources are the last field"))?;
                if uri.is_empty() || uri.contains(char::is_whitespace) {
                    return Err(SiweError::Malformed("a resource is not a URI"));
                }
                resources.push(uri.to_owned());
            } else if let Some(v) = line.strip_prefix("Expiration Time: ") {
                expiration_time = Some(parse_time(v)?);
            } else if let Some(v) = line.strip_prefix("Not Before: ") {
                not_before = Some(parse_time(v)?);
            } else if line == "Resources:" {
                in_resources = true;
            } else if line.starts_with("Request ID: ") {
                // Carried but not interpreted by the gateway.
            } else {
                return Err(SiweError::Malformed("unknown field"));
            }
        }
        Ok(Self {
            domain: domain.to_owned(),
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            resources,
        })
    }

    /// Checks domain, URI, version, chain and the validity period against `now`.
    pub fn validate(
        &self,
        expected: &SiweExpectations<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), SiweError> {
        if self.domain != expected.domain {
            return Err(SiweError::Domain);
        }
        if self.uri.trim_end_matches('/') != expected.uri.trim_end_matches('/') {
            return Err(SiweError::Uri);
        }
        if self.version != "1" {
            return Err(SiweError::Version);
        }
        if self.chain_id != expected.chain_id {
            return Err(SiweError::ChainId(self.chain_id));
        }
        if self.issued_at > now + expected.skew || self.issued_at < now - expected.max_age {
            return Err(SiweError::IssuedAt);
        }
        if let Some(exp) = self.expiration_time
            && exp <= now
        {
            return Err(SiweError::Expired);
        }
        if let Some(nbf) = self.not_before
            && nbf > now + expected.skew
        {
            return Err(SiweError::NotYetValid);
        }
        Ok(())
    }

    /// Renders the message in EIP-4361 form (used by tests and clients).
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}{HEADER_SUFFIX}\n{}\n\n",
            self.domain,
            self.address.to_checksum(None)
        );
        if let Some(statement) = &self.statement {
            out.push_str(statement);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&format!(
            "URI: {}\nVersion: {}\nChain ID: {}\nNonce: {}\nIssued At: {}",
            self.uri,
            self.version,
            self.chain_id,
            self.nonce,
            self.issued_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
        if let Some(exp) = self.expiration_time {
            out.push_str(&format!(
                "\nExpiration Time: {}",
                exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if let Some(nbf) = self.not_before {
            out.push_str(&format!(
                "\nNot Before: {}",
                nbf.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if !self.resources.is_empty() {
            out.push_str("\nResources:");
            for uri in &self.resources {
                out.push_str("\n- ");
                out.push_str(uri);
            }
        }
        out
    }
}

fn parse_address(line: &str) -> Result<Address, SiweError> {
    let hex = line
        .strip_prefix("0x")
        .ok_or(SiweError::Malformed("address must start with 0x"))?;
    if hex.len() != 40 {
        return Err(SiweError::Malformed("address must be 20 bytes"));
    }
    let mixed =
        hex.chars().any(|c| c.is_ascii_uppercase()) && hex.chars().any(|c| c.is_ascii_lowercase());
    if mixed {
        // EIP-4361 requires the EIP-55 checksum form; a wrong checksum is a typo, not an account.
        Address::parse_checksummed(line, None)
            .map_err(|_| SiweError::Malformed("bad address checksum"))
    } else {
        line.parse()
            .map_err(|_| SiweError::Malformed("invalid address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(now: DateTime<Utc>) -> SiweMessage {
        SiweMessage {
            domain: "gw.example".into(),
            address: Address::repeat_byte(0x11),
            statement: Some("Sign in to carechain".into()),
            uri: "http://gw.example".into(),
            version: "1".into(),
            chain_id: 31337,
            nonce: "abcdef1234".into(),
            issued_at: now,
            expiration_time: Some(now + Duration::minutes(5)),
            not_before: None,
            resources: Vec::new(),
        }
    }

    fn expectations() -> SiweExpectations<'static> {
        SiweExpectations {
            domain: "gw.example",
            uri: "http://gw.example",
            chain_id: 31337,
            max_age: Duration::minutes(10),
            skew: Duration::seconds(30),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn round_trips_with_and_without_statement() {
        let msg = sample(now());
        assert_eq!(SiweMessage::parse(&msg.to_text()), Ok(msg.clone()));
        let bare = SiweMessage {
            statement: None,
            expiration_time: None,
            ..msg
        };
        assert!(bare.to_text().contains("\n\n\nURI: "));
        assert_eq!(SiweMessage::parse(&bare.to_text()), Ok(bare.clone()));
        let legacy = bare.to_text().replace("\n\n\nURI: ", "\n\nURI: ");
        assert_eq!(SiweMessage::parse(&legacy), Ok(bare));
    }

    #[test]
    fn validates_each_field() {
        let t = now();
        let ok = sample(t);
        assert_eq!(ok.validate(&expectations(), t), Ok(()));
        let wrong_domain = SiweMessage {
            domain: "evil.example".into(),
            ..ok.clone()
        };
        assert_eq!(
            wrong_domain.validate(&expectations(), t),
            Err(SiweError::Domain)
        );
        let wrong_uri = SiweMessage {
            uri: "http://evil".into(),
            ..ok.clone()
        };
        assert_eq!(wrong_uri.validate(&expectations(), t), Err(SiweError::Uri));
        let wrong_chain = SiweMessage {
            chain_id: 1,
            ..ok.clone()
        };
        assert_eq!(
            wrong_chain.validate(&expectations(), t),
            Err(SiweError::ChainId(1))
        );
        assert_eq!(
            ok.validate(&expectations(), t + Duration::minutes(6)),
            Err(SiweError::Expired)
        );
        assert_eq!(
            ok.validate(&expectations(), t - Duration::minutes(1)),
            Err(SiweError::IssuedAt)
        );
        let old = SiweMessage {
            expiration_time: None,
            ..ok.clone()
        };
        assert_eq!(
            old.validate(&expectations(), t + Duration::minutes(11)),
            Err(SiweError::IssuedAt)
        );
        let later = SiweMessage {
            not_before: Some(t + Duration::minutes(2)),
            ..ok
        };
        assert_eq!(
            later.validate(&expectations(), t),
            Err(SiweError::NotYetValid)
        );
    }

    #[test]
    fn rejects_malformed_text() {
        assert!(SiweMessage::parse("").is_err());
        assert!(SiweMessage::parse("hello\nworld").is_err());
        let text = sample(now()).to_text();
        assert!(SiweMessage::parse(&text.replace("Nonce: abcdef1234", "Nonce: a!")).is_err());
        assert!(SiweMessage::parse(&text.replace("Version: 1\n", "")).is_err());
        assert!(SiweMessage::parse(&format!("{text}\nBogus: 1")).is_err());
        let bad_checksum = text.replace(
            &Address::repeat_byte(0x11).to_checksum(None),
            "0x1111111111111111111111111111111111111Aa1",
        );
        assert!(SiweMessage::parse(&bad_checksum).is_err());
    }
}
