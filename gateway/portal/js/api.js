// Calls to the gateway (same origin). Every failure becomes a PortalError that says, in a
// patient's words, what happened and what to do next.

import { signedIn, endSession } from "./session.js";

export class PortalError extends Error {
  /**
   * kind: "unreachable" | "expired" | "behind" | "refused" | "invalid" | "busy" | "server"
   * detail: the gateway's own words, when it gave any.
   */
  constructor(kind, message, detail = "") {
    super(message);
    this.kind = kind;
    this.detail = detail;
  }
}

function outcomeText(body) {
  if (body && body.resourceType === "OperationOutcome") {
    return (body.issue || []).map((i) => i.diagnostics || i.details?.text || "").filter(Boolean).join(" ");
  }
  return "";
}

/** The error for a response the gateway refused. */
function failure(status, body, headers) {
  const detail = outcomeText(body);
  if (status === 401) {
    endSession();
    return new PortalError("expired",
      "Your sign-in has ended (it lasts a short time, to protect you). Sign in again to continue: nothing you entered is lost.", detail);
  }
  if (status === 503) {
    const stale = /index|stale|behind|follow/i.test(detail);
    return new PortalError("behind", stale
      ? "The service is catching up with the latest changes on the blockchain. Please wait a few seconds and try again."
      : "The service cannot check your consent on the blockchain right now, so it shows nothing rather than risk a mistake. Please try again in a minute.", detail);
  }
  if (status === 429) {
    const wait = headers.get("retry-after");
    return new PortalError("busy", `Too many requests in a short time. Please wait ${wait ? `${wait} seconds` : "a moment"} and try again.`, detail);
  }
  if (status === 403 || status === 404) {
    return new PortalError("refused", detail || "This is not available to you.", detail);
  }
  if (status === 409) {
    return new PortalError("invalid", "This signature was already used or replaced by a newer one. Please review and sign again.", detail);
  }
  if (status >= 400 && status < 500) {
    return new PortalError("invalid", detail || "The request was not accepted.", detail);
  }
  return new PortalError("server", "Something went wrong on the service's side. Please try again; if it keeps happening, contact your care provider.", detail);
}

/**
 * fetch JSON from the gateway. options: {method, body, auth (default true), purpose}
 */
export async function api(path, options = {}) {
  const headers = { Accept: "application/fhir+json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.auth !== false) {
    const session = signedIn();
    if (!session || session.expired) {
      endSession();
      throw new PortalError("expired", "Your sign-in has ended. Sign in again to continue: nothing you entered is lost.");
    }
    headers.Authorization = `Bearer ${session.token}`;
  }
  if (options.purpose) headers["X-Purpose-Of-Use"] = options.purpose;
  let response;
  try {
    response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new PortalError("unreachable",
      "We cannot reach the health data service. Check your internet connection, then try again.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw failure(response.status, body, response.headers);
  return body;
}

/** Follows a searchset Bundle's `next` links (same origin only), up to `maxPages`. */
export async function searchAll(path, options = {}, maxPages = 20) {
  const entries = [];
  let next = path;
  for (let page = 0; next && page < maxPages; page += 1) {
    const bundle = await api(next, options);
    entries.push(...(bundle.entry || []));
    const link = (bundle.link || []).find((l) => l.relation === "next");
    next = null;
    if (link) {
      const url = new URL(link.url, location.href);
      if (url.origin === location.origin) next = url.pathname + url.search;
    }
  }
  return entries;
}

/** Tries `work` until it returns a value, for up to `seconds`; "behind" errors are waited out. */
export async function until(work, seconds = 60, everyMs = 1000) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    try {
      const value = await work();
      if (value) return value;
    } catch (error) {
      if (!(error instanceof PortalError) || !["behind", "unreachable"].includes(error.kind)) throw error;
    }
    if (Date.now() > end) return null;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
