//! Bulk work with the gateway: `import` (transaction Bundles from an EHR, linked to wallets)
//! and `research export` (FHIR Bulk Data: kick-off, polling with progress, download).

use crate::{
    commands::research::{ExportArgs, ImportArgs},
    gateway_client::{self, StoredToken},
};
use carechain_fhir::import::{WalletLinks, link_patients};
use eyre::{WrapErr, bail, eyre};
use serde_json::Value;
use std::{io::Write, path::Path, time::Duration};

/// `carechain import`: links each Bundle's Patient to its wallet and posts it as a transaction.
pub(crate) async fn import(args: &ImportArgs) -> eyre::Result<()> {
    let links = match (&args.patient_wallet, &args.wallets) {
        (Some(wallet), _) => WalletLinks::One(wallet.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .wrap_err_with(|| format!("cannot read {}", path.display()))?;
            let mapping: Value = serde_json::from_str(&text)
                .wrap_err_with(|| format!("{} is not JSON", path.display()))?;
            WalletLinks::from_mapping(&mapping).map_err(|e| eyre!("{}: {e}", path.display()))?
        }
        (None, None) => bail!(
            "say whose records these are: --patient-wallet 0x... (a Bundle of one patient) or \
             --wallets mapping.json"
        ),
    };
    let token = gateway_client::load_token(&args.gateway)?;
    let http = gateway_client::client(&args.gateway)?;
    for path in &args.bundles {
        let text = std::fs::read_to_string(path)
            .wrap_err_with(|| format!("cannot read {}", path.display()))?;
        let mut bundle: Value = serde_json::from_str(&text)
            .wrap_err_with(|| format!("{} is not JSON", path.display()))?;
        let wallets =
            link_patients(&mut bundle, &links).map_err(|e| eyre!("{}: {e}", path.display()))?;
        let entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let answer = gateway_client::json_response(
            http.post(format!("{}/", args.gateway.base()))
                .bearer_auth(&token.access_token)
                .header("Content-Type", "application/fhir+json")
                .header("Accept", "application/fhir+json")
                .body(bundle.to_string())
                .send()
                .await
                .wrap_err_with(|| format!("cannot reach the gateway at {}", token.gateway))?,
            &format!("import of {}", path.display()),
            &token.login_command,
        )
        .await?;
        let answered = answer
            .get("entry")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        println!(
            "{}: {answered} of {entries} entries imported for {}",
            path.display(),
            wallets.join(", ")
        );
    }
    Ok(())
}

/// `carechain research export`.
pub(crate) async fn export(args: &ExportArgs) -> eyre::Result<()> {
    let token = gateway_client::load_token(&args.gateway)?;
    let http = gateway_client::client(&args.gateway)?;
    if let Some(url) = &args.cancel {
        let response = http
            .delete(url)
            .bearer_auth(&token.access_token)
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .wrap_err_with(|| format!("cannot reach the gateway at {}", token.gateway))?;
        gateway_client::json_response(response, "cancel", &token.login_command).await?;
        println!("cancelled: the gateway stopped the job and deleted its files");
        return Ok(());
    }
    let status_url = match &args.status {
        Some(url) => url.clone(),
        None => kick_off(&http, &token, args).await?,
    };
    let manifest = poll(&http, &token, &status_url).await?;
    download(&http, &token, &manifest, &args.out).await
}

