//! The demo story, exactly as the stack's walkthrough tells it, through the CLI and HTTP only:
//! Alice grants Hospital B access to her Observations for treatment; Dr B reads them; Alice
//! revokes; Dr B is denied; compliance sees all of it in the audit log, and Alice sees who
//! accessed her data. Then: a gas-free consent through the gateway (also signed by ethers from
//! the `--sign-only` typed data, for wallet compatibility), a delegate acting for a
//! patient, and a break-glass access with its compliance review.
#![allow(missing_docs)]

use carechain_e2e::{Stack, StackPlace, stdout_json};
use serde_json::{Value, json};
use std::process::Output;

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

struct Persona<'a> {
    stack: &'a Stack,
    name: String,
    key: String,
    token_file: String,
    gateway: Option<String>,
}

impl<'a> Persona<'a> {
    fn new(stack: &'a Stack, name: &str) -> Self {
        Self {
            stack,
            name: name.to_owned(),
            key: stack.var(&format!("{name}_KEY")),
            token_file: stack
                .place
                .dir
                .join(format!("{}.token", name.to_lowercase()))
                .to_string_lossy()
                .into_owned(),
            gateway: None,
        }
    }

    /// The same person, using the gateway at `url` (their own organisation's).
    fn at(mut self, url: &str) -> Self {
        self.gateway = Some(url.to_owned());
        self
    }

    /// Runs the CLI as the demo's `act NAME ...` helper does.
    fn run(&self, args: &[&str]) -> Output {
        let invoked = format!("act {}", self.name);
        let mut env = vec![
            ("CARECHAIN_PRIVATE_KEY", self.key.as_str()),
            ("CARECHAIN_TOKEN_FILE", self.token_file.as_str()),
            ("CARECHAIN_INVOKED_AS", invoked.as_str()),
        ];
        if let Some(url) = &self.gateway {
            env.push(("CARECHAIN_GATEWAY_URL", url));
        }
        self.stack.cli(args, &env)
    }

    fn login(&self) {
        ok(&self.run(&["login"]), "carechain login");
    }

    fn token(&self) -> String {
        let text = std::fs::read_to_string(&self.token_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.token_file));
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        value["access_token"]
            .as_str()
            .or(value["token"].as_str())
            .or(value.as_str())
            .unwrap_or_else(|| panic!("no token in {text}"))
            .trim()
            .to_owned()
    }
}

