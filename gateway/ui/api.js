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

/**
 * Follows the Server-Sent Events at `path`, calling `onEvent(name, data)` for each, until
 * stopped. Read with fetch: an EventSource cannot send the key. After an error or the stream's
 * end it connects again after `retryMs`, sending the last event's id (`Last-Event-ID`), so a
 * job's stream resumes where it was; a 204 (nothing more will come) ends it.
 */
export function follow(path, onEvent, retryMs = 2000) {
  const controller = new AbortController();
  let stopped = false;
  let lastId = null;
  const read = async () => {
    const headers = { Authorization: `Bearer ${apiKey() ?? ''}` };
    if (lastId !== null) headers['Last-Event-ID'] = lastId;
    const response = await fetch(path, { headers, signal: controller.signal, cache: 'no-store' });
    if (response.status === 204) return true;
    if (!response.ok) throw new Error(`${path} answered ${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          // A line starting with ':' is a comment (the keep-alives).
          const colon = line.indexOf(':');
          if (colon <= 0) continue;
          const [field, text] = [line.slice(0, colon), line.slice(colon + 1).replace(/^ /, '')];
          if (field === 'event') name = text;
          else if (field === 'data') data += text;
          else if (field === 'id') lastId = text;
        }
        if (data) onEvent(name, data);
      }
    }
  };
  (async () => {
    while (!stopped) {
      try {
        if (await read()) return;
      } catch {
        // Unreachable, refused or cut: connect again below (the views' polls show errors).
      }
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  })();
  return { stop: () => { stopped = true; controller.abort(); } };
}
