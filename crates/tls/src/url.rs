//! [`RedactedUrl`]: a URL that may carry credentials (`user:password@`, an API key in the path
//! or the query, as node providers hand them out) and never shows them.
//!
//! Its `Display` and `Debug` print `scheme://host:port` with every secret-bearing part
//! replaced by `***`; only [`RedactedUrl::expose`] gives the real URL, for the one place that
//! connects. Parsing errors never echo the input (clap's own "invalid value" message would, so
//! [`RedactedUrl`] brings its own clap value parser).

use crate::TlsError;
use std::{fmt, net::IpAddr, str::FromStr};
use url::Url;

/// What the redacted form shows in place of a secret.
const HIDDEN: &str = "***";

/// A URL whose credentials never reach a log line, a metric, an error or a panic message.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedactedUrl(Url);

impl RedactedUrl {
    /// Parses `text` as an absolute URL; the error does not contain `text`.
    pub fn parse(text: &str) -> Result<Self, TlsError> {
        Url::parse(text.trim())
            .map(Self)
            .map_err(|err| TlsError::InvalidUrl(err.to_string()))
    }

    /// The URL itself, credentials included: for connecting, never for printing.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// The scheme (`https`, `http`, ...).
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    /// Whether the URL carries anything that is hidden when printed: a user name or password,
    /// a path other than `/`, or a query.
    pub fn has_hidden_parts(&self) -> bool {
        !self.0.username().is_empty()
            || self.0.password().is_some()
            || !matches!(self.0.path(), "" | "/")
            || self.0.query().is_some()
    }

    /// Whether the host is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`.
    pub fn is_loopback(&self) -> bool {
        match self.0.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(url::Host::Domain(name)) => {
                name.eq_ignore_ascii_case("localhost")
                    || name.to_ascii_lowercase().ends_with(".localhost")
            }
            None => false,
        }
    }

    /// `text` with every secret of this URL replaced: the whole URL by its redacted form, then
    /// the password, the user name, the path and the query wherever they still appear (a
    /// library's error may quote any of them).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.0.as_str(), &self.to_string());
        let without_slash = self.0.as_str().trim_end_matches('/');
        if without_slash.len() < self.0.as_str().len() {
            out = out.replace(without_slash, &self.to_string());
        }
        let mut secrets: Vec<&str> = Vec::new();
        secrets.extend(self.0.password());
        // A user name of one or two letters would garble the text; it is no secret alone.
        if self.0.username().len() >= 3 {
            secrets.push(self.0.username());
        }
        secrets.extend(self.0.query());
        if !matches!(self.0.path(), "" | "/") {
            secrets.push(self.0.path());
            secrets.extend(
                self.0
                    .path_segments()
                    .into_iter()
                    .flatten()
                    .filter(|segment| segment.len() >= 4),
            );
        }
        // Longest first, so that a segment never leaves part of the path it belongs to.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            if !secret.is_empty() {
                out = out.replace(secret, HIDDEN);
            }
        }
        out
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.0.scheme())?;
        if !self.0.username().is_empty() || self.0.password().is_some() {
            write!(f, "{HIDDEN}@")?;
        }
        match self.0.host() {
            Some(url::Host::Ipv6(ip)) => write!(f, "[{ip}]")?,
            Some(host) => write!(f, "{host}")?,
            None => {}
        }
        if let Some(port) = self.0.port() {
            write!(f, ":{port}")?;
        }
        let root = matches!(self.0.path(), "" | "/");
        if !root {
            write!(f, "/{HIDDEN}")?;
        }
        if self.0.query().is_some() {
            write!(f, "{}?{HIDDEN}", if root { "/" } else { "" })?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({self})")
    }
}

impl FromStr for RedactedUrl {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        Self::parse(s)
    }
}

impl From<Url> for RedactedUrl {
    fn from(url: Url) -> Self {
        Self(url)
    }
}

/// clap's parser for [`RedactedUrl`] arguments: an invalid value is reported without echoing it
/// (clap's default message quotes the value, which may hold a password or an API key).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactedUrlParser;

impl clap::builder::TypedValueParser for RedactedUrlParser {
    type Value = RedactedUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<RedactedUrl, clap::Error> {
        let name = arg
            .and_then(|a| a.get_long().map(|l| format!("--{l}")))
            .unwrap_or_else(|| "the URL".to_owned());
        let invalid = |reason: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "invalid value for {name}: {reason} (the value is not shown: it may hold credentials)\n"
                ),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid("not UTF-8".to_owned()))?;
        RedactedUrl::parse(text).map_err(|err| invalid(err.to_string()))
    }
}

impl clap::builder::ValueParserFactory for RedactedUrl {
    type Parser = RedactedUrlParser;

    fn value_parser() -> RedactedUrlParser {
        RedactedUrlParser
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RedactedUrl {
        RedactedUrl::parse(s).expect("a URL")
    }

    #[test]
    fn display_and_debug_hide_every_secret() {
        let cases = [
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545"),
            (
                "https://alice:s3cret@node.example:8443/",
                "https://***@node.example:8443",
            ),
            (
                "https://mainnet.node.example/v3/0123456789abcdef",
                "https://mainnet.node.example/***",
            ),
            (
                "https://node.example/rpc?apikey=0123456789abcdef",
                "https://node.example/***?***",
            ),
            ("https://[::1]:8545", "https://[::1]:8545"),
            (
                "https://node.example/?apikey=0123456789abcdef",
                "https://node.example/?***",
            ),
        ];
        for (input, shown) in cases {
            let u = url(input);
            assert_eq!(u.to_string(), shown);
            assert_eq!(format!("{u:?}"), format!("RedactedUrl({shown})"));
        }
    }

    #[test]
    fn scrub_removes_secrets_from_any_text() {
        let u = url("https://alice:s3cretpw@node.example/v3/0123456789abcdef?key=feedface");
        let text = format!(
            "error sending request for url ({}): connect failed; path /v3/0123456789abcdef; \
             key 0123456789abcdef, query key=feedface, s3cretpw",
            u.expose()
        );
        let scrubbed = u.scrub(&text);
        for secret in ["s3cretpw", "0123456789abcdef", "feedface", "alice"] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        assert!(
            scrubbed.contains("https://***@node.example/***?***"),
            "{scrubbed}"
        );
    }

    #[test]
    fn errors_do_not_echo_the_input() {
        let err = RedactedUrl::parse("https://user:pw@[not-an-ip/").expect_err("invalid");
        assert!(!err.to_string().contains("pw"), "{err}");
        use clap::builder::TypedValueParser;
        let cmd = clap::Command::new("x");
        let err = RedactedUrlParser
            .parse_ref(
                &cmd,
                None,
                std::ffi::OsStr::new("https://user:topsecret@[::"),
            )
            .expect_err("invalid");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn loopback_and_hidden_parts() {
        assert!(url("http://127.0.0.1:8080").is_loopback());
        assert!(url("http://[::1]:8080").is_loopback());
        assert!(url("http://localhost:8080").is_loopback());
        assert!(!url("http://10.0.0.1:8080").is_loopback());
        assert!(!url("http://gw.example").is_loopback());
        assert!(!url("http://127.0.0.1:8545").has_hidden_parts());
        assert!(url("http://127.0.0.1:8545/x").has_hidden_parts());
        assert!(url("http://u@127.0.0.1:8545").has_hidden_parts());
    }
}
