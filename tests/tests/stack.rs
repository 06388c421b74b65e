//! The README's first command: a fresh run brings everything up with the demo data and says
//! so; Ctrl-C stops every service; a second run resumes the same chain and database and says
//! so, without loading the demo data twice.
#![allow(missing_docs)]

use carechain_e2e::{Stack, StackPlace};
use carechain_testkit::port_open;
use serde_json::Value;

async fn get_json(web: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = web.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_starts_fresh_stops_on_ctrl_c_and_resumes() {
    let place = StackPlace::new("lifecycle");
    let stack = Stack::start(&place, true);
    let out = stack.output();
    assert!(out.contains("(chain: fresh, database: fresh)"), "{out}");
    assert!(out.contains("demo data      loaded now"), "{out}");
    for port in place.ports() {
        assert!(port_open(port), "port {port} should be served:\n{out}");
    }
    // HTTPS with the stack's own CA: trusted through it, refused without it.
    let metadata = format!("{}/metadata", stack.gateway());
    assert!(metadata.starts_with("https://127.0.0.1:"), "{metadata}");
    let (status, capability) = get_json(&stack.https_client(), &metadata, None).await;
    assert_eq!(status, 200);
    assert_eq!(capability["resourceType"], "CapabilityStatement");
    let untrusting = reqwest::Client::new().get(&metadata).send().await;
    assert!(
        untrusting.is_err(),
        "a client without the stack's CA connected"
    );
    assert!(out.contains("curl --cacert"), "{out}");
    // The patient portal's address, and the demo patients' keys to import into a wallet.
    assert!(
        out.contains(&format!("{}/portal", stack.gateway())),
        "{out}"
    );
    assert!(out.contains(&stack.var("ALICE_KEY")), "{out}");
    assert!(
        stack.ca_file().starts_with(&place.dir),
        "{:?}",
        stack.ca_file()
    );
    // The demo cast is on chain: Hospital A's practitioner is a member, the patients are not.
    let alice = stack.var("ALICE_ADDRESS");
    assert!(alice.starts_with("0x") && alice.len() == 42, "{alice}");
    // Everything of this stack is in its own directory, the deployment manifest included.
    let manifest = stack.var("DEPLOY_MANIFEST");
    assert!(
        std::path::Path::new(&manifest).starts_with(&place.dir),
        "manifest {manifest} outside {:?}",
        place.dir
    );

    let (exit, out) = stack.interrupt();
    assert_eq!(exit.code(), Some(130), "{out}");
    assert!(out.contains("stopping the stack"), "{out}");
    assert!(out.contains("stopped gateway"), "{out}");
    assert!(out.contains("stopped indexer"), "{out}");
    assert!(out.contains("stopped PostgreSQL"), "{out}");
    for port in place.ports() {
        assert!(
            !port_open(port),
            "port {port} still served after Ctrl-C:\n{out}"
        );
    }

    let stack = Stack::start(&place, false);
    let out = stack.output();
    assert!(out.contains("(chain: resumed, database: resumed)"), "{out}");
    assert!(out.contains("demo data      loaded earlier"), "{out}");
    assert!(out.contains("contracts      already deployed"), "{out}");
    let (status, _) = get_json(
        &stack.https_client(),
        &format!("{}/metadata", stack.gateway()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // SIGTERM (a stack started in the background ignores SIGINT) stops it the same way.
    let (exit, out) = stack.terminate();
    assert_eq!(exit.code(), Some(143), "{out}");
    assert!(out.contains("stopped PostgreSQL"), "{out}");
    for port in place.ports() {
        assert!(!port_open(port), "port {port} still served after SIGTERM");
    }
    let _ = std::fs::remove_dir_all(&place.dir);
}
