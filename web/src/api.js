// The playground's side of microbox's API: requests with the API key the
// user gave, and every failure turned into a sentence.

const keyStore = 'microbox.apiKey';

// The key: remembered in localStorage only when asked, else for the tab.
export function apiKey() {
  return sessionStorage.getItem(keyStore) || localStorage.getItem(keyStore) || '';
}

export function setAPIKey(key, remember) {
  sessionStorage.setItem(keyStore, key);
  if (remember) localStorage.setItem(keyStore, key);
  else localStorage.removeItem(keyStore);
}

// APIError is a failed request, with words for a person.
export class APIError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// fieldWords lists a 422's fields and messages: "tests[0].stdin: is not…".
function fieldWords(body) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return '';
  const parts = [];
  for (const [field, msgs] of Object.entries(body)) {
    if (field === 'error') continue;
    parts.push(`${field} ${Array.isArray(msgs) ? msgs.join('; ') : msgs}`);
  }
  return parts.join('. ');
}

// describe turns an HTTP failure into what went wrong and what to do.
export function describe(status, body) {
  const said = (body && typeof body === 'object' && (body.error || body.message)) || (typeof body === 'string' ? body : '');
  switch (status) {
    case 401:
      return apiKey()
        ? 'The server did not accept this API key. Check it and enter it again.'
        : 'This server needs an API key: enter yours above.';
    case 413:
      return `The program is too large for this server${said ? `: ${said}` : ''}.`;
    case 422:
      return `The server refused the request: ${fieldWords(body) || said}.`;
    case 429:
    case 503:
      return `The server is busy${said ? ` (${said})` : ''}. Try again in a moment.`;
    case 502:
    case 504:
      return 'The server did not answer in time. Try again.';
  }
  if (status >= 500) return `The server failed${said ? `: ${said}` : ''}. Try again, or tell whoever runs it.`;
  return said ? `The request failed: ${said}` : `The request failed (HTTP ${status}).`;
}

// request sends a JSON request and returns the decoded answer, or throws
// an APIError.
export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  const key = apiKey();
  if (key) headers['X-API-Key'] = key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new APIError(`Could not reach the server (${err.message}). Is it running?`, 0);
  }
  const text = await resp.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  if (!resp.ok) throw new APIError(describe(resp.status, data), resp.status);
  return data;
}

function base64url(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// socket opens one of the API's WebSockets. A browser cannot send headers
// with it, so the key goes as a subprotocol next to "microbox", which the
// server answers with.
export function socket(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const protocols = ['microbox'];
  const key = apiKey();
  if (key) protocols.push(`microbox.key.${base64url(key)}`);
  return new WebSocket(url, protocols);
}

// closeWords says why a socket closed before the program ended.
export function closeWords(ev) {
  if (ev.code === 1006) {
    return 'The connection to the server was lost (or refused: check the API key). The program was stopped.';
  }
  return `The server closed the connection (${ev.code}${ev.reason ? `: ${ev.reason}` : ''}).`;
}
