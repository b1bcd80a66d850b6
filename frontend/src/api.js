// The workspace's calls to the REST API: session auth, the CSRF token from its cookie, JSON both ways.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

// The request never got an answer (offline, server down, aborted by a proxy): safe to retry.
export class NetworkError extends Error {}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function describe(status, data) {
  if (data && typeof data === "object") {
    if (typeof data.detail === "string") return data.detail;
    // DRF field errors: {"boxes": [{"bbox": ["..."]}]} -> the first message found.
    const first = (value) => {
      if (typeof value === "string") return value;
      if (Array.isArray(value)) for (const v of value) { const m = first(v); if (m) return m; }
      else if (value && typeof value === "object") for (const v of Object.values(value)) { const m = first(v); if (m) return m; }
      return "";
    };
    const message = first(data);
    if (message) return message;
  }
  if (status === 403) return "You are not allowed to do this (is your session still open? Reload the page to log in).";
  if (status >= 500) return `The server failed (${status}).`;
  return `The request failed (${status}).`;
}

// Returns {status, data}; throws ApiError for 4xx/5xx answers, NetworkError when there is no answer,
// and lets an AbortError through untouched.
export async function request(method, url, { body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method, headers, signal, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new NetworkError("Could not reach the server.");
  }
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  }
  if (!response.ok) {
    if (response.status >= 502 && response.status <= 504) throw new NetworkError(`The server is unreachable (${response.status}).`);
    throw new ApiError(response.status, describe(response.status, data));
  }
  return { status: response.status, data };
}
