//! The gateway side: `login` (EIP-4361 sign-in to a bearer token), `records` (the patient's
//! own FHIR records) and `access-log` (FHIR AuditEvent search: who accessed my data).

use crate::{keys::KeyArgs, time};
use alloy::{
    primitives::Address,
    signers::{SignerSync, local::PrivateKeySigner},
};
use eyre::{WrapErr, bail, eyre};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Where the gateway is and where its token is kept.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GatewayArgs {
    /// Base URL of the carechain FHIR gateway.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) gateway: String,
    /// Where `login` keeps the bearer token (created 0600) [default:
    /// $XDG_CONFIG_HOME/carechain/token.json, else ~/.config/carechain/token.json].
    #[arg(long, env = "CARECHAIN_TOKEN_FILE", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) the gateway's HTTPS certificate must chain to, instead of the
    /// system's root certificates (a local stack's: .stack/tls/ca.pem).
    #[arg(long, env = "CARECHAIN_CA_FILE", value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
}

impl GatewayArgs {
    pub(crate) fn base(&self) -> String {
        self.gateway.trim_end_matches('/').to_owned()
    }

    fn token_path(&self) -> eyre::Result<PathBuf> {
        if let Some(path) = &self.token_file {
            return Ok(path.clone());
        }
        Ok(crate::config_dir()
            .ok_or_else(|| {
                eyre!("cannot tell where to keep the token (no HOME): pass --token-file")
            })?
            .join("token.json"))
    }
}

/// The stored sign-in.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredToken {
    pub(crate) gateway: String,
    address: Address,
    role: String,
    pub(crate) access_token: String,
    expires_at: u64,
    /// The command that signed in, as the user typed it, to name when the sign-in runs out.
    #[serde(default = "default_login_command")]
    pub(crate) login_command: String,
}

fn default_login_command() -> String {
    "carechain login".to_owned()
}

