//! Test support (feature `test-support`): a throw-away certificate authority ([`TestCa`]), a
//! TLS-terminating TCP proxy ([`TlsProxy`]) to put in front of a plain service such as anvil,
//! and a private PostgreSQL cluster that accepts TLS connections only ([`TlsPostgres`]).
//!
//! Nothing here is for production: keys are generated in the test and written unencrypted.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use crate::server::{ReloadingCertificate, server_config_with_alpn};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};
use tokio::{net::TcpListener, task::JoinHandle};

/// A certificate authority made for one test, its certificate in `<dir>/<name>-ca.pem`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_file: PathBuf,
    dir: PathBuf,
    name: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// A certificate issued by a [`TestCa`]: the chain and key as PEM files.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`; files go to `dir` (created).
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("carechain test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, cert.pem()).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            ca_file,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The CA's certificate (what a client is told to trust).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid from 2020 to 2100,
    /// written as `<dir>/<name>-<stem>.pem` and `.key`.
    pub fn issue(&self, names: &[&str], stem: &str) -> IssuedCert {
        self.issue_between(names, stem, 2020, 2100)
    }

    /// A server certificate for `names` that expired (valid in 2020 only).
    pub fn issue_expired(&self, names: &[&str], stem: &str) -> IssuedCert {
        self.issue_between(names, stem, 2020, 2021)
    }

    fn issue_between(
        &self,
        names: &[&str],
        stem: &str,
        from_year: i32,
        until_year: i32,
    ) -> IssuedCert {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.is_ca = IsCa::NoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.not_before = rcgen::date_time_ymd(from_year, 1, 1);
        params.not_after = rcgen::date_time_ymd(until_year, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let base = self.dir.join(format!("{}-{stem}", self.name));
        let issued = IssuedCert {
            cert: base.with_extension("pem"),
            key: base.with_extension("key"),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

/// A TLS-terminating TCP proxy on 127.0.0.1: TLS (HTTP/1.1 by ALPN) from clients, plain TCP
/// to the upstream. Stops when dropped.
#[derive(Debug)]
pub struct TlsProxy {
    addr: SocketAddr,
    certificate: Arc<ReloadingCertificate>,
    task: JoinHandle<()>,
}

impl TlsProxy {
    /// Serves `cert` on a free loopback port and forwards to `upstream`.
    pub async fn start(cert: &IssuedCert, upstream: SocketAddr) -> Self {
        let certificate = Arc::new(ReloadingCertificate::load(&cert.cert, &cert.key).unwrap());
        // The bytes are passed through as they come: the upstream must speak what the client
        // negotiated, and a plain HTTP service speaks HTTP/1.1.
        let config = server_config_with_alpn(Arc::clone(&certificate), &[b"http/1.1"]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Owned by this task: stopping the proxy ends every connection it carries too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self {
            addr,
            certificate,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Its certificate (reloadable).
    pub fn certificate(&self) -> &ReloadingCertificate {
        &self.certificate
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A private PostgreSQL cluster (started by `scripts/lib.sh pg_start`, as the `postgres` OS
/// user when running as root) with `ssl=on`, a certificate from a [`TestCa`], and a
/// `pg_hba.conf` that rejects every connection not made over TLS. Stopped when dropped.
#[derive(Debug)]
pub struct TlsPostgres {
    repo_root: PathBuf,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The superuser.
    pub user: String,
}

impl TlsPostgres {
    /// Starts a cluster in `dir` (created; must be reachable by the `postgres` user when
    /// running as root) serving `cert`.
    pub fn start(repo_root: &Path, dir: &Path, cert: &IssuedCert) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let root = is_root();
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let (server_cert, server_key, hba) = (
            tls.join("server.crt"),
            tls.join("server.key"),
            tls.join("pg_hba.conf"),
        );
        std::fs::copy(&cert.cert, &server_cert).unwrap();
        std::fs::copy(&cert.key, &server_key).unwrap();
        std::fs::write(
            &hba,
            "# TLS or nothing\n\
             local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostssl all all ::1/128 trust\n\
             hostnossl all all 0.0.0.0/0 reject\n\
             hostnossl all all ::/0 reject\n",
        )
        .unwrap();
        let mut chmod = vec![("755", dir.to_owned()), ("755", tls.clone())];
        chmod.push(("600", server_key.clone()));
        for (mode, path) in &chmod {
            run(Command::new("chmod").arg(mode).arg(path));
        }
        if root {
            run(Command::new("chown").arg("-R").arg("postgres:").arg(&tls));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-c fsync=off -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c hba_file={} \
             -c ssl_min_protocol_version=TLSv1.2",
            server_cert.display(),
            server_key.display(),
            hba.display()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1/scripts/lib.sh" && PG_SERVER_OPTS="$2" pg_start "$3" "$4" && echo "$PG_SUPERUSER""#)
            .arg("pg_start")
            .arg(repo_root)
            .arg(options)
            .arg(dir)
            .arg(port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_start with ssl=on failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let user = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("postgres")
            .trim()
            .to_owned();
        Self {
            repo_root: repo_root.to_owned(),
            dir: dir.to_owned(),
            port,
            user,
        }
    }

    /// The URL of its `carechain` database for `host` (`127.0.0.1` or `localhost`), without
    /// TLS settings.
    pub fn url(&self, host: &str) -> String {
        format!("postgres://{}@{host}:{}/carechain", self.user, self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1/scripts/lib.sh" && pg_stop "$2""#)
            .arg("pg_stop")
            .arg(&self.repo_root)
            .arg(&self.dir)
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(command: &mut Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?} failed");
}
