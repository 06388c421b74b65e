//! A server's certificate chain and key from PEM files, reloadable while serving
//! ([`ReloadingCertificate`]), and its rustls configuration ([`server_config`]).
//!
//! rustls asks the resolver for a certificate on every handshake, so swapping the one it
//! hands out changes what new connections see while established connections carry on
//! untouched: nothing is dropped by a reload. A reload that fails (a missing file, a key that
//! does not match the certificate) keeps the certificate in use.

use crate::{
    TlsError,
    trust::{PROTOCOL_VERSIONS, load_certificates, load_private_key, provider},
};
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

/// The certificate chain and key files of a TLS server, and the pair currently served.
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCertificate {
    /// Loads the chain (`cert_path`: the server's certificate first, then intermediates) and
    /// its private key (`key_path`).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let current = load_pair(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Reads both files again and serves the new pair to every handshake from now on. On
    /// error the previous pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load_pair(&self.cert_path, &self.key_path)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The pair currently served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certificates(cert_path, "certificate chain")?;
    let key = load_private_key(key_path)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|err| TlsError::Pem {
        what: "private key",
        path: key_path.to_owned(),
        reason: format!(
            "does not fit the certificate {}: {err}",
            cert_path.display()
        ),
    })
}

/// A rustls server configuration serving `certificate`: TLS 1.3 and 1.2, ALPN `h2` then
/// `http/1.1`, no client certificates.
pub fn server_config(
    certificate: Arc<ReloadingCertificate>,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_alpn(certificate, &[b"h2", b"http/1.1"])
}

/// As [`server_config`], offering the ALPN protocols `alpn` (in order of preference).
pub fn server_config_with_alpn(
    certificate: Arc<ReloadingCertificate>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        (c, k)
    }

    #[test]
    fn reload_swaps_and_a_failed_reload_keeps_the_old_pair() {
        let dir = std::env::temp_dir().join(format!("carechain-tls-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = write_pair(&dir, "a");
        let served = ReloadingCertificate::load(&cert, &key).expect("loads");
        let first = served.current();
        let (cert_b, key_b) = write_pair(&dir, "b");
        std::fs::copy(&cert_b, &cert).expect("copy");
        std::fs::copy(&key_b, &key).expect("copy");
        served.reload().expect("reloads");
        assert_ne!(first.cert, served.current().cert);

        // A certificate without its key: refused, the pair in use stays.
        let before = served.current();
        std::fs::copy(&cert_b, &cert).expect("copy");
        let (_, other_key) = write_pair(&dir, "c");
        std::fs::copy(&other_key, &key).expect("copy");
        let err = served.reload().expect_err("mismatch");
        assert!(err.to_string().contains("does not fit"), "{err}");
        assert_eq!(before.cert, served.current().cert);
        assert!(server_config(Arc::new(served)).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