/// How the user signs in again, in the words they used: `act DR_B login` when the demo's
/// `act` helper ran the CLI (it sets `CARECHAIN_INVOKED_AS`), else this `carechain login`
/// command line.
fn login_command() -> String {
    if let Some(prefix) = std::env::var("CARECHAIN_INVOKED_AS")
        .ok()
        .filter(|p| !p.trim().is_empty())
    {
        return format!("{} login", prefix.trim());
    }
    let mut words = vec!["carechain".to_owned()];
    words.extend(std::env::args().skip(1).map(|arg| {
        if !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
        {
            arg
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    }));
    words.join(" ")
}

/// How to sign in before there is a token: `act NAME login` under the demo's helper.
fn first_login_command(args: &GatewayArgs) -> String {
    match std::env::var("CARECHAIN_INVOKED_AS") {
        Ok(prefix) if !prefix.trim().is_empty() => format!("{} login", prefix.trim()),
        _ => format!("carechain login --gateway {}", args.base()),
    }
}

/// The HTTP client for the gateway: HTTPS checked against `--ca-file` or the system's roots.
pub(crate) fn client(args: &GatewayArgs) -> eyre::Result<reqwest::Client> {
    let trust = carechain_tls::Trust::from_ca_file(args.ca_file.as_deref());
    carechain_tls::http::client_builder(&trust)?
        .timeout(Duration::from_secs(30))
        .build()
        .wrap_err("cannot build the HTTP client")
}

/// The text of a FHIR OperationOutcome (or the body as it is).
pub(crate) fn outcome_text(body: &Value) -> String {
    let issues: Vec<String> = body
        .get("issue")
        .and_then(Value::as_array)
        .map(|issues| {
            issues
                .iter()
                .filter_map(|i| {
                    i.get("diagnostics")
                        .or_else(|| i.pointer("/details/text"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    if issues.is_empty() {
        body.to_string()
    } else {
        issues.join("; ")
    }
}

/// The answer's JSON when it succeeded; otherwise an error that gives the status, the
/// OperationOutcome's text and what to do. `relogin` is the command that signs in again.
pub(crate) async fn json_response(
    response: reqwest::Response,
    what: &str,
    relogin: &str,
) -> eyre::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let text = outcome_text(&body);
    match status.as_u16() {
        401 => {
            bail!("{what}: the gateway did not accept the sign-in ({text}): run `{relogin}` again")
        }
        403 => bail!("{what}: refused by the gateway (403 Forbidden, OperationOutcome: {text})"),
        503 => bail!("{what}: the gateway is not ready ({text}): try again shortly"),
        _ => bail!("{what}: the gateway answered {status}: {text}"),
    }
}

/// `consent submit --via-gateway`: the gateway checks the signed grant or revocation and
/// submits it with its own key (gas-free consent); prints the transaction.
pub(crate) async fn relay(args: &GatewayArgs, signed: &Value) -> eyre::Result<()> {
    if signed.get("signature").is_none() {
        bail!(
            "the file has no `signature`: sign `typedData` with eth_signTypedData_v4 and add it as \"signature\""
        );
    }
    let url = format!("{}/relay/consent", args.base());
    let response = client(args)?
        .post(&url)
        .json(signed)
        .send()
        .await
        .wrap_err_with(|| format!("cannot reach the gateway at {}", args.base()))?;
    let answer = json_response(
        response,
        "submitting through the gateway",
        &first_login_command(args),
    )
    .await?;
    println!(
        "{} submitted by the gateway: transaction {} (block {})",
        answer["kind"].as_str().unwrap_or("consent"),
        answer["transactionHash"].as_str().unwrap_or("?"),
        answer["blockNumber"]
    );
    Ok(())
}

/// The `parameter` list of a FHIR Parameters resource as (name, value) text pairs.
fn parameters(body: &Value) -> Vec<(String, String)> {
    body.get("parameter")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    let name = p.get("name")?.as_str()?.to_owned();
                    let value = ["valueString", "valueCode", "valueBoolean"]
                        .iter()
                        .find_map(|k| p.get(*k))
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))?;
                    Some((name, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `audit verify` (compliance): the gateway recomputes the audit log's hash chain and checks
/// every anchored root against the chain; prints the report and fails when a row is tampered
/// with or missing.
pub(crate) async fn audit_verify(args: &GatewayArgs, json_out: bool) -> eyre::Result<()> {
    let token = load_token(args)?;
    let response = client(args)?
        .get(format!("{}/AuditEvent/$verify", token.gateway))
        .bearer_auth(&token.access_token)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .wrap_err("cannot reach the gateway")?;
    let report = json_response(response, "verifying the audit log", &token.login_command).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let params = parameters(&report);
    let get = |n: &str| {
        params
            .iter()
            .find(|(k, _)| k == n)
            .map_or("?", |(_, v)| v.as_str())
    };
    if get("result") == "true" {
        if !json_out {
            println!(
                "audit log intact: {} rows (last seq {}), anchored up to seq {} in {} batches checked on chain",
                get("rows"),
                get("lastSeq"),
                get("anchoredTo"),
                get("batchesChecked")
            );
        }
        Ok(())
    } else {
        bail!(
            "audit log NOT intact: first bad row seq {} ({}){}",
            get("firstBadSeq"),
            get("problem"),
            params
                .iter()
                .find(|(k, _)| k == "batchId")
                .map(|(_, b)| format!(", in anchored batch {b}"))
                .unwrap_or_default()
        )
    }
}

/// `audit proof` (compliance): an AuditEvent's inclusion proof and anchoring transaction.
pub(crate) async fn audit_proof(args: &GatewayArgs, id: &str, json_out: bool) -> eyre::Result<()> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        bail!(
            "`{id}` is not an AuditEvent id (the `id` of an entry of `carechain access-log --json`)"
        );
    }
    let token = load_token(args)?;
    let response = client(args)?
        .get(format!("{}/AuditEvent/{id}/$proof", token.gateway))
        .bearer_auth(&token.access_token)
        .send()
        .await
        .wrap_err("cannot reach the gateway")?;
    let proof = json_response(
        response,
        "fetching the inclusion proof",
        &token.login_command,
    )
    .await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&proof)?);
        return Ok(());
    }
    for (name, value) in parameters(&proof) {
        println!("  {name:<16} {value}");
    }
    Ok(())
}

/// What a sign-in says besides its fields: the statement and the resources (with a
/// federation, the gateway offers an ERC-5573 capability to ask the other members for the user).
struct Offer<'a> {
    statement: &'a str,
    resources: &'a [String],
}

/// The EIP-4361 message, in the exact layout the specification gives.
fn siwe_message(
    domain: &str,
    address: Address,
    uri: &str,
    chain_id: u64,
    nonce: &str,
    (issued_at, expiration): (&str, &str),
    offer: &Offer<'_>,
) -> String {
    let mut text = format!(
        "{domain} wants you to sign in with your Ethereum account:\n{}\n\n{}\n\n\
         URI: {uri}\nVersion: 1\nChain ID: {chain_id}\nNonce: {nonce}\nIssued At: {issued_at}\n\
         Expiration Time: {expiration}",
        address.to_checksum(None),
        offer.statement,
    );
    if !offer.resources.is_empty() {
        text.push_str("\nResources:");
        for uri in offer.resources {
            text.push_str(&format!("\n- {uri}"));
        }
    }
    text
}

fn authority(url: &str) -> eyre::Result<String> {
    let parsed: reqwest::Url = url
        .parse()
        .wrap_err_with(|| format!("`{url}` is not a URL (pass --gateway http://host:port)"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| eyre!("`{url}` has no host"))?;
    Ok(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

fn write_private(path: &Path, text: &str) -> eyre::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .wrap_err_with(|| format!("cannot create {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode on open: restrict it as well.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .wrap_err_with(|| format!("cannot restrict {}", path.display()))?;
    }
    file.write_all(text.as_bytes())
        .wrap_err_with(|| format!("cannot write {}", path.display()))
}

/// `login`.
pub(crate) async fn login(args: &GatewayArgs, key: &KeyArgs) -> eyre::Result<()> {
    let signer: PrivateKeySigner = key.signer()?;
    let base = args.base();
    let http = client(args)?;
    let nonce = json_response(
        http.post(format!("{base}/auth/nonce"))
            .send()
            .await
            .wrap_err_with(|| {
                format!(
                    "cannot reach the gateway at {base} (pass --gateway or CARECHAIN_GATEWAY_URL)"
                )
            })?,
        "asking for a sign-in nonce",
        &first_login_command(args),
    )
    .await?;
    let field = |name: &str| {
        nonce
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| eyre!("the gateway's nonce answer has no `{name}`"))
    };
    let (nonce_text, domain, uri) = (field("nonce")?, field("domain")?, field("uri")?);
    let chain_id = nonce
        .get("chainId")
        .and_then(Value::as_u64)
        .ok_or_else(|| eyre!("the gateway's nonce answer has no chainId"))?;
    // A gateway may only ask for a sign-in to itself (EIP-4361's phishing protection).
    let ours = authority(&base)?;
    if domain != ours {
        bail!(
            "the gateway at {base} asks to sign in for `{domain}`, not `{ours}`: refusing (use the gateway's own URL)"
        );
    }
    // The message expires when the gateway's token would: the token is never cut shorter.
    let lifetime = nonce
        .get("expiresIn")
        .and_then(Value::as_u64)
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| eyre!("the gateway's nonce answer has no expiresIn (token lifetime)"))?;
    let statement = nonce
        .get("statement")
        .and_then(Value::as_str)
        .unwrap_or("Sign in to carechain")
        .replace('\n', " ");
    let resources: Vec<String> = nonce
        .get("resources")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .filter(|r| !r.is_empty() && !r.contains(char::is_whitespace))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let now = time::now();
    let message = siwe_message(
        &domain,
        signer.address(),
        &uri,
        chain_id,
        &nonce_text,
        (&time::rfc3339(now), &time::rfc3339(now + lifetime)),
        &Offer {
            statement: &statement,
            resources: &resources,
        },
    );
    eprintln!(
        "Signing in to {uri} as {} (EIP-4361):\n{message}\n",
        signer.address()
    );
    let signature = signer
        .sign_message_sync(message.as_bytes())
        .wrap_err("cannot sign the sign-in message")?;
    let answer = json_response(
        http.post(format!("{base}/auth/login"))
            .json(&json!({
                "message": message,
                "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
            }))
            .send()
            .await
            .wrap_err_with(|| format!("cannot reach the gateway at {base}"))?,
        "signing in",
        &first_login_command(args),
    )
    .await?;
    let access_token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| eyre!("the gateway's sign-in answer has no access_token"))?;
    let expires_in = answer
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let role = answer
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let stored = StoredToken {
        gateway: base.clone(),
        address: signer.address(),
        role: role.clone(),
        access_token: access_token.to_owned(),
        expires_at: time::now() + expires_in,
        login_command: login_command(),
    };
    let path = args.token_path()?;
    write_private(&path, &serde_json::to_string_pretty(&stored)?)?;
    println!(
        "signed in to {base} as {} ({role}) until {}; token kept in {}",
        signer.address(),
        time::show(stored.expires_at),
        path.display()
    );
    Ok(())
}

pub(crate) fn load_token(args: &GatewayArgs) -> eyre::Result<StoredToken> {
    let path = args.token_path()?;
    let text = std::fs::read_to_string(&path).map_err(|_| {
        eyre!(
            "not signed in (no token at {}): run `{}` first",
            path.display(),
            first_login_command(args)
        )
    })?;
    let token: StoredToken = serde_json::from_str(&text).map_err(|_| {
        eyre!(
            "{} is not a carechain token file: run `{}`",
            path.display(),
            first_login_command(args)
        )
    })?;
    if token.gateway != args.base() {
        bail!(
            "the stored sign-in is for {}, not {}: run `{}`",
            token.gateway,
            args.base(),
            first_login_command(args)
        );
    }
    if token.expires_at <= time::now() {
        bail!(
            "the sign-in expired at {}: run `{}` again",
            time::show(token.expires_at),
            token.login_command
        );
    }
    Ok(token)
}

/// GETs a search and every next page; returns the entries' resources.
async fn search_all(
    http: &reqwest::Client,
    token: &StoredToken,
    first_url: String,
    purpose: &str,
    what: &str,
) -> eyre::Result<Vec<Value>> {
    let mut resources = Vec::new();
    let mut next = Some(first_url);
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > 1_000 {
            bail!("{what}: more than 1000 pages; narrow the search");
        }
        let bundle = json_response(
            http.get(&url)
                .bearer_auth(&token.access_token)
                .header("Accept", "application/fhir+json")
                .header("X-Purpose-Of-Use", purpose)
                .send()
                .await
                .wrap_err_with(|| format!("cannot reach the gateway at {}", token.gateway))?,
            what,
            &token.login_command,
        )
        .await?;
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            bail!("{what}: the gateway did not answer with a FHIR Bundle");
        }
        for entry in bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // A custodian the gateway could not ask (or whose records it left out) is said on
            // stderr, not listed as a record.
            if entry.pointer("/search/mode").and_then(Value::as_str) == Some("outcome") {
                if let Some(text) = entry
                    .pointer("/resource/issue/0/diagnostics")
                    .and_then(Value::as_str)
                {
                    eprintln!("note: {text}");
                }
                continue;
            }
            if let Some(resource) = entry.get("resource") {
                resources.push(resource.clone());
            }
        }
        next = bundle
            .get("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
            .and_then(|l| l.get("url"))
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    Ok(resources)
}

