//! Transport security, with real sockets and processes: the gateway on HTTPS (HTTP/2 and
//! HTTP/1.1, TLS 1.2+, security headers; untrusting clients and expired certificates refused;
//! certificate reload in process and by SIGHUP to the binary; plain HTTP refused off
//! loopback), the gateway and the indexer following an anvil behind a TLS-terminating proxy
//! and using a PostgreSQL that accepts TLS only (and refusing servers whose certificate does
//! not match), RPC credentials kept out of the binary's logs, and the per-user limits.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use carechain_gateway::{Gateway, GatewayConfig};
use carechain_testkit::{TempDir, repo_root};
use carechain_tls::{
    PgTls, Trust,
    rustls::{self, ClientConfig},
    testing::{IssuedCert, TestCa, TlsPostgres, TlsProxy},
};
use common::{ConfigureCustodian, TestChain, TestGateway, TestIndexer, fresh_database};
use serde_json::{Value, json};
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

/// A client trusting `ca` only, offering h2 and http/1.1.
fn client_trusting(ca: &Path) -> reqwest::Client {
    carechain_tls::http::client_builder(&Trust::CaFile(ca.to_owned()))
        .unwrap()
        .build()
        .unwrap()
}

/// A client trusting `ca` only, with exactly this rustls configuration's versions and ALPN.
fn client_with(
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> reqwest::Client {
    let mut config = ClientConfig::builder_with_provider(carechain_tls::trust::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(Trust::CaFile(ca.to_owned()).roots().unwrap())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// The whole chain of causes of an error, to look for the reason in.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(" / ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn serve_tls(cert: &IssuedCert) -> impl FnOnce(&mut GatewayConfig) {
    let cert = cert.clone();
    move |c: &mut GatewayConfig| {
        c.tls_cert = Some(cert.cert);
        c.tls_key = Some(cert.key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_answers_over_h2_and_h1_with_security_headers_and_refuses_untrusting_clients() {
    let dir = TempDir::new("https");
    let ca = TestCa::new(dir.path(), "gw");
    let stranger = TestCa::new(dir.path(), "stranger");
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let gw = TestGateway::start_with(
        &chain,
        &db,
        serve_tls(&ca.issue(&["localhost", "127.0.0.1"], "gw")),
    )
    .await;
    assert!(gw.base.starts_with("https://127.0.0.1:"), "{}", gw.base);
    let metadata = gw.url("/metadata");

    // HTTP/2 by ALPN, with the security headers; the CapabilityStatement may be cached.
    let response = client_trusting(ca.ca_file())
        .get(&metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let headers = response.headers();
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.get("cache-control").is_none(), "{headers:?}");
    assert!(headers.contains_key("x-audit-seq"), "audited over TLS too");

    // HTTP/1.1 and TLS 1.2 only: served too; everything but /metadata is no-store.
    let h1 = client_with(ca.ca_file(), &[&rustls::version::TLS12], &[b"http/1.1"]);
    let response = h1.post(gw.url("/auth/nonce")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(response.headers().contains_key("strict-transport-security"));
    let response = h1.get(gw.url("/Observation/none")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["cache-control"], "no-store");

    // Refused: a client trusting the system's roots, one trusting another CA, plain HTTP.
    let err = reqwest::Client::new()
        .get(&metadata)
        .send()
        .await
        .expect_err("untrusted");
    assert!(
        causes(&err).to_lowercase().contains("certificate"),
        "{}",
        causes(&err)
    );
    let err = client_trusting(stranger.ca_file())
        .get(&metadata)
        .send()
        .await
        .expect_err("untrusted");
    assert!(causes(&err).contains("UnknownIssuer"), "{}", causes(&err));
    let plain = metadata.replacen("https://", "http://", 1);
    match reqwest::Client::new().get(&plain).send().await {
        Err(_) => {}
        Ok(response) => assert_ne!(response.status(), 200, "plain HTTP served on the TLS port"),
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let dir = TempDir::new("expired");
    let ca = TestCa::new(dir.path(), "gw");
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let gw = TestGateway::start_with(
        &chain,
        &db,
        serve_tls(&ca.issue_expired(&["127.0.0.1"], "old")),
    )
    .await;
    let err = client_trusting(ca.ca_file())
        .get(gw.url("/metadata"))
        .send()
        .await
        .expect_err("expired");
    assert!(
        causes(&err).contains("certificate expired"),
        "{}",
        causes(&err)
    );
    gw.stop().await;
}

/// Copies `from`'s certificate and key over the files the gateway serves from.
fn install(from: &IssuedCert, to: &IssuedCert) {
    std::fs::copy(&from.cert, &to.cert).unwrap();
    std::fs::copy(&from.key, &to.key).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_connections_the_new_certificate_and_keeps_established_ones() {
    let dir = TempDir::new("reload");
    let (old_ca, new_ca) = (
        TestCa::new(dir.path(), "old"),
        TestCa::new(dir.path(), "new"),
    );
    let served = IssuedCert {
        cert: dir.path().join("served.pem"),
        key: dir.path().join("served.key"),
    };
    install(&old_ca.issue(&["127.0.0.1"], "gw"), &served);
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let mut config = GatewayConfig::with_defaults(
        db.clone(),
        chain.rpc_url.clone(),
        chain.manifest_path.clone(),
        alloy::hex::encode([5u8; 32]),
    );
    serve_tls(&served)(&mut config);
    let gateway = Gateway::start(config).await.unwrap();
    let certificate = gateway.certificate().expect("serves TLS");
    let base = format!("https://{}", gateway.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(async move {
        let _ = stopped.await;
    }));

    // An HTTP/2 connection made before the reload.
    let established = client_trusting(old_ca.ca_file());
    let get = |client: &reqwest::Client| client.get(format!("{base}/metadata")).send();
    assert_eq!(get(&established).await.unwrap().status(), 200);

    // A failed reload (a key that is not the certificate's) changes nothing.
    std::fs::copy(&new_ca.issue(&["127.0.0.1"], "gw").cert, &served.cert).unwrap();
    assert!(certificate.reload().is_err());
    assert_eq!(
        get(&client_trusting(old_ca.ca_file()))
            .await
            .unwrap()
            .status(),
        200
    );

    install(&new_ca.issue(&["127.0.0.1"], "gw2"), &served);
    certificate.reload().unwrap();
    // New connections get the new certificate ...
    assert_eq!(
        get(&client_trusting(new_ca.ca_file()))
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(get(&client_trusting(old_ca.ca_file())).await.is_err());
    // ... and the connection made before it still serves (reconnecting would fail: this client
    // trusts the old CA only).
    for _ in 0..3 {
        assert_eq!(get(&established).await.unwrap().status(), 200);
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// The gateway binary (`carechain-gateway`) with `args`, its output captured.
fn gateway_binary(args: &[String], env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_carechain-gateway"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("CARECHAIN_RPC_URL")
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Everything `child` wrote, once it has exited (after SIGTERM when `stop`).
async fn output_after(child: tokio::process::Child, stop: bool) -> String {
    if stop && let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the gateway stops")
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn wait_until(mut ok: impl AsyncFnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: not reached in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_on_sighup_refuses_plain_http_off_loopback_and_hides_rpc_credentials() {
    let dir = TempDir::new("binary");
    let (old_ca, new_ca) = (
        TestCa::new(dir.path(), "old"),
        TestCa::new(dir.path(), "new"),
    );
    let served = IssuedCert {
        cert: dir.path().join("served.pem"),
        key: dir.path().join("served.key"),
    };
    install(&old_ca.issue(&["127.0.0.1"], "gw"), &served);
    let chain = TestChain::start().await;
    let db = fresh_database().await;

    // Plain HTTP on a non-loopback address: refused at start, saying why.
    let refused = gateway_binary(
        &[
            "--listen".into(),
            "0.0.0.0:0".into(),
            "--manifest".into(),
            chain.manifest_path.display().to_string(),
            "--database-url".into(),
            db.clone(),
            "--kek".into(),
            alloy::hex::encode([5u8; 32]),
        ],
        &[],
    );
    let out = output_after(refused, false).await;
    assert!(
        out.contains("refusing to serve PHI over plain HTTP"),
        "{out}"
    );

    // The RPC through a TLS proxy, named by a URL with a password and an API key.
    let rpc_ca = TestCa::new(dir.path(), "rpc");
    let anvil_addr = chain.rpc_url.trim_start_matches("http://").parse().unwrap();
    let proxy = TlsProxy::start(&rpc_ca.issue(&["127.0.0.1"], "proxy"), anvil_addr).await;
    let secret_url = format!(
        "https://rpcuser:hunter2pass@{}/?apikey=0123456789secretkey",
        proxy.addr()
    );
    let port = free_port();
    let args = vec![
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--manifest".into(),
        chain.manifest_path.display().to_string(),
        "--database-url".into(),
        db.clone(),
        "--kek".into(),
        alloy::hex::encode([5u8; 32]),
        "--tls-cert".into(),
        served.cert.display().to_string(),
        "--tls-key".into(),
        served.key.display().to_string(),
        "--rpc-ca-file".into(),
        rpc_ca.ca_file().display().to_string(),
        "--probe-interval-ms".into(),
        "100".into(),
    ];
    let child = gateway_binary(&args, &[("CARECHAIN_RPC_URL", &secret_url)]);
    let base = format!("https://127.0.0.1:{port}");
    let old = client_trusting(old_ca.ca_file());
    wait_until(
        async || old.get(format!("{base}/metadata")).send().await.is_ok(),
        "the gateway answers over HTTPS",
    )
    .await;

    install(&new_ca.issue(&["127.0.0.1"], "gw"), &served);
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = || client_trusting(new_ca.ca_file());
    wait_until(
        async || fresh().get(format!("{base}/metadata")).send().await.is_ok(),
        "the new certificate is served after SIGHUP",
    )
    .await;
    assert!(
        client_trusting(old_ca.ca_file())
            .get(format!("{base}/metadata"))
            .send()
            .await
            .is_err(),
        "a new connection still got the old certificate"
    );

    // The chain behind the proxy answers (sign-in needs it) ...
    let nonce: Value = fresh()
        .post(format!("{base}/auth/nonce"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(nonce["nonce"].is_string(), "{nonce}");
    // ... then goes away: the health probe and requests fail and log it.
    let shown = format!("https://***@{}/?***", proxy.addr());
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answer = fresh()
        .post(format!("{base}/auth/login"))
        .json(&json!({"message": "x", "signature": "0x00"}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error() || answer.status().is_server_error());
    let out = output_after(child, true).await;
    assert!(out.contains("TLS certificate reloaded"), "{out}");
    assert!(
        out.contains(&shown),
        "the failures are logged, naming the endpoint:\n{out}"
    );
    for secret in ["hunter2pass", "rpcuser", "0123456789secretkey", "apikey="] {
        assert!(!out.contains(secret), "the log shows {secret}:\n{out}");
    }

    // `--help` does not show the URL set in the environment, nor an invalid one given as a flag.
    let help = gateway_binary(&["--help".into()], &[("CARECHAIN_RPC_URL", &secret_url)]);
    let out = output_after(help, false).await;
    assert!(out.contains("--rpc-url"), "{out}");
    assert!(!out.contains("hunter2pass"), "{out}");
    let invalid = gateway_binary(
        &[
            "--rpc-url".into(),
            "https://rpcuser:hunter2pass@[::1/?apikey=0123456789secretkey".into(),
        ],
        &[],
    );
    let out = output_after(invalid, false).await;
    assert!(out.contains("rpc_url"), "{out}");
    for secret in ["hunter2pass", "rpcuser", "0123456789secretkey"] {
        assert!(!out.contains(secret), "the error shows {secret}:\n{out}");
    }
    let _ = dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_and_gateway_over_a_tls_proxy_and_a_postgresql_that_requires_tls() {
    let dir = TempDir::new("tls-infra");
    // The postgres OS user must reach the cluster directory.
    let _ = std::process::Command::new("chmod")
        .args(["755"])
        .arg(dir.path())
        .status();
    let ca = TestCa::new(dir.path(), "infra");
    let stranger = TestCa::new(dir.path(), "stranger");
    // PostgreSQL's certificate names `localhost` only: verify-full to 127.0.0.1 must fail.
    let pg = tokio::task::spawn_blocking({
        let (dir, cert) = (dir.path().join("pg"), ca.issue(&["localhost"], "pg"));
        move || TlsPostgres::start(&repo_root(), &dir, &cert)
    })
    .await
    .unwrap();
    let db = pg.url("localhost");
    let verify_full = PgTls::new(Some("verify-full"), Some(ca.ca_file()));

    // The cluster takes TLS only; verify-full checks the chain and the name.
    let connect = |url: String, tls: PgTls| async move {
        sqlx::PgPool::connect_with(tls.connect_options(&url).unwrap()).await
    };
    let err = connect(db.clone(), PgTls::new(Some("disable"), None))
        .await
        .expect_err("plain");
    assert!(err.to_string().contains("no encryption"), "{err}");
    let pool = connect(db.clone(), verify_full.clone()).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ssl);
    let err = connect(pg.url("127.0.0.1"), verify_full.clone())
        .await
        .expect_err("name");
    assert!(
        causes(&err).contains("not valid for name"),
        "{}",
        causes(&err)
    );
    assert!(
        connect(
            pg.url("127.0.0.1"),
            PgTls::new(Some("verify-ca"), Some(ca.ca_file()))
        )
        .await
        .is_ok()
    );
    let err = connect(
        db.clone(),
        PgTls::new(Some("verify-full"), Some(stranger.ca_file())),
    )
    .await
    .expect_err("untrusted");
    assert!(causes(&err).contains("UnknownIssuer"), "{}", causes(&err));

    // anvil behind a TLS-terminating proxy.
    let chain = TestChain::start().await;
    let anvil_addr = chain.rpc_url.trim_start_matches("http://").parse().unwrap();
    let proxy = TlsProxy::start(&ca.issue(&["127.0.0.1"], "rpc"), anvil_addr).await;
    let ca_file = ca.ca_file().display().to_string();

    let indexer = TestIndexer::try_start(
        &proxy.url(),
        &chain,
        &db,
        &[
            "--rpc-ca-file",
            &ca_file,
            "--db-sslmode",
            "verify-full",
            "--db-ca-file",
            &ca_file,
            "--poll-interval-ms",
            "50",
        ],
    )
    .await
    .unwrap();
    let custodian = chain.custodian().await;
    let gw = TestGateway::start_with(&chain, &db, |c| {
        custodian.configure(c);
        c.rpc_url = proxy.url();
        c.rpc_ca_file = Some(ca.ca_file().to_owned());
        c.db_tls = verify_full.clone();
    })
    .await;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&gw.pool)
        .await
        .unwrap();
    assert!(ssl, "the gateway's pool is on TLS");

    // A patient writes and reads a record: sign-in, consent, anchoring and the index all go
    // through the proxy and the TLS database.
    let patient = chain.wallet().await;
    gw.wait_indexed(chain.head().await).await;
    let token = gw.sign_in(&patient).await;
    let me = format!("{:#x}", patient.address());
    let created = gw
        .http
        .post(gw.url("/Observation"))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                   "subject": {"reference": format!("Patient/{me}")},
                   "valueQuantity": {"value": 61, "unit": "/min"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = gw
        .http
        .get(gw.url(&format!("/Observation/{id}")))
        .bearer_auth(&token)
        .header("x-purpose-of-use", "PATRQT")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["cache-control"], "no-store");
    let cursor: Option<i64> = sqlx::query_scalar("SELECT block_number FROM indexer_cursor")
        .fetch_optional(&pool)
        .await
        .unwrap();
    assert!(
        cursor.unwrap_or(0) > 0,
        "the indexer follows the chain through the proxy"
    );

    // Servers whose certificate does not match are refused: an RPC proxy whose certificate
    // names another host, a database checked against a CA that did not sign its certificate.
    let wrong = TlsProxy::start(&ca.issue(&["rpc.example"], "wrong"), anvil_addr).await;
    let mut config = GatewayConfig::with_defaults(
        db.clone(),
        wrong.url(),
        chain.manifest_path.clone(),
        alloy::hex::encode([5u8; 32]),
    );
    config.rpc_ca_file = Some(ca.ca_file().to_owned());
    config.db_tls = verify_full.clone();
    let misled = Gateway::start(config.clone()).await.unwrap();
    let err = misled
        .state()
        .chain()
        .membership(patient.address())
        .await
        .expect_err("the RPC's certificate names another host");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    config.rpc_url = proxy.url();
    config.db_tls = PgTls::new(Some("verify-full"), Some(stranger.ca_file()));
    let err = Gateway::start(config)
        .await
        .expect_err("an untrusted database");
    assert!(causes(&err).contains("UnknownIssuer"), "{}", causes(&err));
    let err = TestIndexer::try_start(
        &proxy.url(),
        &chain,
        &pg.url("127.0.0.1"),
        &[
            "--rpc-ca-file",
            &ca_file,
            "--db-sslmode",
            "verify-full",
            "--db-ca-file",
            &ca_file,
        ],
    )
    .await
    .expect_err("the database's certificate names localhost only");
    assert!(
        causes(&err).contains("not valid for name"),
        "{}",
        causes(&err)
    );

    drop(indexer);
    gw.stop().await;
    drop(misled);
    pool.close().await;
    drop(pg);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limits_answer_429_with_retry_after_and_recover() {
    let chain = TestChain::start().await;
    let db = fresh_database().await;
    let _indexer = TestIndexer::start(&chain, &db).await;
    let custodian = chain.custodian().await;
    let gw = TestGateway::start_with(&chain, &db, |c| {
        custodian.configure(c);
        c.user_limits.reads_per_minute = 60;
        c.user_limits.searches_per_minute = 600;
    })
    .await;
    gw.wait_indexed(chain.head().await).await;
    let (alice, bob) = (chain.wallet().await, chain.wallet().await);
    let (alice_token, bob_token) = (gw.sign_in(&alice).await, gw.sign_in(&bob).await);
    let me = format!("{:#x}", alice.address());
    let created: Value = gw
        .http
        .post(gw.url("/Observation"))
        .bearer_auth(&alice_token)
        .header("content-type", "application/fhir+json")
        .body(
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                   "subject": {"reference": format!("Patient/{me}")}})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let read = gw.url(&format!("/Observation/{}", created["id"].as_str().unwrap()));
    let get = |token: &str| {
        gw.http
            .get(&read)
            .bearer_auth(token)
            .header("x-purpose-of-use", "PATRQT")
            .send()
    };

    // A bucket of 60 reads refilling one per second: the burst passes, then 429.
    let started = Instant::now();
    let mut served = 0u64;
    let refused = loop {
        let response = get(&alice_token).await.unwrap();
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        served += 1;
        assert!(served < 300, "never throttled");
    };
    let refill = started.elapsed().as_secs() + 1;
    assert!(
        served >= 60 && served <= 60 + refill,
        "{served} reads in {refill} s"
    );
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let audit = gw.audit_row(refused.headers()).await;
    assert_eq!(audit.http_status, 429);
    let outcome: Value = refused.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "throttled");

    // Per user and per kind: Bob's read is decided (and refused for want of consent, as an
    // unknown id is), not throttled; Alice still searches.
    assert_eq!(get(&bob_token).await.unwrap().status(), 404);
    let search = gw
        .http
        .get(gw.url(&format!("/Observation?patient={me}")))
        .bearer_auth(&alice_token)
        .header("x-purpose-of-use", "PATRQT")
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 200);

    // After Retry-After, Alice reads again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(get(&alice_token).await.unwrap().status(), 200);
    gw.stop().await;
}