async fn kick_off(
    http: &reqwest::Client,
    token: &StoredToken,
    args: &ExportArgs,
) -> eyre::Result<String> {
    let study = args
        .study
        .as_deref()
        .ok_or_else(|| eyre!("--study is required to start an export"))?;
    let mut url = url_with(
        &format!("{}/Group/{study}/$export", args.gateway.base()),
        &[
            ("_type", args.types.as_deref()),
            ("_since", args.since.as_deref()),
        ],
    );
    if url.ends_with('?') {
        url.pop();
    }
    let response = http
        .get(&url)
        .bearer_auth(&token.access_token)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .wrap_err_with(|| format!("cannot reach the gateway at {}", token.gateway))?;
    let location = response
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let block = response
        .headers()
        .get("x-consent-block")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    gateway_client::json_response(response, "export kick-off", &token.login_command).await?;
    let location =
        location.ok_or_else(|| eyre!("the gateway accepted the export but gave no status URL"))?;
    eprintln!(
        "export started{}; status: {location}",
        block
            .map(|b| format!(" (consent decided at block {b})"))
            .unwrap_or_default()
    );
    Ok(location)
}

fn url_with(base: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut query = String::new();
    for (name, value) in params {
        if let Some(value) = value {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(name);
            query.push('=');
            query.extend(url_encode(value));
        }
    }
    format!("{base}?{query}")
}

fn url_encode(text: &str) -> impl Iterator<Item = String> + '_ {
    text.bytes().map(|b| {
        if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) {
            (b as char).to_string()
        } else {
            format!("%{b:02X}")
        }
    })
}

/// Polls the status URL, showing the gateway's progress on one line, until the manifest.
async fn poll(http: &reqwest::Client, token: &StoredToken, url: &str) -> eyre::Result<Value> {
    let mut shown = false;
    loop {
        let response = http
            .get(url)
            .bearer_auth(&token.access_token)
            .header("Accept", "application/fhir+json")
            .send()
            .await
            .wrap_err_with(|| format!("cannot reach the gateway at {}", token.gateway))?;
        if response.status().as_u16() == 202 {
            let progress = response
                .headers()
                .get("x-progress")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("working");
            eprint!("\r\x1b[2K{progress}");
            let _ = std::io::stderr().flush();
            shown = true;
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(2)
                .clamp(1, 60);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        if shown {
            eprintln!();
        }
        return gateway_client::json_response(response, "export", &token.login_command).await;
    }
}

/// Downloads every file of the manifest into `out`, with the manifest beside them.
async fn download(
    http: &reqwest::Client,
    token: &StoredToken,
    manifest: &Value,
    out: &Path,
) -> eyre::Result<()> {
    std::fs::create_dir_all(out).wrap_err_with(|| format!("cannot create {}", out.display()))?;
    let outputs = manifest
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut total = 0u64;
    for output in &outputs {
        let (Some(url), Some(kind)) = (
            output.get("url").and_then(Value::as_str),
            output.get("type").and_then(Value::as_str),
        ) else {
            bail!("the manifest lists a file without a url or type");
        };
        if !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("the manifest names an unexpected type");
        }
        let path = out.join(format!("{kind}.ndjson"));
        let mut response = http
            .get(url)
            .bearer_auth(&token.access_token)
            .header("Accept", "application/fhir+ndjson")
            .send()
            .await
            .wrap_err_with(|| format!("cannot reach the gateway at {}", token.gateway))?;
        if !response.status().is_success() {
            gateway_client::json_response(response, "download", &token.login_command).await?;
            bail!("download of {kind} failed");
        }
        let mut file = std::fs::File::create(&path)
            .wrap_err_with(|| format!("cannot write {}", path.display()))?;
        while let Some(chunk) = response.chunk().await.wrap_err("the download broke off")? {
            file.write_all(&chunk)
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
        }
        let count = output.get("count").and_then(Value::as_u64).unwrap_or(0);
        total += count;
        println!("{count:>9}  {}", path.display());
    }
    let manifest_path = out.join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(manifest)?)
        .wrap_err_with(|| format!("cannot write {}", manifest_path.display()))?;
    let ext = manifest.get("extension");
    println!(
        "{total} resources of {} patients in {} file(s); consent decided at block {}; manifest: {}",
        ext.and_then(|e| e.get("urn:carechain:patients"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
        outputs.len(),
        ext.and_then(|e| e.get("urn:carechain:consent-block"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
        manifest_path.display()
    );
    Ok(())
}
