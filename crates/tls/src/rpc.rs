//! The chain's JSON-RPC endpoint over HTTP or HTTPS ([`RpcEndpoint`]).
//!
//! alloy's own HTTP transport prints the endpoint's URL in its tracing span and its errors
//! quote it (reqwest's do): a node provider's URL carries an API key or a password, so carechain
//! sends JSON-RPC through [`RpcTransport`] instead, which knows the URL only as a
//! [`RedactedUrl`] when it prints anything. Otherwise it behaves as alloy's: one POST per
//! request packet, a JSON-RPC error answered with an HTTP error status is returned as the
//! JSON-RPC error it is, other HTTP errors keep their status and `Retry-After`.

use crate::{RedactedUrl, TlsError, Trust, http::client_builder};
use alloy::{
    rpc::{
        client::{ClientBuilder, RpcClient},
        json_rpc::{RequestPacket, ResponsePacket},
    },
    transports::{TransportError, TransportErrorKind, TransportFut},
};
use std::{
    path::{Path, PathBuf},
    task::{Context, Poll},
    time::Duration,
};

/// A JSON-RPC endpoint: its URL (possibly carrying credentials) and the trust its HTTPS
/// certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcEndpoint {
    url: RedactedUrl,
    trust: Trust,
}

impl RpcEndpoint {
    /// The endpoint at `url`, its certificate checked against `ca_file` when given, else the
    /// system's roots.
    pub fn new(url: RedactedUrl, ca_file: Option<&Path>) -> Self {
        Self {
            url,
            trust: Trust::from_ca_file(ca_file),
        }
    }

    /// Parses `url` (see [`RedactedUrl::parse`]) and checks its scheme.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let endpoint = Self::new(RedactedUrl::parse(url)?, ca_file);
        endpoint.check_scheme()?;
        Ok(endpoint)
    }

    /// The URL, to print.
    pub fn url(&self) -> &RedactedUrl {
        &self.url
    }

    /// The trust.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The CA file, when one is configured.
    pub fn ca_file(&self) -> Option<&PathBuf> {
        match &self.trust {
            Trust::CaFile(path) => Some(path),
            Trust::System => None,
        }
    }

    fn check_scheme(&self) -> Result<(), TlsError> {
        match self.url.scheme() {
            "http" | "https" => Ok(()),
            _ => Err(TlsError::UnsupportedScheme {
                url: self.url.clone(),
            }),
        }
    }

    /// The transport: requests time out after `timeout` (connecting after at most 5 s).
    pub fn transport(&self, timeout: Duration) -> Result<RpcTransport, TlsError> {
        self.check_scheme()?;
        let http = client_builder(&self.trust)?
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|err| TlsError::HttpClient(err.without_url().to_string()))?;
        Ok(RpcTransport {
            http,
            url: self.url.clone(),
        })
    }

    /// An alloy RPC client over [`RpcEndpoint::transport`], for `RootProvider::new` or
    /// `ProviderBuilder::connect_client`.
    pub fn client(&self, timeout: Duration) -> Result<RpcClient, TlsError> {
        let is_local = self.url.is_loopback();
        Ok(ClientBuilder::default().transport(self.transport(timeout)?, is_local))
    }
}

impl std::fmt::Display for RpcEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.url.fmt(f)
    }
}

/// Why a JSON-RPC request did not reach the node or got no answer: the endpoint by its
/// redacted URL and the cause, scrubbed of the URL's secrets.
#[derive(Debug, thiserror::Error)]
#[error("JSON-RPC request to {url} failed: {cause}")]
pub struct RpcTransportError {
    url: RedactedUrl,
    cause: String,
    certificate: bool,
}

impl RpcTransportError {
    fn new(url: &RedactedUrl, error: reqwest::Error) -> Self {
        let error = error.without_url();
        let mut cause = error.to_string();
        let mut certificate = false;
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            let text = inner.to_string();
            certificate |= text.contains("certificate") || text.contains("Certificate");
            if !cause.contains(&text) {
                cause.push_str(": ");
                cause.push_str(&text);
            }
            source = inner.source();
        }
        Self {
            url: url.clone(),
            cause: url.scrub(&cause),
            certificate,
        }
    }

    /// Whether the server's certificate was refused (untrusted, expired, or not for this
    /// host): a configuration problem rather than an outage.
    pub fn is_certificate_error(&self) -> bool {
        self.certificate
    }
}

/// Whether `error` is a transport failure because the server's certificate was refused.
pub fn is_certificate_error(error: &TransportError) -> bool {
    match error {
        TransportError::Transport(kind) => kind
            .as_custom()
            .and_then(|e| e.downcast_ref::<RpcTransportError>())
            .is_some_and(RpcTransportError::is_certificate_error),
        _ => false,
    }
}

/// alloy transport: JSON-RPC over HTTP(S) through reqwest on rustls; see the module docs.
#[derive(Debug, Clone)]
pub struct RpcTransport {
    http: reqwest::Client,
    url: RedactedUrl,
}

impl RpcTransport {
    async fn send(self, request: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let response = self
            .http
            .post(self.url.expose().clone())
            .headers(request.headers())
            .json(&request)
            .send()
            .await
            .map_err(|err| TransportErrorKind::custom(RpcTransportError::new(&self.url, err)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(err) => {
                return Err(TransportErrorKind::custom(RpcTransportError::new(
                    &self.url, err,
                )));
            }
        };
        if !status.is_success() {
            if let Ok(packet) = serde_json::from_slice::<ResponsePacket>(&body)
                && packet.is_error()
            {
                return Ok(packet);
            }
            // A proxy's error page might quote the request's URL.
            let text = self.url.scrub(&String::from_utf8_lossy(&body));
            return Err(TransportErrorKind::http_error_with_retry_after(
                status.as_u16(),
                text,
                retry_after,
            ));
        }
        serde_json::from_slice(&body).map_err(|err| {
            TransportError::deser_err(err, self.url.scrub(&String::from_utf8_lossy(&body)))
        })
    }
}

impl tower::Service<RequestPacket> for RpcTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> TransportFut<'static> {
        Box::pin(self.clone().send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::providers::{Provider, RootProvider};

    #[tokio::test]
    async fn an_unreachable_endpoint_is_named_without_its_credentials() {
        // A port nothing listens on: connecting fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let secret_url =
            format!("http://rpcuser:hunter2pw@127.0.0.1:{port}/v3/0123456789abcdef?apikey=feed42");
        let endpoint = RpcEndpoint::parse(&secret_url, None).expect("endpoint");
        let provider = RootProvider::<alloy::network::Ethereum>::new(
            endpoint.client(Duration::from_secs(2)).expect("client"),
        );
        let err = provider.get_chain_id().await.expect_err("nothing listens");
        let shown = format!("{err} / {err:?}");
        for secret in ["hunter2pw", "rpcuser", "0123456789abcdef", "feed42"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
        assert!(!is_certificate_error(&err));
    }

    #[test]
    fn other_schemes_are_refused() {
        let err = RpcEndpoint::parse("ws://127.0.0.1:8545", None).expect_err("refused");
        assert!(matches!(err, TlsError::UnsupportedScheme { .. }), "{err}");
    }
}
