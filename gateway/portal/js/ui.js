// DOM helpers: elements are built node by node (never from HTML strings), so nothing a
// record or the gateway says can become markup or script.

/** h("p", {class: "x"}, "text", child...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the main area with `children`, titles the page and moves focus to its heading. */
export function page(title, ...children) {
  const main = document.getElementById("main");
  main.replaceChildren();
  delete document.body.dataset.reviewing;
  const heading = h("h1", { tabindex: "-1" }, title);
  append(main, [heading, ...children]);
  document.title = `${title} · carechain`;
  heading.focus();
  return main;
}

/**
 * Shows a message for the patient. kind: "error" | "warn" | "ok" | "info".
 * actions: [{label, run}] buttons offering the way forward.
 */
export function notify(kind, text, actions = []) {
  const box = document.getElementById("notice");
  box.className = `notice ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  const lines = Array.isArray(text) ? text : [text];
  box.replaceChildren(
    ...lines.map((line) => h("p", {}, line)),
    actions.length
      ? h("div", { class: "actions" }, actions.map((a) =>
        h("button", { type: "button", class: a.secondary ? "secondary" : "", onclick: () => a.run() }, a.label)))
      : null,
  );
  box.hidden = false;
}

export function clearNotice() {
  const box = document.getElementById("notice");
  box.hidden = true;
  box.replaceChildren();
}

/** A date and time in the reader's own words and time zone. */
export function when(value) {
  if (!value) return "unknown";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function day(value) {
  if (!value) return "unknown";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return /T/.test(value)
    ? date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })
    : date.toLocaleDateString(undefined, { dateStyle: "medium" });
}

/** `0x1234…abcd` */
export function short(address) {
  return address && address.length > 12 ? `${address.slice(0, 6)}…${address.slice(-4)}` : address;
}

/** A definition list of {label, text} lines. */
export function words(lines) {
  return h("dl", { class: "words" }, lines.map((l) => [h("dt", {}, l.label), h("dd", {}, l.text)]));
}

/** Disables a button while `work` runs. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** Hands an error to the portal's one error display (main.js). */
export function fail(error) {
  window.dispatchEvent(new CustomEvent("carechain:error", { detail: error }));
}
