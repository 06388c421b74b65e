// The portal's entry point: loads what the gateway says about itself, then shows the page the
// address names (#/records, #/consents, ...), or the sign-in when nobody is signed in.

import { api, PortalError } from "./api.js";
import { signedIn, endSession, forgetAll, returnTo, takeReturnTo } from "./session.js";
import { h, page, notify, clearNotice, short } from "./ui.js";
import * as wallet from "./wallet.js";
import * as signin from "./pages/signin.js";
import * as records from "./pages/records.js";
import * as consents from "./pages/consents.js";
import * as grant from "./pages/grant.js";
import * as accesslog from "./pages/accesslog.js";
import * as delegates from "./pages/delegates.js";

const PAGES = {
  "#/records": records,
  "#/consents": consents,
  "#/grant": grant,
  "#/access-log": accesslog,
  "#/delegates": delegates,
};

let ctx = null;

async function loadContext() {
  try {
    ctx = await api("/portal/api/context", { auth: false });
    return true;
  } catch (error) {
    page("carechain is not reachable", h("p", {}, error.message));
    notify("error", error.message, [{ label: "Try again", run: () => start() }]);
    return false;
  }
}

function showAccount(session) {
  document.getElementById("account").hidden = !session;
  document.getElementById("nav").hidden = !session;
  document.getElementById("account-name").textContent = session ? `Signed in as ${short(session.address)}` : "";
}

function markCurrent(route) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === route) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  const session = signedIn();
  const wanted = PAGES[location.hash] ? location.hash : "#/records";
  if (!session || session.expired) {
    if (session?.expired) {
      endSession();
      notify("warn", "Your sign-in has ended (it lasts a short time, to protect you). Sign in again to continue: nothing you entered is lost.");
    }
    returnTo(wanted);
    showAccount(null);
    await signin.render(ctx, () => {
      const back = takeReturnTo() || "#/records";
      if (location.hash === back) route();
      else location.hash = back;
    });
    return;
  }
  showAccount(session);
  markCurrent(wanted);
  if (location.hash !== wanted) {
    history.replaceState(null, "", wanted);
  }
  await wallet.rechoose();
  try {
    await PAGES[wanted].render(ctx, session);
  } catch (error) {
    report(error);
  }
}

/** Shows an error from any page with its way forward. */
export function report(error) {
  if (error instanceof PortalError && error.kind === "expired") {
    route();
    notify("warn", error.message);
    return;
  }
  const detail = error?.detail && error.detail !== error.message ? error.detail : null;
  notify("error", [error?.message || String(error), detail].filter(Boolean), [{
    label: "Try again",
    run: () => {
      clearNotice();
      route();
    },
  }]);
}

async function start() {
  clearNotice();
  if (await loadContext()) await route();
}

window.addEventListener("hashchange", () => {
  if (location.hash === "#main") return;
  clearNotice();
  route();
});
window.addEventListener("carechain:signin", () => route());
window.addEventListener("carechain:error", (event) => report(event.detail));
window.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  report(event.reason);
});
document.getElementById("sign-out").addEventListener("click", () => {
  forgetAll();
  notify("ok", "You are signed out.");
  route();
});
start();
