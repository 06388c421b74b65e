//! PostgreSQL over TLS: connect options with an `sslmode` and a root certificate ([`PgTls`]).
//!
//! The database URL may already say `?sslmode=verify-full&sslrootcert=/path/ca.pem` (and
//! `PGSSLMODE` / `PGSSLROOTCERT` are read as libpq reads them); the settings of [`PgTls`],
//! from each service's `--db-sslmode` and `--db-ca-file`, take precedence over both. What the
//! modes mean with sqlx on rustls:
//!
//! - `disable`: plain TCP; `prefer` (sqlx's default): TLS when the server offers it, without
//!   verifying the certificate, else plain;
//! - `require`: TLS or nothing, the certificate not verified (encryption against a passive
//!   listener only);
//! - `verify-ca`: TLS, the certificate chain verified against the root certificate (or, with
//!   none, against the Mozilla root program compiled into the binary);
//! - `verify-full`: as `verify-ca`, and the certificate must name the host connected to. Use
//!   this across any network.

use crate::TlsError;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

/// TLS settings for PostgreSQL connections that override the URL's.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct PgTls {
    /// PostgreSQL TLS mode: disable, prefer, require (encrypted, not verified), verify-ca or
    /// verify-full (encrypted, the certificate verified for the host). Overrides the URL's
    /// `sslmode` [default: the URL's, else prefer].
    #[arg(long = "db-sslmode", env = "CARECHAIN_DB_SSLMODE", value_name = "MODE")]
    pub sslmode: Option<String>,
    /// Root certificate(s) (PEM) the PostgreSQL server's certificate must chain to, for
    /// verify-ca and verify-full. Overrides the URL's `sslrootcert`.
    #[arg(long = "db-ca-file", env = "CARECHAIN_DB_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

impl PgTls {
    /// Settings with `sslmode` and a root certificate.
    pub fn new(sslmode: Option<&str>, ca_file: Option<&Path>) -> Self {
        Self {
            sslmode: sslmode.map(str::to_owned),
            ca_file: ca_file.map(Path::to_owned),
        }
    }

    /// The connect options of `url` with these settings applied. Errors never quote the URL
    /// (it may hold a password). A root certificate is read now, so a missing or malformed
    /// file stops a service at start.
    pub fn connect_options(&self, url: &str) -> Result<PgConnectOptions, TlsError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|err| TlsError::PgUrl(scrub_pg_error(url, &err.to_string())))?;
        if let Some(mode) = &self.sslmode {
            options = options.ssl_mode(parse_sslmode(mode)?);
        }
        if let Some(path) = &self.ca_file {
            crate::trust::load_certificates(path, "PostgreSQL root certificate")?;
            options = options.ssl_root_cert(path);
        }
        Ok(options)
    }
}

/// `sslmode` by its libpq name.
pub fn parse_sslmode(mode: &str) -> Result<PgSslMode, TlsError> {
    PgSslMode::from_str(mode.trim()).map_err(|_| TlsError::SslMode(mode.trim().to_owned()))
}

/// `message` without the password of `url`, should the driver have quoted it.
fn scrub_pg_error(url: &str, message: &str) -> String {
    match crate::RedactedUrl::parse(url) {
        Ok(parsed) => parsed.scrub(message),
        Err(_) => message.replace(url, "<the database URL>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_url() {
        let url = "postgres://u:pw@db.example:5432/carechain?sslmode=require";
        let options = PgTls::default().connect_options(url).expect("options");
        assert!(matches!(options.get_ssl_mode(), PgSslMode::Require));
        let options = PgTls::new(Some("verify-full"), None)
            .connect_options(url)
            .expect("options");
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));
        let err = PgTls::new(Some("verify-everything"), None)
            .connect_options(url)
            .expect_err("unknown mode");
        assert!(err.to_string().contains("verify-everything"), "{err}");
        let err = PgTls::new(None, Some(Path::new("/nonexistent/ca.pem")))
            .connect_options(url)
            .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn url_errors_do_not_quote_the_password() {
        let err = PgTls::default()
            .connect_options("postgres://u:s3cretpw@db.example:notaport/x")
            .expect_err("bad port");
        assert!(!err.to_string().contains("s3cretpw"), "{err}");
    }
}
