//! HTTPS clients with the configured trust ([`client_builder`]) and the outbound client of
//! gateway-to-gateway calls ([`PeerClient`]).
//!
//! Every client here negotiates HTTP/2 or HTTP/1.1 by ALPN, speaks TLS 1.2+ and follows no
//! redirect: a redirect could lead a request (and its bearer token or credentials) to a host
//! the operator never named, or from HTTPS to plain HTTP.

use crate::{RedactedUrl, TlsError, Trust};
use std::time::Duration;

/// A reqwest client builder whose TLS trusts `trust`, negotiating `h2` or `http/1.1`, with
/// redirects off. Add timeouts and build.
pub fn client_builder(trust: &Trust) -> Result<reqwest::ClientBuilder, TlsError> {
    let mut tls = trust.client_config()?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none()))
}

/// When a peer gateway may be reached over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerPolicy {
    /// Allow `http://` to a loopback address (`127.0.0.0/8`, `::1`, `localhost`): for a
    /// consortium of gateways on one machine in development and tests. Never anything else.
    pub allow_plain_http_loopback: bool,
}

impl PeerPolicy {
    /// Whether `url` may be called: `https://` always; `http://` only to a loopback address when
    /// allowed; nothing else.
    pub fn check(&self, url: &RedactedUrl) -> Result<(), TlsError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_plain_http_loopback && url.is_loopback() => Ok(()),
            "http" => Err(TlsError::PlainHttpRefused { url: url.clone() }),
            _ => Err(TlsError::UnsupportedScheme { url: url.clone() }),
        }
    }
}

/// The client a gateway calls other organisations' gateways with (federation): HTTPS with the
/// configured trust (the system's roots, or the consortium's CA file), the peer's certificate
/// verified against it for the host named in the URL, plain HTTP refused unless
/// [`PeerPolicy::allow_plain_http_loopback`] and the peer is on loopback. Connections are kept
/// and reused (HTTP/2 multiplexes the fan-out's requests to one custodian).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use carechain_tls::{PeerClient, PeerPolicy, RedactedUrl, Trust};
/// use std::time::Duration;
/// let peers = PeerClient::new(
///     &Trust::from_ca_file(Some("consortium-ca.pem".as_ref())),
///     PeerPolicy::default(),
///     Duration::from_secs(5),
/// )?;
/// let peer: RedactedUrl = "https://fhir.hospital-a.example/Observation?patient=0xab".parse()?;
/// let answer = peers.get(&peer)?.bearer_auth("...").send().await?;
/// # let _ = answer; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    policy: PeerPolicy,
}

impl PeerClient {
    /// A client trusting `trust`, each request bounded by `timeout` (connecting included).
    pub fn new(trust: &Trust, policy: PeerPolicy, timeout: Duration) -> Result<Self, TlsError> {
        let http = client_builder(trust)?
            .https_only(!policy.allow_plain_http_loopback)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|err| TlsError::HttpClient(err.to_string()))?;
        Ok(Self { http, policy })
    }

    /// The policy on plain HTTP.
    pub fn policy(&self) -> PeerPolicy {
        self.policy
    }

    /// A request to `url`, refused before anything is sent when the policy forbids the URL.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &RedactedUrl,
    ) -> Result<reqwest::RequestBuilder, TlsError> {
        self.policy.check(url)?;
        Ok(self.http.request(method, url.expose().clone()))
    }

    /// `GET url` (see [`PeerClient::request`]).
    pub fn get(&self, url: &RedactedUrl) -> Result<reqwest::RequestBuilder, TlsError> {
        self.request(reqwest::Method::GET, url)
    }

    /// `POST url` (see [`PeerClient::request`]).
    pub fn post(&self, url: &RedactedUrl) -> Result<reqwest::RequestBuilder, TlsError> {
        self.request(reqwest::Method::POST, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RedactedUrl {
        RedactedUrl::parse(s).expect("url")
    }

    #[test]
    fn plain_http_only_to_loopback_and_only_when_allowed() {
        let strict = PeerPolicy::default();
        let dev = PeerPolicy {
            allow_plain_http_loopback: true,
        };
        assert!(strict.check(&url("https://gw.example/fhir")).is_ok());
        assert!(strict.check(&url("http://127.0.0.1:8080")).is_err());
        assert!(dev.check(&url("http://127.0.0.1:8080")).is_ok());
        assert!(dev.check(&url("http://localhost:8080")).is_ok());
        assert!(dev.check(&url("http://[::1]:8080")).is_ok());
        let err = dev.check(&url("http://gw.example")).expect_err("refused");
        assert!(matches!(err, TlsError::PlainHttpRefused { .. }));
        assert!(dev.check(&url("http://10.1.2.3")).is_err());
        assert!(matches!(
            dev.check(&url("ftp://gw.example")),
            Err(TlsError::UnsupportedScheme { .. })
        ));
    }
}
