//! Which servers a client believes ([`Trust`]), and the rustls client configuration made from
//! it.
//!
//! Every configuration here uses aws-lc-rs (the workspace's one crypto provider) and speaks
//! TLS 1.3 and 1.2 only.

use crate::TlsError;
use rustls::{
    ClientConfig, RootCertStore,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

/// The TLS versions every carechain endpoint accepts: 1.3 and 1.2, nothing older.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider of every TLS configuration in the workspace (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// The certificates a client trusts to identify servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trust {
    /// The system's root certificates (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR`
    /// when set).
    #[default]
    System,
    /// Only the certificates in this PEM file (a private CA, as `curl --cacert` takes it); the
    /// system's roots are not trusted then.
    CaFile(PathBuf),
}

impl Trust {
    /// [`Trust::CaFile`] when a file is named, else [`Trust::System`].
    pub fn from_ca_file(ca_file: Option<&Path>) -> Self {
        ca_file.map_or(Self::System, |path| Self::CaFile(path.to_owned()))
    }

    /// The root certificates.
    pub fn roots(&self) -> Result<RootCertStore, TlsError> {
        match self {
            Self::System => system_roots(),
            Self::CaFile(path) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certificates(path, "CA file")? {
                    roots.add(cert).map_err(|err| TlsError::Pem {
                        what: "CA file",
                        path: path.clone(),
                        reason: err.to_string(),
                    })?;
                }
                Ok(roots)
            }
        }
    }

    /// A rustls client configuration trusting these roots (no client certificate, no ALPN).
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        Ok(ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)?
            .with_root_certificates(self.roots()?)
            .with_no_client_auth())
    }

    /// Loads the roots once now, so that a missing or malformed CA file stops a service at
    /// start rather than at its first connection.
    pub fn check(&self) -> Result<(), TlsError> {
        self.roots().map(|_| ())
    }
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System => f.write_str("the system's root certificates"),
            Self::CaFile(path) => write!(f, "the CA file {}", path.display()),
        }
    }
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    // Read once per process: the store is a few hundred certificates parsed from disk.
    static ROOTS: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (_, _) = roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(if why.is_empty() {
                    "the system store is empty".to_owned()
                } else {
                    why
                })
            } else {
                Ok(roots)
            }
        })
        .clone()
        .map_err(TlsError::NoSystemRoots)
}

/// Reads the PEM certificates of `path` (at least one).
pub fn load_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem {
            what,
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_owned(),
            reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        });
    }
    Ok(certs)
}

/// Reads the PEM private key of `path` (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| TlsError::Pem {
        what: "private key",
        path: path.to_owned(),
        // The error names the PEM section at most, never the key's bytes.
        reason: err.to_string(),
    })
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_replaces_the_system_roots() {
        let dir = std::env::temp_dir().join(format!("carechain-tls-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("ca");
        let path = dir.join("ca.pem");
        std::fs::write(&path, ca.pem()).expect("write");
        let roots = Trust::CaFile(path.clone()).roots().expect("loads");
        assert_eq!(roots.len(), 1);

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        let err = Trust::CaFile(empty).roots().expect_err("refused");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let err = Trust::CaFile(dir.join("missing.pem"))
            .check()
            .expect_err("refused");
        assert!(err.to_string().contains("cannot read the CA file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_configs_speak_tls_12_and_13_only() {
        let config = Trust::System.client_config();
        // A machine without ca-certificates has no system roots: the error says so.
        if let Err(err) = &config {
            assert!(err.to_string().contains("system root"), "{err}");
        }
        assert_eq!(PROTOCOL_VERSIONS.len(), 2);
    }
}