async fn http(
    web: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    purpose: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = web.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(purpose) = purpose {
        request = request.header("X-Purpose-Of-Use", purpose);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(web: &reqwest::Client, url: &str, token: &str, purpose: Option<&str>) -> (u16, Value) {
    http(web, reqwest::Method::GET, url, Some(token), purpose, None).await
}

/// GET until the answer has `status`: the gateway decides at the block the indexer has
/// reached, so a consent change applies from the first request after the indexer has seen
/// its block (the stack's indexer polls every second).
async fn get_once_indexed(
    web: &reqwest::Client,
    url: &str,
    token: &str,
    purpose: Option<&str>,
    status: u16,
) -> Value {
    let mut last = (0, Value::Null);
    for _ in 0..50 {
        last = get(web, url, token, purpose).await;
        if last.0 == status {
            return last.1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{url} never answered {status}; last {}: {}", last.0, last.1);
}

/// Signs `typed_data` with ethers (crates/cli/tests/js/sign-typed-data.cjs, Node.js and the
/// `ethers` package from package-lock.json); returns `{signature, digest, address}`.
fn sign_with_ethers(typed_data: &Value, key: &str) -> Value {
    use std::io::Write;
    let script = carechain_testkit::repo_root().join("crates/cli/tests/js/sign-typed-data.cjs");
    let mut child = std::process::Command::new("node")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run node: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(
                json!({"typedData": typed_data, "privateKey": key})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap_or_else(|e| panic!("write to node: {e}"));
    }
    stdout_json(
        &child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("node: {e}")),
    )
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_story_through_the_cli_and_http() {
    let place = StackPlace::new("story");
    let stack = Stack::start(&place, true);
    let gateway = stack.gateway();
    let web = stack.https_client();
    let alice_address = stack.var("ALICE_ADDRESS").to_lowercase();
    let hospital_b = stack.var("HOSPITAL_B_ADDRESS");
    // Dr B and the compliance office use Hospital B's own gateway (the federation: B keeps
    // none of Alice's records; Hospital A and the lab do).
    let gateway_b = stack.var("GATEWAY_B_URL");
    let gateway_lab = stack.var("GATEWAY_LAB_URL");
    let alice = Persona::new(&stack, "ALICE");
    let dr_b = Persona::new(&stack, "DR_B").at(&gateway_b);
    let auditor = Persona::new(&stack, "AUDITOR").at(&gateway_b);
    let observations = format!("{gateway_b}/Observation?patient={alice_address}");

    // Before any consent, Hospital B may not read Alice's Observations.
    dr_b.login();
    let (status, denied) = get(&web, &observations, &dr_b.token(), Some("TREAT")).await;
    assert_eq!(status, 403, "{denied}");

    // 1. Alice grants Hospital B read access to her Observations for treatment, for 30 days.
    ok(
        &alice.run(&[
            "consent",
            "grant",
            "--grantee",
            &hospital_b,
            "--types",
            "Observation",
            "--purpose",
            "TREAT",
            "--for",
            "30d",
            "--yes",
        ]),
        "consent grant",
    );
    let listed = stdout_json(&alice.run(&["consent", "list", "--json"]));
    assert!(
        listed
            .to_string()
            .to_lowercase()
            .contains(&hospital_b.to_lowercase()),
        "{listed}"
    );

    // 2. Dr B finds them at Hospital B's gateway, from Hospital A (3) and the lab (2) in one
    //    search, each saying where it is kept (the CLI and plain HTTP agree).
    // Each custodian decides at the block its own indexer has reached, and the lab's results
    // are served once their batch is anchored: until then the Bundle names what is missing.
    get_once_indexed(&web, &observations, &dr_b.token(), Some("TREAT"), 200).await;
    let mut bundle = Value::Null;
    for _ in 0..100 {
        bundle = get(&web, &observations, &dr_b.token(), Some("TREAT"))
            .await
            .1;
        if entries(&bundle).len() == 5
            && entries(&bundle)
                .iter()
                .all(|e| e["search"]["mode"] == "match")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(entries(&bundle).len(), 5, "{bundle}");
    let from = |url: &str| {
        entries(&bundle)
            .iter()
            .filter(|e| e["resource"]["meta"]["source"] == url)
            .count()
    };
    assert_eq!((from(&gateway), from(&gateway_lab)), (3, 2), "{bundle}");
    let records = ok(
        &dr_b.run(&[
            "records",
            "--patient",
            &alice_address,
            "--type",
            "Observation",
            "--json",
        ]),
        "records",
    );
    let records: Value = serde_json::from_str(&records).unwrap_or(Value::Null);
    assert_eq!(entries(&records).len(), 5, "{records}");
    // Not for another purpose, and not her Conditions.
    let (status, _) = get(&web, &observations, &dr_b.token(), Some("HRESCH")).await;
    assert_eq!(status, 403);
    let (status, _) = get(
        &web,
        &format!("{gateway_b}/Condition?patient={alice_address}"),
        &dr_b.token(),
        Some("TREAT"),
    )
    .await;
    assert_eq!(status, 403);

    // 3. Alice revokes; 4. Dr B is denied at the next request.
    ok(
        &alice.run(&["consent", "revoke", "--grantee", &hospital_b, "--yes"]),
        "consent revoke",
    );
    let denied = get_once_indexed(&web, &observations, &dr_b.token(), Some("TREAT"), 403).await;
    assert_eq!(denied["resourceType"], "OperationOutcome");
    // The walkthrough's step 4 promises a 403 with an OperationOutcome: the CLI says both.
    let refused = dr_b.run(&[
        "records",
        "--patient",
        &alice_address,
        "--type",
        "Observation",
    ]);
    assert!(!refused.status.success(), "records after the revocation");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("403") && said.contains("OperationOutcome"),
        "{said}"
    );

    // The sign-in lasts as long as the gateway's token (15 minutes), not the CLI's guess,
    // and once it has run out the CLI names the command the user typed to sign in again.
    let token_path = std::path::Path::new(&dr_b.token_file);
    let mut stored: Value =
        serde_json::from_str(&std::fs::read_to_string(token_path).unwrap_or_default())
            .unwrap_or(Value::Null);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires_at = stored["expires_at"].as_u64().unwrap_or(0);
    assert!(expires_at > now + 600, "token lasts 15 minutes: {stored}");
    stored["expires_at"] = json!(now - 1);
    std::fs::write(token_path, stored.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let expired = dr_b.run(&["records", "--patient", &alice_address]);
    assert!(!expired.status.success());
    let said = String::from_utf8_lossy(&expired.stderr);
    assert!(said.contains("run `act DR_B login` again"), "{said}");
    dr_b.login();

    // 5. Compliance sees all of it in the audit log: Dr B's allowed and denied reads.
    auditor.login();
    let (status, audit) = get(
        &web,
        &format!("{gateway_b}/AuditEvent?patient={alice_address}&_count=100"),
        &auditor.token(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let text = audit.to_string().to_lowercase();
    let dr_b_address = stack.var("DR_B_ADDRESS").to_lowercase();
    assert!(
        text.contains(&dr_b_address),
        "Dr B's reads are audited: {audit}"
    );
    let outcomes: Vec<String> = entries(&audit)
        .iter()
        .filter(|e| e.to_string().to_lowercase().contains(&dr_b_address))
        .filter_map(|e| e["resource"]["outcome"].as_str().map(str::to_owned))
        .collect();
    assert!(
        outcomes.iter().any(|o| o == "0"),
        "an allowed read: {outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| o != "0"),
        "a denied read: {outcomes:?}"
    );

    // 6. The research institute exports, de-identified, the records of the patients who agreed
    //    to research (Alice, Bob and Erin; not Carol), decided on chain at one block.
    let researcher = Persona::new(&stack, "RESEARCHER");
    researcher.login();
    let export_dir = place.dir.join("demo-export");
    let export_path = export_dir.to_string_lossy().into_owned();
    ok(
        &researcher.run(&[
            "research",
            "export",
            "--study",
            "demo-study",
            "--out",
            &export_path,
        ]),
        "research export",
    );
    let read = |name: &str| std::fs::read_to_string(export_dir.join(name)).unwrap_or_default();
    let manifest: Value = serde_json::from_str(&read("manifest.json")).unwrap_or(Value::Null);
    assert!(
        manifest["output"].as_array().is_some_and(|o| !o.is_empty()),
        "{manifest}"
    );
    let patients = read("Patient.ndjson");
    assert_eq!(
        patients.lines().count(),
        3,
        "Alice, Bob and Erin: {patients}"
    );
    let mut exported = String::new();
    for entry in std::fs::read_dir(&export_dir).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.extension().is_some_and(|x| x == "ndjson") {
            exported.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    for who in ["ALICE", "BOB", "CAROL", "ERIN"] {
        let wallet = stack.var(&format!("{who}_ADDRESS")).to_lowercase();
        assert!(
            !exported.to_lowercase().contains(&wallet[2..]),
            "{who}'s wallet in the export"
        );
    }
    assert!(!exported.contains("Liddell"), "a name in the export");

    // Compliance verifies the audit log against its anchors, and proves Dr B's denied read
    // is in an anchored batch (the stack anchors every 10 s).
    let verified = ok(&auditor.run(&["audit", "verify"]), "audit verify");
    assert!(verified.contains("audit log intact"), "{verified}");
    let denied_event = entries(&audit)
        .into_iter()
        .find(|e| {
            e.to_string().to_lowercase().contains(&dr_b_address)
                && e["resource"]["outcome"].as_str() != Some("0")
        })
        .and_then(|e| e["resource"]["id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("Dr B's denied read has an id: {audit}"));
    let mut proof = None;
    for _ in 0..60 {
        let out = auditor.run(&["audit", "proof", &denied_event]);
        if out.status.success() {
            proof = Some(String::from_utf8_lossy(&out.stdout).into_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let proof = proof.unwrap_or_else(|| panic!("AuditEvent {denied_event} was never anchored"));
    assert!(proof.contains("txHash"), "{proof}");
    assert!(proof.contains("verifiedOnChain  true"), "{proof}");

    // ... and Alice sees who accessed her data.
    alice.login();
    let log = ok(&alice.run(&["access-log", "--json"]), "access-log");
    assert!(log.to_lowercase().contains(&dr_b_address), "{log}");

    let _ = stack.interrupt();
    let _ = std::fs::remove_dir_all(&place.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gas_free_consent_a_delegate_and_break_glass_with_review() {
    let place = StackPlace::new("more");
    let stack = Stack::start(&place, true);
    let gateway = stack.gateway();
    let web = stack.https_client();
    let hospital_b = stack.var("HOSPITAL_B_ADDRESS");
    let bob_address = stack.var("BOB_ADDRESS").to_lowercase();
    let alice_address = stack.var("ALICE_ADDRESS").to_lowercase();
    let carol_address = stack.var("CAROL_ADDRESS").to_lowercase();
    let bob = Persona::new(&stack, "BOB");
    let dave = Persona::new(&stack, "DAVE");
    let dr_b = Persona::new(&stack, "DR_B");
    let auditor = Persona::new(&stack, "AUDITOR");
    dr_b.login();

    // Gas-free: Bob signs with --sign-only and the gateway submits it with its own key.
    let signed = stdout_json(&bob.run(&[
        "consent",
        "grant",
        "--grantee",
        &hospital_b,
        "--types",
        "Observation",
        "--purpose",
        "TREAT",
        "--for",
        "7d",
        "--sign-only",
        "--yes",
    ]));
    let signed_file = place.dir.join("bob-grant.json");
    std::fs::write(&signed_file, signed.to_string()).unwrap_or_else(|e| panic!("write: {e}"));
    let submitted = ok(
        &stack.cli(
            &[
                "consent",
                "submit",
                "--via-gateway",
                "--file",
                &signed_file.to_string_lossy(),
            ],
            &[],
        ),
        "consent submit --via-gateway",
    );
    assert!(submitted.contains("transaction 0x"), "{submitted}");
    get_once_indexed(
        &web,
        &format!("{gateway}/Observation?patient={bob_address}"),
        &dr_b.token(),
        Some("TREAT"),
        200,
    )
    .await;
    // The same signature again is refused before any gas is spent.
    let (status, again) = http(
        &web,
        reqwest::Method::POST,
        &format!("{gateway}/relay/consent"),
        None,
        None,
        Some(&signed),
    )
    .await;
    assert_eq!(status, 409, "{again}");

    // Wallet compatibility: the typed data of --sign-only, signed by another implementation
    // (ethers, as a browser wallet's eth_signTypedData_v4 would), gives the same digest and
    // signature, and that signature goes through the gateway like the CLI's own.
    let signed = stdout_json(&bob.run(&[
        "consent",
        "grant",
        "--grantee",
        &hospital_b,
        "--types",
        "Observation,Condition",
        "--purpose",
        "TREAT",
        "--for",
        "7d",
        "--sign-only",
        "--yes",
    ]));
    let by_ethers = sign_with_ethers(&signed["typedData"], &stack.var("BOB_KEY"));
    assert_eq!(
        by_ethers["digest"], signed["digest"],
        "{by_ethers} vs {signed}"
    );
    assert_eq!(
        by_ethers["signature"].as_str().map(str::to_lowercase),
        signed["signature"].as_str().map(str::to_lowercase),
        "deterministic ECDSA: both implementations sign alike"
    );
    let (status, submitted) = http(
        &web,
        reqwest::Method::POST,
        &format!("{gateway}/relay/consent"),
        None,
        None,
        Some(&json!({"typedData": signed["typedData"], "signature": by_ethers["signature"]})),
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    get_once_indexed(
        &web,
        &format!("{gateway}/Condition?patient={bob_address}"),
        &dr_b.token(),
        Some("TREAT"),
        200,
    )
    .await;

    // A delegate acting for a patient: Dave grants Hospital B Alice's Conditions.
    ok(
        &dave.run(&[
            "consent",
            "grant",
            "--patient",
            &alice_address,
            "--grantee",
            &hospital_b,
            "--types",
            "Condition",
            "--purpose",
            "TREAT",
            "--for",
            "1d",
            "--yes",
        ]),
        "consent grant by a delegate",
    );
    let bundle = get_once_indexed(
        &web,
        &format!("{gateway}/Condition?patient={alice_address}"),
        &dr_b.token(),
        Some("TREAT"),
        200,
    )
    .await;
    assert_eq!(entries(&bundle).len(), 1, "{bundle}");

    // Break-glass: Dr B, without consent, opens an emergency session for Carol and reads for
    // ETREAT; compliance finds it in the review queue and reviews it; Carol sees it.
    let carol_obs = format!("{gateway}/Observation?patient={carol_address}");
    let (status, _) = get(&web, &carol_obs, &dr_b.token(), Some("ETREAT")).await;
    assert_eq!(status, 403, "no break-glass session yet");
    ok(
        &dr_b.run(&[
            "break-glass",
            "open",
            "--patient",
            &carol_address,
            "--reason",
            "life-threatening",
            "--for",
            "1h",
            "--yes",
        ]),
        "break-glass open",
    );
    get_once_indexed(&web, &carol_obs, &dr_b.token(), Some("ETREAT"), 200).await;
    let (status, _) = get(&web, &carol_obs, &dr_b.token(), Some("TREAT")).await;
    assert_eq!(status, 403, "break-glass counts only for ETREAT");

    auditor.login();
    let token = auditor.token();
    let queue_url = format!("{gateway}/AuditEvent/$break-glass-queue");
    let (status, queue) = get(&web, &queue_url, &token, None).await;
    assert_eq!(status, 200, "{queue}");
    let session = entries(&queue)
        .into_iter()
        .map(|e| e["resource"].clone())
        .find(|r| r.to_string().to_lowercase().contains(&carol_address))
        .unwrap_or_else(|| panic!("Carol's session is in the review queue: {queue}"));
    let id = session["parameter"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "session"))
        .and_then(|p| p["valueString"].as_str())
        .unwrap_or_else(|| panic!("a session number: {session}"))
        .to_owned();
    // Dr B is no compliance member: the queue is not theirs to see.
    let (status, _) = get(&web, &queue_url, &dr_b.token(), None).await;
    assert_eq!(status, 403);
    let (status, reviewed) = http(
        &web,
        reqwest::Method::POST,
        &format!("{gateway}/AuditEvent/$break-glass-review"),
        Some(&token),
        None,
        Some(&json!({
            "resourceType": "Parameters",
            "parameter": [
                {"name": "session", "valueString": id},
                {"name": "outcome", "valueCode": "justified"}
            ]
        })),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {reviewed}");
    let (status, queue) = get(&web, &queue_url, &token, None).await;
    assert_eq!(status, 200);
    assert!(
        !queue.to_string().to_lowercase().contains(&carol_address),
        "reviewed sessions leave the queue: {queue}"
    );
    let carol = Persona::new(&stack, "CAROL");
    carol.login();
    let log = ok(&carol.run(&["access-log", "--json"]), "access-log");
    assert!(
        log.to_lowercase()
            .contains(&stack.var("DR_B_ADDRESS").to_lowercase()),
        "{log}"
    );

    let _ = stack.interrupt();
    let _ = std::fs::remove_dir_all(&place.dir);
}