fn searchset(resources: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": resources.len(),
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
    })
}

fn first_str<'a>(resource: &'a Value, pointers: &[&str]) -> Option<&'a str> {
    pointers
        .iter()
        .find_map(|p| resource.pointer(p).and_then(Value::as_str))
}

/// One line for a clinical resource: type/id, date, what, status.
fn record_line(resource: &Value) -> String {
    let kind = first_str(resource, &["/resourceType"]).unwrap_or("?");
    let id = first_str(resource, &["/id"]).unwrap_or("?");
    let date = first_str(
        resource,
        &[
            "/effectiveDateTime",
            "/effectivePeriod/start",
            "/onsetDateTime",
            "/recordedDate",
            "/authoredOn",
            "/occurrenceDateTime",
            "/performedDateTime",
            "/period/start",
            "/issued",
            "/date",
            "/meta/lastUpdated",
        ],
    )
    .unwrap_or("");
    let what = first_str(
        resource,
        &[
            "/code/text",
            "/code/coding/0/display",
            "/medicationCodeableConcept/text",
            "/medicationCodeableConcept/coding/0/display",
            "/vaccineCode/text",
            "/vaccineCode/coding/0/display",
            "/type/0/text",
            "/type/0/coding/0/display",
            "/type/text",
            "/description",
            "/title",
            "/code/coding/0/code",
        ],
    )
    .unwrap_or("");
    let value = match resource.get("valueQuantity") {
        Some(q) => format!(
            " = {} {}",
            q.get("value").map(Value::to_string).unwrap_or_default(),
            first_str(q, &["/unit", "/code"]).unwrap_or("")
        ),
        None => first_str(resource, &["/valueString", "/valueCodeableConcept/text"])
            .map(|v| format!(" = {v}"))
            .unwrap_or_default(),
    };
    let status = first_str(resource, &["/status", "/clinicalStatus/coding/0/code"]).unwrap_or("");
    format!("{kind}/{id}  {date}  {what}{value}  {status}")
        .trim_end()
        .to_owned()
}

