// The patient portal in a real Chromium (Debian's), driven by playwright-core, against a
// running stack (scripts/stack: anvil, PostgreSQL, indexer, gateway, demo data). Run by
// tests/tests/portal.rs, which starts the stack and passes its settings in the environment.
//
// Alice signs in with an EIP-1193 wallet whose signatures anvil makes with her dev key; she
// sees her records, gives Hospital B access (Dr B then reads through the API), withdraws it
// (Dr B is refused), sees both and a break-glass access in her access log, adds and removes
// a delegate; on the way: a wallet on another chain, a refused signature, an expired sign-in,
// a reload in the middle of signing, a phone-sized screen. axe-core checks every page (no
// serious or critical violation); a screenshot of each page is saved; any console error fails.

import { chromium } from "playwright-core";
import { ethers } from "ethers";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`the environment has no ${name}`);
  return value;
};
const GATEWAY = env("CARECHAIN_GATEWAY_URL").replace(/\/$/, "");
const RPC_URL = env("RPC_URL");
const CHAIN_ID = Number(env("CHAIN_ID"));
const ALICE = env("ALICE_ADDRESS").toLowerCase();
const BOB = env("BOB_ADDRESS").toLowerCase();
const CAROL = env("CAROL_ADDRESS").toLowerCase();
const DR_B_KEY = env("DR_B_KEY");
const MANIFEST = JSON.parse(fs.readFileSync(env("DEPLOY_MANIFEST"), "utf8"));
const ARTIFACTS = process.env.PORTAL_ARTIFACTS || path.resolve("target/portal-browser");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");

fs.rmSync(ARTIFACTS, { recursive: true, force: true });
fs.mkdirSync(ARTIFACTS, { recursive: true });
const started = Date.now();
const log = (text) => console.log(`[portal ${((Date.now() - started) / 1000).toFixed(1)}s] ${text}`);
const check = (ok, what) => {
  if (!ok) throw new Error(`check failed: ${what}`);
};

// --- anvil, the wallet's signer ------------------------------------------------------------
let rpcId = 0;
async function rpc(method, params) {
  const response = await fetch(RPC_URL, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
  });
  return response.json();
}

const wallet = { chainId: 1, account: ALICE, refuse: new Set(), requests: [] };
async function walletRequest(method, params) {
  wallet.requests.push(method);
  const refuse = () => ({ error: { code: 4001, message: "User rejected the request." } });
  switch (method) {
    case "eth_requestAccounts":
    case "eth_accounts":
      return { result: [wallet.account] };
    case "eth_chainId":
      return { result: `0x${wallet.chainId.toString(16)}` };
    case "wallet_switchEthereumChain": {
      const wanted = parseInt(params[0].chainId, 16);
      if (wanted !== CHAIN_ID) return { error: { code: 4902, message: "Unrecognized chain." } };
      wallet.chainId = wanted;
      return { result: null };
    }
    case "personal_sign":
    case "eth_signTypedData_v4": {
      if (wallet.refuse.delete(method)) return refuse();
      check(wallet.chainId === CHAIN_ID || method === "personal_sign", "typed data is signed on the right chain");
      const answer = method === "personal_sign"
        ? await rpc("personal_sign", [params[0], params[1]])
        : await rpc("eth_signTypedData_v4", [params[0], JSON.parse(params[1])]);
      if (answer.error) return { error: { code: -32603, message: answer.error.message } };
      return { result: answer.result };
    }
    default:
      return { error: { code: 4200, message: `the test wallet does not support ${method}` } };
  }
}

