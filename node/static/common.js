// Shared helpers of the page: DOM building, formatting, the API client with the session's CSRF token.
// Everything shown from the API goes through textContent (el() never parses HTML).

export const API = "/api/v1";
export const $ = (id) => document.getElementById(id);

export const state = {
  session: null,      // {user: {username, role}, csrf_token, expires_ms} while signed in
  status: null,       // last /status reply
  onSignedOut: null,  // set by app.js: what to do when the node says the session is gone
};

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

export function shortHash(hex, size = 10) {
  return hex && hex.length > 2 * size ? `${hex.slice(0, size)}…${hex.slice(-6)}` : hex || "–";
}

// ISO-8601 in UTC with its zone, to the second: 2026-12-02T13:25:01Z.
export function isoTime(ms) {
  return ms ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z") : "–";
}

export function timeElement(ms) {
  return ms ? el("time", { datetime: isoTime(ms) }, isoTime(ms)) : "–";
}

export function percent(value, digits = 1) {
  return `${(100 * value).toFixed(digits)} %`;
}

export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const method = (options.method || "GET").toUpperCase();
  if (method !== "GET" && state.session) headers.set("X-CSRF-Token", state.session.csrf_token);
  const response = await fetch(`${API}${path}`, { ...options, headers, credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401 && state.session && path !== "/session" && state.onSignedOut) state.onSignedOut();
    throw new ApiFailure(response.status, body.error || `http-${response.status}`, body.message || response.statusText);
  }
  return body;
}

export function announce(text) {
  const region = $("announcer");
  region.textContent = "";
  window.setTimeout(() => { region.textContent = text; }, 50);
}

export function setState(node, text, kind = "") {
  node.textContent = text;
  node.className = `state ${kind}`;
  if (kind === "error" && text) announce(text);
}

export function describeFailure(error) {
  if (error instanceof ApiFailure) {
    if (error.status === 401) return `${error.message} (sign in again to continue).`;
    return `${error.message} (${error.code}).`;
  }
  return `The node could not be reached: ${error.message}.`;
}

export function copyButton(text, label) {
  const button = el("button", { type: "button", class: "secondary small copy", "aria-label": `Copy ${label}` }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    window.setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  return button;
}

// A definition list of [label, value, options]; options.mono for hashes, options.copy to add a copy button.
export function kvList(target, pairs) {
  target.replaceChildren(...pairs.flatMap(([key, value, options = {}]) => {
    const cell = el("dd", options.mono ? { class: "mono" } : {}, value ?? "–");
    if (options.copy && value) cell.append(" ", copyButton(String(value), key));
    return [el("dt", {}, key), cell];
  }));
}

export const MODALITY_NAMES = { ct: "CT slice", xray: "Chest X-ray" };
export const FACTOR_NAMES = { age: "Age", smoking: "Smoking", family_history: "Family history" };

// Confirmations under the signer limit: "final" once a majority of distinct members confirmed the block.
export function finalityText(confirmations, finality) {
  const count = `${confirmations} confirmation${confirmations === 1 ? "" : "s"}`;
  if (!finality) return count;
  const members = `${finality.distinct_members} of ${finality.needed} distinct member${finality.needed === 1 ? "" : "s"}`;
  return finality.final ? `final (${members}; ${count})` : `not final yet (${members}; ${count})`;
}

export function findingText(label) {
  return label === "affected" ? "Findings suggest cancer" : "No finding";
}

export function signed(value) {
  return `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(2)}`;
}

export function riskClass(level) {
  return `risk risk-${String(level).toLowerCase()}`;
}