/// The resource types `records` searches by default: every clinical type of the code table.
pub(crate) const DEFAULT_RECORD_TYPES: &str = "Observation,Condition,MedicationRequest,AllergyIntolerance,Procedure,Immunization,Encounter,DiagnosticReport,DocumentReference,CarePlan,MedicationStatement";

/// `records`.
pub(crate) async fn records(
    args: &GatewayArgs,
    patient: Option<Address>,
    types: &str,
    purpose: Option<carechain_contracts::Purpose>,
    json_out: bool,
) -> eyre::Result<()> {
    let token = load_token(args)?;
    let patient = patient.unwrap_or(token.address);
    // A patient or delegate reads at the patient's request; a member key, for treatment.
    let purpose = purpose.map_or_else(
        || {
            if token.role.eq_ignore_ascii_case("member") {
                "TREAT".to_owned()
            } else {
                "PATRQT".to_owned()
            }
        },
        |p| p.code().to_owned(),
    );
    let http = client(args)?;
    let mut all = Vec::new();
    for kind in types.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind: carechain_contracts::ResourceType = kind.parse()?;
        let url = format!(
            "{}/{}?patient={patient:#x}&_count=50&_sort=-date",
            token.gateway,
            kind.code()
        );
        let found = search_all(&http, &token, url, &purpose, &format!("searching {kind}")).await?;
        all.extend(found);
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&searchset(all))?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no records of patient {patient} at {}", token.gateway);
        return Ok(());
    }
    println!("{} records of patient {patient}:", all.len());
    for resource in &all {
        println!("  {}", record_line(resource));
    }
    Ok(())
}

