// One flow for every change a patient signs (give or withdraw access, add or remove a
// delegate): the gateway prepares the EIP-712 typed data (its one definition), the page shows
// it in words, the wallet signs, the gateway's relay submits it gas-free, and the page follows
// it until the indexer has recorded it. Each step is kept in the tab's session, so a reload
// resumes where it stopped rather than losing a signature or signing twice.

import { api, until, PortalError } from "./api.js";
import { keepPending, pending, signedIn } from "./session.js";
import { h, notify, clearNotice, words, busy } from "./ui.js";
import * as wallet from "./wallet.js";

function proofOf(consent, name) {
  const ext = (consent.extension || []).find((e) => e.url === "urn:carechain:chain-proof");
  const item = (ext?.extension || []).find((e) => e.url === name);
  return item ? item.valueString ?? item.valueInteger ?? item.valueCode : undefined;
}

export { proofOf };

async function consents(patient) {
  const bundle = await api(`/Consent?patient=${patient}&_count=100`);
  return (bundle.entry || []).map((e) => e.resource);
}

async function delegates(patient) {
  return (await api(`/portal/api/delegates?patient=${patient}`)).delegates;
}

/** Whether the change made by transaction `tx` is visible in the index yet. */
const recorded = {
  grant: async (req, tx) => (await consents(req.patient)).some((c) => proofOf(c, "txHash") === tx && c.status === "active"),
  revoke: async (req, tx) => (await consents(req.patient)).some((c) => proofOf(c, "endedTxHash") === tx),
  "set-delegate": async (req) => (await delegates(req.patient)).some((d) => d.address === req.delegate.toLowerCase() && d.active),
  "set-proxy": async (req) => (await delegates(req.patient)).some((d) => d.address === req.delegate.toLowerCase() && d.kind === "proxy" && d.active),
  "remove-delegate": async (req) => !(await delegates(req.patient)).some((d) => d.address === req.delegate.toLowerCase()),
};

const DONE = {
  grant: "Access given. It is recorded on the blockchain and in force now.",
  revoke: "Access withdrawn. It is recorded on the blockchain: from now on they are refused.",
  "set-delegate": "Done: this person can now act for you, until the date you chose.",
  "set-proxy": "Done: this person can now act for you within the scope you chose, until the date you chose.",
  "remove-delegate": "Done: this person can no longer act for you.",
};

/** Shows the prepared change in words with Sign and Cancel; resolves when finished. */
export async function review(request, area, ctx, onDone) {
  clearNotice();
  const prepared = await api("/portal/api/typed-data", { method: "POST", body: request, auth: false });
  keepPending({ stage: "review", request, prepared, route: location.hash });
  showReview(area, ctx, onDone);
}

/** Renders whatever pending change the session holds (after a reload too). */
export function showReview(area, ctx, onDone) {
  const p = pending();
  if (!p) return;
  document.body.dataset.reviewing = "";
  if (p.stage !== "review") {
    area.replaceChildren(h("p", { class: "muted" }, "Finishing the change you signed…"));
    finish(ctx, onDone);
    return;
  }
  const sign = h("button", { type: "button", id: "sign" }, "Sign with my wallet");
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  cancel.addEventListener("click", () => {
    keepPending(null);
    area.replaceChildren();
    onDone(false);
  });
  sign.addEventListener("click", () => busy(sign, () => signNow(ctx, onDone)));
  area.replaceChildren(h("section", { class: "card", "aria-labelledby": "review-title" },
    h("h2", { id: "review-title" }, "Please check what you are about to sign"),
    words(p.prepared.words),
    h("p", { class: "muted" }, "Your wallet will show the same request in its own words. Signing costs you nothing: the service pays the network fee."),
    h("div", { class: "actions" }, sign, cancel)));
  sign.focus();
}

async function signNow(ctx, onDone) {
  const p = pending();
  const session = signedIn();
  if (!p || !session) return;
  try {
    await wallet.requireChain(ctx.chainId);
    const signer = await wallet.account();
    if (signer !== session.address) {
      notify("error", "Your wallet now shows another account than the one you signed in with. Switch back to that account in your wallet, then sign again.");
      return;
    }
    const signature = await wallet.signTypedData(session.address, p.prepared.typedData);
    keepPending({ ...p, stage: "signed", signature });
  } catch (error) {
    if (error instanceof wallet.WalletError && error.kind === "wrong-chain") {
      notify("warn", error.message, [{ label: "Switch my wallet's network", run: () => wallet.switchChain(ctx.chainIdHex).then(clearNotice, (e) => notify("error", e.message)) }]);
      return;
    }
    notify("error", error.message);
    return;
  }
  await finish(ctx, onDone);
}

/** Submits a signed change (once) and follows it until it is indexed. */
async function finish(ctx, onDone) {
  let p = pending();
  try {
    if (p.stage === "signed") {
      notify("info", "Sending your signed change to the blockchain…");
      const result = await api("/relay/consent", {
        method: "POST",
        auth: false,
        body: { typedData: p.prepared.typedData, signature: p.signature },
      });
      p = { ...p, stage: "submitted", tx: result.transactionHash, block: result.blockNumber };
      keepPending(p);
    }
    notify("info", "Your change is on the blockchain. Waiting for it to be recorded here (a few seconds)…");
    const done = await until(() => recorded[p.request.kind](p.request, p.tx), 90);
    if (!done) {
      notify("warn", "Your change is on the blockchain but this service has not caught up yet. It will show up shortly: reload this page in a minute.",
        [{ label: "Check again", run: () => finish(ctx, onDone) }]);
      return;
    }
    keepPending(null);
    notify("ok", DONE[p.request.kind]);
    onDone(true);
  } catch (error) {
    if (error instanceof PortalError && ["invalid", "refused"].includes(error.kind) && p.stage === "signed") {
      // Refused before anything was sent (stale, expired or rejected): nothing to follow.
      keepPending(null);
      notify("error", [error.message, error.detail].filter(Boolean), [{ label: "Start again", run: () => onDone(false) }]);
      return;
    }
    const retry = [{ label: "Try again", run: () => finish(ctx, onDone) }];
    notify("error", [error.message], error.kind === "expired" ? [] : retry);
    if (error.kind === "expired") window.dispatchEvent(new Event("carechain:signin"));
  }
}
