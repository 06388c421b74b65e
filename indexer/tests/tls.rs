//! The indexer binary and TLS: it follows an anvil behind a TLS-terminating proxy (the proxy's
//! certificate from a CA made here, named by `--rpc-ca-file`), refuses a proxy whose CA it does
//! not trust, and never prints the RPC URL's credentials: not in its logs (while working, while
//! failing), its metrics, its errors, `--help`, or clap's message about an invalid URL.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use carechain_testkit::{Anvil, Deployment, TempDir, TestDb, free_port};
use carechain_tls::testing::{TestCa, TlsProxy};
use common::{IndexerProc, indexer_args, wait_synced};
use std::time::Duration;

const SECRETS: [&str; 4] = ["hunter2pass", "rpcuser", "0123456789secretkey", "apikey="];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_anvil_through_a_tls_proxy_and_never_prints_rpc_credentials() {
    let anvil = Anvil::start().await;
    let deployment = Deployment::deploy(&anvil.url).await;
    let db = TestDb::create().await;
    let pool = db.pool().await;
    let dir = TempDir::new("indexer-tls");
    let ca = TestCa::new(dir.path(), "rpc");
    let upstream = ([127, 0, 0, 1], anvil.port).into();
    let proxy = TlsProxy::start(&ca.issue(&["127.0.0.1"], "proxy"), upstream).await;
    let ca_file = ca.ca_file().display().to_string();
    let shown = format!("https://***@{}", proxy.addr());

    // A password and an API key in the query (anvil serves `/` whatever the query).
    let working = format!(
        "https://rpcuser:hunter2pass@{}/?apikey=0123456789secretkey",
        proxy.addr()
    );
    let metrics = free_port();
    let mut args = indexer_args(&working, &deployment, &db.url);
    args.extend([
        "--rpc-ca-file".into(),
        ca_file.clone(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics}"),
    ]);
    let proc = IndexerProc::spawn(&args);
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(60)).await;
    anvil.mine(3).await;
    wait_synced(&proc, &pool, &anvil, Duration::from_secs(30)).await;
    let exposition = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(exposition.contains("indexer"), "{exposition}");
    assert_no_secret("the metrics", &exposition);
    assert_no_secret("the log of a working indexer", &proc.log_text());
    proc.kill9().await;

    // An API key in the path that the node refuses (404): every retry is logged, without it.
    let refused = format!(
        "https://rpcuser:hunter2pass@{}/v3/0123456789secretkey?apikey=0123456789secretkey",
        proxy.addr()
    );
    let mut args = indexer_args(&refused, &deployment, &db.url);
    args.extend(["--rpc-ca-file".into(), ca_file.clone()]);
    let proc = IndexerProc::spawn(&args);
    proc.wait_log("RPC call failed", Duration::from_secs(30))
        .await;
    let log = proc.log_text();
    assert!(log.contains("HTTP error 404"), "{log}");
    assert_no_secret("the log of a refused indexer", &log);
    proc.kill9().await;

    // A proxy the indexer has no reason to trust (system roots only): refused, and logged.
    let proc = IndexerProc::spawn(&indexer_args(&working, &deployment, &db.url));
    proc.wait_log("RPC call failed", Duration::from_secs(30))
        .await;
    let log = proc.log_text();
    assert!(log.contains("certificate"), "{log}");
    assert!(log.contains(&shown), "{log}");
    assert_no_secret("the log of an untrusting indexer", &log);
    proc.kill9().await;

    // A manifest for another chain: the error that stops it names the RPC redacted.
    let other_chain = dir.path().join("other-chain.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&deployment.manifest_path).unwrap()).unwrap();
    manifest["chainId"] = 1.into();
    std::fs::write(&other_chain, manifest.to_string()).unwrap();
    let mut args = indexer_args(&working, &deployment, &db.url);
    args.extend(["--rpc-ca-file".into(), ca_file.clone()]);
    let at = args.iter().position(|a| a == "--manifest").unwrap() + 1;
    args[at] = other_chain.display().to_string();
    let mut proc = IndexerProc::spawn(&args);
    let status = proc.wait_exit(Duration::from_secs(60)).await;
    assert!(!status.success());
    let log = proc.log_text();
    assert!(log.contains("serves chain id 31337"), "{log}");
    assert!(log.contains(&shown), "{log}");
    assert_no_secret("the chain id mismatch", &log);

    // --help with the URL in the environment, and clap's error for an invalid URL.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_carechain-indexer"))
        .arg("--help")
        .env("CARECHAIN_RPC_URL", &working)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--rpc-url"), "{text}");
    assert_no_secret("--help", &text);
    let invalid = std::process::Command::new(env!("CARGO_BIN_EXE_carechain-indexer"))
        .args([
            "--rpc-url",
            "https://rpcuser:hunter2pass@[::1/?apikey=0123456789secretkey",
        ])
        .args([
            "--manifest",
            "m.json",
            "--database-url",
            "postgres://x@127.0.0.1/x",
        ])
        .env_remove("CARECHAIN_RPC_URL")
        .output()
        .unwrap();
    assert!(!invalid.status.success());
    let text = String::from_utf8_lossy(&invalid.stderr);
    assert!(text.contains("--rpc-url"), "{text}");
    assert_no_secret("clap's error", &text);
    drop(dir);
}
