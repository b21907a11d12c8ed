// The supervisor API over fetch: the session (cookie + CSRF token), the live snapshot and the
// agent state commands. Errors arrive as RFC 9457 problem documents and are thrown as ApiError.

const SESSION = "/api/v1/session";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.type = problem.type || "about:blank";
    this.title = problem.title || "";
    this.detail = problem.detail || "";
  }
}

let csrfToken = null;

async function request(method, path, body) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, { title: "Network error", detail: String(e.message || e) });
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, json && typeof json === "object" ? json : { detail: text });
  }
  return json;
}

/// Who is signed in: {user, role, permissions, csrf_token, expires_at}, or null.
export async function currentSession() {
  try {
    const s = await request("GET", SESSION);
    csrfToken = s.csrf_token || null;
    return s;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export async function signIn(user, password) {
  const s = await request("POST", SESSION, { user, password });
  csrfToken = s.csrf_token || null;
  return s;
}

/// The agent desk: sign in with an extension and its SIP password (role agent).
export async function agentSignIn(extension, password) {
  const s = await request("POST", `${SESSION}/agent`, { extension, password });
  csrfToken = s.csrf_token || null;
  return s;
}

/// Any other API call with the session's CSRF token (the agent desk's `js/agent/desk-api.js`).
export function apiRequest(method, path, body) {
  return request(method, path, body);
}

export async function signOut() {
  try {
    await request("DELETE", SESSION);
  } finally {
    csrfToken = null;
  }
}

export function snapshot() {
  return request("GET", "/api/v1/live/snapshot");
}

/// Rings the signed-in supervisor's SIP phone to join call `callId` in `mode` ("listen" |
/// "whisper" | "barge"): {request_id, call_id, mode, extension, ring_timeout_s}.
export function monitorCall(callId, mode) {
  return request("POST", `/api/v1/calls/${encodeURIComponent(callId)}/monitor`, { mode });
}

/// `state`: "ready" | "not_ready" | "logged_out"; `reason` only for not_ready.
export function setAgentState(extension, state, reason) {
  const body = reason ? { state, reason } : { state };
  return request("POST", `/api/v1/agents/${encodeURIComponent(extension)}/state`, body);
}
