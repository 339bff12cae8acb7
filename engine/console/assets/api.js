// The HTTP API client: every call sends the bearer credential it was
// made with (an API key or the admin token) and turns the API's error
// answers ({"error","message"}) into exceptions with that message.

export class APIError extends Error {
  constructor(status, code, message) {
    super(message || code || 'HTTP ' + status);
    this.status = status;
    this.code = code;
  }
}

export class Client {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, body) {
    const init = { method, headers: { Authorization: 'Bearer ' + this.token }, cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new APIError(0, 'network', 'cannot reach the server: ' + e.message);
    }
    if (resp.status === 204) return null;
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      if (!resp.ok) throw new APIError(resp.status, 'http', 'HTTP ' + resp.status);
      throw new APIError(resp.status, 'bad_json', 'the server sent something that is not JSON');
    }
    if (!resp.ok) throw new APIError(resp.status, data && data.error, data && data.message);
    return data;
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body) {
    return this.request('POST', path, body);
  }

  // blob fetches a file (an attachment, the raw message) with the
  // credential, which a plain link cannot send.
  async blob(path) {
    const resp = await fetch(path, { headers: { Authorization: 'Bearer ' + this.token }, cache: 'no-store' });
    if (!resp.ok) {
      let msg = 'HTTP ' + resp.status;
      try {
        msg = (await resp.json()).message || msg;
      } catch {
        // not JSON: keep the status
      }
      throw new APIError(resp.status, 'http', msg);
    }
    return resp.blob();
  }

  // head reads the header block of the raw message at path: at most
  // limit bytes, stopping at the first empty line (the rest of a large
  // message is not downloaded).
  async head(path, limit = 64 * 1024) {
    const resp = await fetch(path, { headers: { Authorization: 'Bearer ' + this.token }, cache: 'no-store' });
    if (!resp.ok || !resp.body) throw new APIError(resp.status, 'http', 'HTTP ' + resp.status);
    const reader = resp.body.getReader();
    let size = 0;
    let text = '';
    const decoder = new TextDecoder('utf-8');
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      text += decoder.decode(value, { stream: true });
      const end = text.search(/\r?\n\r?\n/);
      if (end >= 0) {
        text = text.slice(0, end);
        break;
      }
      if (size >= limit) break;
    }
    reader.cancel().catch(() => {});
    return parseHeaders(text);
  }
}

// parseHeaders turns an RFC 5322 header block into [name, value] pairs,
// unfolding continuation lines.
export function parseHeaders(block) {
  const out = [];
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && out.length > 0) {
      out[out.length - 1][1] += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon > 0) out.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return out;
}

// saveBlob offers a blob as a download named filename.
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
