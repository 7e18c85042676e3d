// The gateway's JSON API, called with the API key the user entered. The key lives in this tab's
// sessionStorage only: closing the tab forgets it.

const KEY = 'shoal.apiKey';

/** The key in use, or null. */
export function apiKey() {
  return sessionStorage.getItem(KEY);
}

/** Keeps `key` for this tab. */
export function rememberKey(key) {
  sessionStorage.setItem(KEY, key);
}

/** Forgets the key. */
export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** An error answer of the API: `{"error": {"code", "message", "field"}}`. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

async function request(method, path, key = apiKey()) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${key ?? ''}` },
      cache: 'no-cache',
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', `the gateway cannot be reached (${e.message})`);
  }
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error ?? {};
    } catch {
      // Not the gateway's JSON shape (a proxy's page): the status says enough.
    }
    throw new ApiError(response.status, error.code ?? `http_${response.status}`,
      error.message ?? `${method} ${path} answered ${response.status}`, error.field);
  }
  return response;
}

/** GET `path` as JSON. */
export async function getJson(path, key) {
  return (await request('GET', path, key)).json();
}

/** GET `path` as a Blob (a job's file). */
export async function getBlob(path) {
  return (await request('GET', path)).blob();
}

/** GET `path` as text. */
export async function getText(path) {
  return (await request('GET', path)).text();
}

/** DELETE `path`, answering JSON. */
export async function remove(path) {
  return (await request('DELETE', path)).json();
}

/** The URL path of one of a job's files: `tree` is `output`, `inputs/0`, `stdout`, … */
export function filePath(jobId, tree, path = '') {
  const encoded = path.split('/').filter(Boolean).map(encodeURIComponent).join('/');
  return `/v1/jobs/${encodeURIComponent(jobId)}/files/${tree}${encoded ? `/${encoded}` : ''}`;
}
