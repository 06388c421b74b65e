// What survives a reload: the sign-in (for its lifetime) and whatever the patient was doing
// (form drafts, a signed change still being recorded). sessionStorage: gone with the tab.

const KEY = "carechain.portal";

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "{}");
  } catch {
    return {};
  }
}

function save(state) {
  sessionStorage.setItem(KEY, JSON.stringify(state));
}

export function signedIn() {
  const s = load().session;
  if (!s) return null;
  if (s.expiresAt && Date.now() > s.expiresAt) return { ...s, expired: true };
  return s;
}

export function startSession(address, token, expiresIn) {
  const state = load();
  state.session = { address: address.toLowerCase(), token, expiresAt: Date.now() + expiresIn * 1000 };
  save(state);
}

export function endSession() {
  const state = load();
  delete state.session;
  save(state);
}

/** Forgets everything (sign-out), drafts included. */
export function forgetAll() {
  sessionStorage.removeItem(KEY);
}

export function draft(name) {
  return load().drafts?.[name] ?? null;
}

export function keepDraft(name, value) {
  const state = load();
  state.drafts = { ...(state.drafts || {}), [name]: value };
  if (value === null) delete state.drafts[name];
  save(state);
}

export function pending() {
  return load().pending ?? null;
}

export function keepPending(value) {
  const state = load();
  if (value === null) delete state.pending;
  else state.pending = value;
  save(state);
}

export function returnTo(route) {
  const state = load();
  state.returnTo = route;
  save(state);
}

export function takeReturnTo() {
  const state = load();
  const route = state.returnTo;
  delete state.returnTo;
  save(state);
  return route;
}