// --- Dr B, through the API ------------------------------------------------------------------
const drB = new ethers.Wallet(DR_B_KEY);
async function gateway(pathAndQuery, { token, purpose, method = "GET", body } = {}) {
  const headers = { accept: "application/fhir+json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (purpose) headers["x-purpose-of-use"] = purpose;
  if (body) headers["content-type"] = "application/json";
  const response = await fetch(`${GATEWAY}${pathAndQuery}`, { method, headers, body: body && JSON.stringify(body) });
  return { status: response.status, headers: response.headers, body: await response.json().catch(() => null) };
}
async function drBToken() {
  const { body } = await gateway("/portal/api/sign-in", { method: "POST", body: { address: drB.address } });
  const signature = await drB.signMessage(body.message);
  const login = await gateway("/auth/login", { method: "POST", body: { message: body.message, signature } });
  check(login.status === 200, `Dr B signs in (${login.status})`);
  return login.body.access_token;
}
async function drBReads(token, purpose, want) {
  for (let i = 0; i < 120; i += 1) {
    const answer = await gateway(`/Observation?patient=${ALICE}`, { token, purpose });
    if (answer.status === want) return answer;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`Dr B's read for ${purpose} never answered ${want}`);
}

// --- the browser ------------------------------------------------------------------------------
const consoleErrors = [];
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // The stack's gateway certificate comes from its own CA; the sandbox needs a non-root user.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 }, locale: "en-GB", timezoneId: "UTC" });
await context.exposeBinding("__carechainWallet", (_source, method, params) => walletRequest(method, params));
await context.addInitScript({ path: path.join(REPO, "tests/portal/wallet-init.js") });
const page = await context.newPage();
// Generous: the test command runs the other end-to-end stacks beside this one on two cores.
page.setDefaultTimeout(60000);
page.on("console", (message) => {
  if (message.type() === "error") consoleErrors.push(message.text());
});
page.on("pageerror", (error) => consoleErrors.push(`uncaught: ${error.message}`));

let shots = 0;
async function pageDone(name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const serious = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
  shots += 1;
  await page.screenshot({ path: path.join(ARTIFACTS, `${String(shots).padStart(2, "0")}-${name}.png`), fullPage: true });
  check(serious.length === 0, `no serious or critical accessibility violation on ${name}: ${JSON.stringify(serious.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) })))}`);
  log(`${name}: axe clean (${result.violations.length} minor), screenshot saved`);
}
const notice = (pattern) => page.locator("#notice").filter({ hasText: pattern }).waitFor();
const button = (name) => page.getByRole("button", { name });

try {
  // The page and its policy.
  const served = await fetch(`${GATEWAY}/portal`);
  const csp = served.headers.get("content-security-policy") || "";
  check(served.status === 200 && /script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `GET /portal has a strict CSP (${csp})`);

  // 1. Sign in: the wallet is on another chain first; then Alice refuses to sign; then signs.
  await page.goto(`${GATEWAY}/portal`);
  await button(/Sign in with carechain test wallet/).waitFor();
  await pageDone("sign-in");
  await button(/Sign in with carechain test wallet/).click();
  await notice(/another network/);
  await pageDone("sign-in-wrong-chain");
  wallet.refuse.add("personal_sign");
  await button(/Switch my wallet to the carechain network/).click();
  await notice(/You declined/);
  check(wallet.chainId === CHAIN_ID, "the portal asked the wallet to switch chain");
  await pageDone("sign-in-refused");
  await button(/Sign in with carechain test wallet/).click();
  await page.getByRole("heading", { name: "My records", level: 1 }).waitFor();
  log("signed in after a wrong chain and a refusal");

  // 2. My records: in words, with custodian and integrity mark.
  await page.getByText("Heart rate").waitFor();
  const records = await page.locator("#records").innerText();
  check(/72 \/min/.test(records) && /Hospital A/.test(records) && /verified on the blockchain/.test(records) && /Acute viral pharyngitis/.test(records), "records shown in words with custodian and integrity");
  // Her lab results are kept by the lab's own gateway: found there and named by their keeper.
  check(/City Lab/.test(records) && /Hemoglobin A1c/.test(records), "records kept by another custodian are shown with it");
  const download = page.waitForEvent("download");
  await button(/Download everything/).click();
  const bundle = JSON.parse(fs.readFileSync(await (await download).path(), "utf8"));
  check(bundle.resourceType === "Bundle" && bundle.entry.length >= 6, "the download is a FHIR Bundle of every record");
  await pageDone("records");

  // 2b. The gateway unreachable: a message in words and a way forward.
  await page.route("**/Consent?**", (route) => route.abort("internetdisconnected"));
  const errorsBefore = consoleErrors.length;
  await page.getByRole("link", { name: "Who may see my data" }).click();
  await notice(/cannot reach the health data service/);
  await pageDone("gateway-unreachable");
  await page.unroute("**/Consent?**");
  for (const error of consoleErrors.splice(errorsBefore)) {
    check(/ERR_INTERNET_DISCONNECTED/.test(error), `only the cut request failed: ${error}`);
  }
  await button("Try again").click();
  await button(/Withdraw access of Hospital A/).waitFor();

  // 2c. The index behind the chain: the gateway fails closed (503); the page says to wait.
  await page.route("**/Consent?**", (route) => route.fulfill({
    status: 503,
    contentType: "application/fhir+json",
    body: JSON.stringify({ resourceType: "OperationOutcome", issue: [{ severity: "error", code: "transient", diagnostics: "the index is stale (fail closed)" }] }),
  }));
  const errorsBeforeStale = consoleErrors.length;
  await page.getByRole("link", { name: "My records" }).click();
  await page.getByRole("link", { name: "Who may see my data" }).click();
  await notice(/catching up with the latest changes/);
  await pageDone("index-behind");
  await page.unroute("**/Consent?**");
  for (const error of consoleErrors.splice(errorsBeforeStale)) {
    check(/503/.test(error), `only the refused request failed: ${error}`);
  }
  await button("Try again").click();
  await button(/Withdraw access of Hospital A/).waitFor();

  // 3. Give access to Hospital B; reload in the middle (after the review is shown).
  await page.getByRole("link", { name: "Give access" }).click();
  await page.getByLabel("Who may see your records").selectOption({ label: "Hospital B (hospital)" });
  await page.getByLabel("Conditions and diagnoses (Condition)").check();
  await page.getByLabel("For what purpose").selectOption("TREAT");
  await button("Review what I will sign").click();
  await page.getByRole("heading", { name: /check what you are about to sign/ }).waitFor();
  const review = await page.locator("#review").innerText();
  check(/Hospital B/.test(review) && /Observation, Condition/.test(review) && /treatment/.test(review), `the review says what will be signed (${review})`);
  await pageDone("give-access-review");
  await page.reload();
  await page.getByRole("heading", { name: /check what you are about to sign/ }).waitFor();
  log("the review survived a reload");
  wallet.refuse.add("eth_signTypedData_v4");
  await button("Sign with my wallet").click();
  await notice(/You declined/);
  await button("Sign with my wallet").click();
  await notice(/Access given/);
  log("Alice gave Hospital B access, gas-free through the relay");

  // 4. Dr B reads through the API.
  const drBTokenValue = await drBToken();
  const allowed = await drBReads(drBTokenValue, "TREAT", 200);
  check((allowed.body.entry || []).length >= 3, "Dr B reads Alice's observations");

  // 5. Who may see my data: Hospital B in force; withdraw it.
  await page.getByRole("link", { name: "Who may see my data" }).click();
  await button(/Withdraw access of Hospital B/).waitFor();
  await pageDone("consents");
  await page.screenshot({ path: path.join(ARTIFACTS, "portal-consent.png") });
  await button(/Withdraw access of Hospital B/).click();
  await page.getByRole("heading", { name: /check what you are about to sign/ }).waitFor();
  await button("Sign with my wallet").click();
  await notice(/Access withdrawn/);
  await page.getByText("Withdrawn", { exact: true }).first().waitFor();
  await pageDone("consents-after-withdrawal");

  // 6. Dr B is refused; then opens a break-glass session and reads for emergency treatment.
  await drBReads(drBTokenValue, "TREAT", 403);
  const registry = new ethers.Contract(
    MANIFEST.contracts.ConsentRegistry,
    JSON.parse(fs.readFileSync(path.join(REPO, "abi/ConsentRegistry.json"), "utf8")).abi
      ?? JSON.parse(fs.readFileSync(path.join(REPO, "abi/ConsentRegistry.json"), "utf8")),
    drB.connect(new ethers.JsonRpcProvider(RPC_URL)),
  );
  await (await registry.openBreakGlass(ALICE, 2, 3600)).wait();
  await drBReads(drBTokenValue, "ETREAT", 200);
  log("Dr B: allowed, refused after the withdrawal, then allowed by break-glass");

  // 7. Who accessed my data: Dr B's read and refusal, break-glass highlighted.
  await page.getByRole("link", { name: "Who accessed my data" }).click();
  for (let i = 0; i < 60; i += 1) {
    await page.locator("#access-log li").first().waitFor({ state: "attached" });
    if (await page.locator("#access-log li.breakglass").filter({ hasText: /opened EMERGENCY ACCESS/ }).count()) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await page.reload();
  }
  const logText = await page.locator("#access-log").innerText();
  check(/Hospital B, key/.test(logText), "the log names Hospital B's key");
  check(await page.locator("#access-log li").filter({ hasText: /Hospital B, key/ }).filter({ hasText: "Allowed" }).count() > 0, "Dr B's allowed read is listed");
  check(await page.locator("#access-log li").filter({ hasText: /Hospital B, key/ }).filter({ hasText: "Refused" }).count() > 0, "Dr B's refusal is listed");
  check(await page.locator("#access-log li.breakglass").filter({ hasText: /Hospital B, key .* opened EMERGENCY ACCESS/ }).count() === 1, "the break-glass opening is highlighted and names Hospital B");
  check(await page.locator("#access-log li.breakglass").filter({ hasText: "Allowed" }).filter({ hasText: /a clinician opened your records in an emergency/ }).count() >= 2, "break-glass accesses are explained");
  check(!(await page.locator("#access-log li[data-own]").first().isVisible()), "the patient's own activity is folded away");
  check(/searched your records \(Observation\)/.test(logText), "the log says what was accessed");
  await pageDone("access-log");
  await page.getByLabel("Also show what I did myself").check();
  await page.locator("#access-log li[data-own]").first().waitFor();
  await pageDone("access-log-with-own");

  // 8. People who can act for me: Dave is there; add Bob as caregiver, then remove him.
  await page.getByRole("link", { name: "People who can act for me" }).click();
  await page.locator("#delegates li.card").first().waitFor();
  check(/guardian/i.test(await page.locator("#delegates").innerText()), "Dave, Alice's guardian, is listed");
  await page.getByLabel("Their wallet address").fill(BOB);
  await page.getByLabel(/Caregiver:/).check();
  const inSixtyDays = new Date(Date.now() + 60 * 86400000).toISOString().slice(0, 10);
  await page.getByLabel("Until").fill(inSixtyDays);
  await button("Review what I will sign").click();
  await page.getByRole("heading", { name: /check what you are about to sign/ }).waitFor();
  check(/caregiver/.test(await page.locator("#review").innerText()), "the review names the relationship");
  await pageDone("delegate-review");
  await button("Sign with my wallet").click();
  await notice(/can now act for you/);
  await button(new RegExp(`Remove ${BOB}`)).waitFor();
  await pageDone("delegates");
  await button(new RegExp(`Remove ${BOB}`)).click();
  await button("Sign with my wallet").click();
  await notice(/no longer act for you/);
  check(await button(new RegExp(`Remove ${BOB}`)).count() === 0, "Bob is gone");
  log("a delegate added and removed");
  await page.getByLabel("Their wallet address").fill(CAROL);
  await page.getByLabel(/Proxy:/).check();
  await page.getByLabel("Measurements and test results (Observation)").check();
  await page.getByLabel("Until").fill(inSixtyDays);
  await button("Review what I will sign").click();
  await page.getByRole("heading", { name: /check what you are about to sign/ }).waitFor();
  const proxyReview = await page.locator("#review").innerText();
  check(/proxy/.test(proxyReview) && /Observation/.test(proxyReview), `the review names the proxy's scope (${proxyReview})`);
  await button("Sign with my wallet").click();
  await notice(/within the scope you chose/);
  await button(new RegExp(`Remove ${CAROL}`)).waitFor();
  log("a proxy appointed within a scope");

  // 9. An expired sign-in: a message, sign in again, back where she was.
  await page.evaluate(() => {
    const state = JSON.parse(sessionStorage.getItem("carechain.portal"));
    state.session.expiresAt = 1;
    sessionStorage.setItem("carechain.portal", JSON.stringify(state));
  });
  await page.getByRole("link", { name: "Who may see my data" }).click();
  await notice(/sign-in has ended/);
  await pageDone("sign-in-expired");
  await button(/Sign in with carechain test wallet/).click();
  await page.getByRole("heading", { name: "Who may see my data", level: 1 }).waitFor();

  // 10. A phone-sized screen: every page fits its width.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [route, name] of [["#/records", "phone-records"], ["#/consents", "phone-consents"], ["#/grant", "phone-give-access"], ["#/access-log", "phone-access-log"], ["#/delegates", "phone-delegates"]]) {
    await page.goto(`${GATEWAY}/portal${route}`);
    await page.locator("main h1").waitFor();
    await page.waitForLoadState("networkidle");
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 390, `${name} fits a phone's width (${width}px)`);
    await pageDone(name);
  }

  // 11. An older wallet that only sets window.ethereum (no EIP-6963) signs in too.
  const legacy = await browser.newContext({ ignoreHTTPSErrors: true, locale: "en-GB", timezoneId: "UTC" });
  await legacy.exposeBinding("__carechainWallet", (_source, method, params) => walletRequest(method, params));
  await legacy.addInitScript({ content: "window.__carechainLegacyWallet = true;" });
  await legacy.addInitScript({ path: path.join(REPO, "tests/portal/wallet-init.js") });
  const old = await legacy.newPage();
  old.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  old.on("pageerror", (error) => consoleErrors.push(`uncaught: ${error.message}`));
  await old.goto(`${GATEWAY}/portal`);
  await old.getByRole("button", { name: "Sign in with Browser wallet" }).click();
  await old.getByRole("heading", { name: "My records", level: 1 }).waitFor({ timeout: 60000 });
  await legacy.close();
  log("a window.ethereum-only wallet signs in");

  check(consoleErrors.length === 0, `no console errors: ${JSON.stringify(consoleErrors)}`);
  log(`passed; screenshots in ${ARTIFACTS}`);
} catch (error) {
  await page.screenshot({ path: path.join(ARTIFACTS, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`portal browser test FAILED: ${error.stack || error}`);
  console.error(`notice: ${await page.locator("#notice").innerText().catch(() => "")}`);
  console.error(`console errors: ${JSON.stringify(consoleErrors)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
