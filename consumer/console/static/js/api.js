// The console's only way to data: the public search API, same origin.
// Beyond loopback the API wants "Authorization: Bearer <token>"; the token
// is asked for when the API answers 401 and kept in sessionStorage, so it
// lives as long as the tab and never reaches a URL or localStorage.

const tokenKey = "auditpipe.token";

// ApiError is an answer of the API that is not 2xx, or no answer at all.
export class ApiError extends Error {
  constructor(message, { status = 0, parameter = "", position = null } = {}) {
    super(message);
    this.status = status;
    this.parameter = parameter;
    this.position = position;
  }
}

export function token() {
  return sessionStorage.getItem(tokenKey) || "";
}

export function forgetToken() {
  sessionStorage.removeItem(tokenKey);
}

let loginWaiter = null;

// askToken shows the login dialog once, however many requests are waiting
// for it, and resolves when a token was entered.
function askToken(message) {
  if (loginWaiter) return loginWaiter;
  const dlg = document.getElementById("login");
  const form = document.getElementById("loginForm");
  const input = document.getElementById("token");
  const err = document.getElementById("loginError");
  err.hidden = !message;
  err.textContent = message || "";
  input.value = "";
  loginWaiter = new Promise((resolve) => {
    form.onsubmit = (e) => {
      e.preventDefault();
      const t = input.value.trim();
      if (!t) return;
      sessionStorage.setItem(tokenKey, t);
      dlg.close();
      loginWaiter = null;
      resolve();
    };
  });
  if (!dlg.open) dlg.showModal();
  input.focus();
  return loginWaiter;
}

// get fetches path with params (an object; empty values are left out) and
// returns the decoded JSON body, asking for a token on 401 and retrying.
export async function get(path, params = {}, { signal } = {}) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    let resp;
    try {
      resp = await fetch(u, { headers, signal, cache: "no-store" });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(`The query API did not answer (${e.message}). Is auditpipe running?`);
    }
    let body = null;
    const text = await resp.text();
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (resp.status === 401) {
      const msg = t ? "That token was refused." : "";
      if (t) forgetToken();
      await askToken(msg);
      document.getElementById("logout").hidden = false;
      continue;
    }
    if (!resp.ok) {
      const msg = body && body.error ? body.error : `HTTP ${resp.status} ${resp.statusText}`;
      throw new ApiError(msg, { status: resp.status, parameter: body && body.parameter, position: body && body.position != null ? body.position : null });
    }
    if (body === null) throw new ApiError(`The API answered ${resp.status} without JSON.`, { status: resp.status });
    return body;
  }
  throw new ApiError("Too many refused tokens.", { status: 401 });
}

// search runs GET /api/v1/search.
export function search({ q, from, to, cluster, limit, cursor }, opts) {
  return get("/api/v1/search", { q, from, to, cluster, limit, cursor }, opts);
}

export function clusters(opts) {
  return get("/api/v1/clusters", {}, opts);
}
