//! The patient portal (issue 20) in a real browser: `scripts/stack` brings up the demo, then
//! `tests/portal/browser.mjs` drives Debian's Chromium through playwright-core as Alice would,
//! with a wallet whose signatures anvil makes with her dev key (see that file for the flows).
//! Screenshots of every page land in `target/portal-browser/`. Needs `node_modules` (npm ci)
//! and Chromium (`CHROMIUM_BIN`, default `/usr/bin/chromium`): `scripts/test` installs both.
#![allow(missing_docs)]

use carechain_e2e::{Stack, StackPlace};
use carechain_testkit::repo_root;
use std::{process::Command, time::Instant};

/// The stack's settings the browser test reads.
const SETTINGS: &[&str] = &[
    "CARECHAIN_GATEWAY_URL",
    "RPC_URL",
    "CHAIN_ID",
    "DEPLOY_MANIFEST",
    "ALICE_ADDRESS",
    "BOB_ADDRESS",
    "CAROL_ADDRESS",
    "DR_B_KEY",
];

#[test]
fn a_patient_uses_the_portal_in_chromium() {
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run scripts/test (it installs Debian's chromium) or set CHROMIUM_BIN"
    );
    let root = repo_root();
    assert!(
        root.join("node_modules/playwright-core").is_dir(),
        "node_modules has no playwright-core: run `npm ci` (scripts/test does)"
    );
    let place = StackPlace::new("portal");
    let stack = Stack::start(&place, true);
    let artifacts = root.join("target/portal-browser");
    let mut node = Command::new("node");
    node.arg(root.join("tests/portal/browser.mjs"))
        .current_dir(&root)
        .env("CHROMIUM_BIN", &chromium)
        .env("PORTAL_ARTIFACTS", &artifacts)
        // Node checks the gateway's certificate against the stack's own CA.
        .env("NODE_EXTRA_CA_CERTS", stack.ca_file());
    for name in SETTINGS {
        node.env(name, stack.var(name));
    }
    let started = Instant::now();
    let status = node
        .status()
        .unwrap_or_else(|e| panic!("run node tests/portal/browser.mjs: {e}"));
    eprintln!(
        "portal browser test: {:.0} s, screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
    let (_, output) = stack.interrupt();
    assert!(
        status.success(),
        "the portal's browser test failed ({status}); screenshots in {}; stack output:\n{output}",
        artifacts.display()
    );
}
