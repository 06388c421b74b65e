//! carechain's transport security, shared by every service and tool of the workspace.
//!
//! - [`trust`]: which servers a client believes: the system's root certificates, or a CA
//!   bundle named by the operator ([`Trust`]); rustls client configurations (TLS 1.2 and 1.3
//!   only, aws-lc-rs) built from it;
//! - [`url`]: [`RedactedUrl`], a URL whose credentials (user and password, an API key in the
//!   path or the query) never reach a log line, a metric, an error or a panic;
//! - [`http`]: HTTPS clients (reqwest on rustls) with the configured trust, and the outbound
//!   client of gateway-to-gateway calls ([`PeerClient`]): HTTPS only, unless the peer is on a
//!   loopback address and the operator allowed plain HTTP there;
//! - [`rpc`]: the chain's JSON-RPC over HTTP or HTTPS ([`RpcEndpoint`]): the configured trust,
//!   and errors that name the endpoint only by its redacted URL;
//! - [`pg`]: PostgreSQL connect options with `sslmode` (`require`, `verify-ca`, `verify-full`)
//!   and a root certificate ([`PgTls`]);
//! - [`server`]: a server's certificate chain and key from PEM files, reloadable without
//!   dropping connections ([`ReloadingCertificate`]), and the rustls server configuration
//!   (TLS 1.2+, ALPN `h2` and `http/1.1`).
//!
//! With the `test-support` feature, [`testing`] has what the suites need: a throw-away CA, a
//! TLS-terminating proxy and a PostgreSQL cluster that requires TLS.

pub mod http;
pub mod pg;
pub mod rpc;
pub mod server;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod trust;
pub mod url;

pub use http::{PeerClient, PeerPolicy};
pub use pg::PgTls;
pub use rpc::RpcEndpoint;
pub use server::ReloadingCertificate;
pub use trust::Trust;
pub use url::RedactedUrl;
/// The rustls and tokio-rustls this crate is built with (the servers use them directly).
pub use {rustls, tokio_rustls};

use std::path::PathBuf;

/// Why a TLS setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named in the configuration cannot be read.
    #[error("cannot read the {what} {path}: {source}")]
    ReadFile {
        /// What the file should hold (`CA file`, `certificate chain`, ...).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file is malformed or holds nothing of what it should.
    #[error("the {what} {path} is unusable: {reason}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The system's root certificates could not be loaded (none found).
    #[error("no system root certificates found ({0}): install ca-certificates, or name a CA file")]
    NoSystemRoots(String),
    /// rustls refused the certificates, the key or the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// A URL could not be parsed (the text is not repeated: it may hold credentials).
    #[error("not a valid URL: {0}")]
    InvalidUrl(String),
    /// A URL's scheme is not one the client speaks.
    #[error("{url}: unsupported scheme (expected http or https)")]
    UnsupportedScheme {
        /// The URL, redacted.
        url: RedactedUrl,
    },
    /// A peer was named by a plain-HTTP URL where only HTTPS is allowed.
    #[error(
        "{url}: refusing plain HTTP to a peer gateway (PHI travels over HTTPS only; plain HTTP is \
         allowed only to a loopback address, and only when the operator allows it)"
    )]
    PlainHttpRefused {
        /// The URL, redacted.
        url: RedactedUrl,
    },
    /// An `sslmode` value PostgreSQL does not know.
    #[error("unknown sslmode `{0}` (disable, allow, prefer, require, verify-ca or verify-full)")]
    SslMode(String),
    /// The PostgreSQL URL cannot be parsed (the text is not repeated).
    #[error("the PostgreSQL URL is invalid: {0}")]
    PgUrl(String),
}
