// The public API, same-origin. Tokens live in this module's memory only: never in
// localStorage, sessionStorage or a cookie (docs/security.md). A reload means logging in
// again; that is the price of keeping them out of reach of anything else on the page.

let tokens = null; // {access, refresh}
let refreshing = null; // the one refresh in flight, shared by every caller
let refreshTimer = null;
const listeners = { expired: () => {} };

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.code || `HTTP_${status}`);
    this.status = status;
    this.code = problem?.code || (status >= 500 ? "SERVICE_UNAVAILABLE" : "UNKNOWN");
    this.problem = problem || {};
    this.retryAfter = retryAfter;
  }
}

// The session ended (revoked, expired, or its refresh was refused): log in again.
export class SessionExpired extends Error {}

// No answer at all: the request may or may not have been applied.
export class NetworkError extends Error {}

export function onSessionExpired(fn) {
  listeners.expired = fn;
}

export function signedIn() {
  return tokens !== null;
}

function remember(answer) {
  tokens = { access: answer.access_token, refresh: answer.refresh_token };
  clearTimeout(refreshTimer);
  // Refresh silently a minute before the access token expires.
  const inMs = Math.max((answer.expires_in - 60) * 1000, 5000);
  refreshTimer = setTimeout(() => {
    refresh().catch(() => {}); // a failure shows at the next call
  }, inMs);
}

export function forget() {
  tokens = null;
  clearTimeout(refreshTimer);
}

async function send(method, path, { body, headers = {}, auth = true } = {}) {
  const h = { Accept: "application/json, application/problem+json", ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (auth && tokens) h.Authorization = `Bearer ${tokens.access}`;
  try {
    return await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
  } catch {
    throw new NetworkError("no answer");
  }
}

async function refresh() {
  if (!tokens) throw new SessionExpired();
  if (!refreshing) {
    const presented = tokens.refresh;
    refreshing = (async () => {
      const resp = await send("POST", "/users/refresh", {
        body: { refresh_token: presented },
        auth: false,
      });
      if (resp.status === 200) {
        remember(await resp.json());
        return;
      }
      forget();
      throw new SessionExpired();
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function answer(resp) {
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (resp.ok) return data;
  const retryAfter = Number(resp.headers.get("Retry-After")) || null;
  throw new ApiError(resp.status, data, retryAfter);
}

// One call; on a 401 with a session, one silent refresh and one retry with the new token.
export async function call(method, path, { body, idempotencyKey, auth = true } = {}) {
  const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
  let resp = await send(method, path, { body, headers, auth });
  if (resp.status === 401 && auth) {
    try {
      await refresh();
    } catch (err) {
      if (err instanceof SessionExpired) listeners.expired();
      throw err;
    }
    resp = await send(method, path, { body, headers, auth });
    if (resp.status === 401) {
      forget();
      listeners.expired();
      throw new SessionExpired();
    }
  }
  return answer(resp);
}

// A file from the API (a statement as CSV or PDF), as a Blob; errors as for `call`.
export async function download(path, accept) {
  let resp = await send("GET", path, { headers: { Accept: accept } });
  if (resp.status === 401) {
    try {
      await refresh();
    } catch (err) {
      if (err instanceof SessionExpired) listeners.expired();
      throw err;
    }
    resp = await send("GET", path, { headers: { Accept: accept } });
  }
  if (!resp.ok) return answer(resp); // throws the problem
  return resp.blob();
}

export async function login(email, password) {
  const data = await answer(
    await send("POST", "/users/login", { body: { email, password }, auth: false }),
  );
  remember(data);
  return data.user;
}

export async function logout() {
  try {
    if (tokens) await send("POST", "/users/logout");
  } finally {
    forget();
  }
}