/// One line for an AuditEvent: when, who (and their organisation), did what, why, outcome.
fn audit_line(event: &Value) -> String {
    let when = first_str(event, &["/recorded", "/period/start"]).unwrap_or("?");
    let agent = event
        .pointer("/agent")
        .and_then(Value::as_array)
        .and_then(|agents| {
            agents
                .iter()
                .find(|a| a.get("requestor").and_then(Value::as_bool) == Some(true))
                .or_else(|| agents.first())
        });
    let who = agent
        .and_then(|a| {
            first_str(
                a,
                &[
                    "/who/identifier/value",
                    "/who/display",
                    "/who/reference",
                    "/name",
                ],
            )
        })
        .unwrap_or("unknown");
    let org = agent
        .and_then(|a| first_str(a, &["/who/extension/0/valueReference/reference"]))
        .or_else(|| {
            event
                .pointer("/agent")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find_map(|a| {
                    let reference = first_str(a, &["/who/reference", "/who/identifier/value"])?;
                    reference.starts_with("Organization/").then_some(reference)
                })
        });
    let action = match first_str(event, &["/action"]) {
        Some("C") => "create",
        Some("R") => "read",
        Some("U") => "update",
        Some("D") => "delete",
        Some("E") => "execute",
        Some(other) => other,
        None => "?",
    };
    let subtype = first_str(event, &["/subtype/0/display", "/subtype/0/code"]).unwrap_or("");
    let purpose = first_str(
        event,
        &[
            "/purposeOfEvent/0/coding/0/code",
            "/agent/0/purposeOfUse/0/coding/0/code",
        ],
    )
    .unwrap_or("");
    let outcome = match first_str(event, &["/outcome"]) {
        Some("0") => "allowed",
        Some("4") | Some("8") | Some("12") => "DENIED/FAILED",
        Some(other) => other,
        None => "",
    };
    let what = event
        .pointer("/entity")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| first_str(e, &["/what/reference", "/what/identifier/value"]))
        .filter(|r| !r.starts_with("Patient/"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut line = format!("{when}  {who}");
    if let Some(org) = org {
        line.push_str(&format!(" ({org})"));
    }
    line.push_str(&format!("  {action}"));
    if !subtype.is_empty() {
        line.push_str(&format!(" [{subtype}]"));
    }
    if !what.is_empty() {
        line.push_str(&format!(" {what}"));
    }
    if !purpose.is_empty() {
        line.push_str(&format!("  for {purpose}"));
    }
    if !outcome.is_empty() {
        line.push_str(&format!("  {outcome}"));
    }
    line
}

/// `access-log`: `GET [base]/AuditEvent?patient=..` (a FHIR searchset Bundle of AuditEvents).
pub(crate) async fn access_log(
    args: &GatewayArgs,
    patient: Option<Address>,
    since: Option<&str>,
    json_out: bool,
) -> eyre::Result<()> {
    let token = load_token(args)?;
    let patient = patient.unwrap_or(token.address);
    let mut url = format!(
        "{}/AuditEvent?patient={patient:#x}&_count=100",
        token.gateway
    );
    if let Some(since) = since {
        let seconds = time::parse_date(since)?;
        url.push_str(&format!("&date=ge{}", time::rfc3339(seconds)));
    }
    let http = client(args)?;
    let events = search_all(&http, &token, url, "PATRQT", "searching the access log")
        .await
        .map_err(|e| {
            if e.to_string().contains("not supported") {
                e.wrap_err(
                    "this gateway does not serve the FHIR AuditEvent search (GET [base]/AuditEvent?patient=..) yet: ask its operator to upgrade it",
                )
            } else {
                e
            }
        })?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&searchset(events))?);
        return Ok(());
    }
    if events.is_empty() {
        println!("no recorded access to the data of patient {patient}");
        return Ok(());
    }
    println!(
        "{} accesses to the data of patient {patient}:",
        events.len()
    );
    for event in &events {
        println!("  {}", audit_line(event));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    #[test]
    fn the_sign_in_message_follows_eip_4361() {
        let text = siwe_message(
            "127.0.0.1:8080",
            address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
            "http://127.0.0.1:8080",
            31337,
            "abc123",
            ("2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"),
            &Offer {
                statement: "Sign in to carechain",
                resources: &[],
            },
        );
        assert_eq!(
            text,
            "127.0.0.1:8080 wants you to sign in with your Ethereum account:\n\
             0x70997970C51812dc3A010C7d01b50e0d17dc79C8\n\nSign in to carechain\n\n\
             URI: http://127.0.0.1:8080\nVersion: 1\nChain ID: 31337\nNonce: abc123\n\
             Issued At: 2026-01-01T00:00:00Z\nExpiration Time: 2026-01-01T00:05:00Z"
        );
        assert_eq!(
            authority("http://127.0.0.1:8080/").ok().as_deref(),
            Some("127.0.0.1:8080")
        );
    }

    #[test]
    fn lines_for_people() {
        let obs = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"display": "Hemoglobin A1c"}]},
            "effectiveDateTime": "2026-01-02", "valueQuantity": {"value": 6.1, "unit": "%"}});
        assert_eq!(
            record_line(&obs),
            "Observation/o1  2026-01-02  Hemoglobin A1c = 6.1 %  final"
        );
        let audit = json!({"resourceType": "AuditEvent", "recorded": "2026-01-03T10:00:00Z",
            "action": "R", "outcome": "0",
            "agent": [{"requestor": true, "who": {"identifier": {"value": "0xabc"}}}],
            "entity": [{"what": {"reference": "Observation/o1"}}],
            "purposeOfEvent": [{"coding": [{"code": "TREAT"}]}]});
        assert_eq!(
            audit_line(&audit),
            "2026-01-03T10:00:00Z  0xabc  read Observation/o1  for TREAT  allowed"
        );
        let outcome = json!({"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "forbidden", "diagnostics": "no consent"}]});
        assert_eq!(outcome_text(&outcome), "no consent");
    }
}
