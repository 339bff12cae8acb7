// The live tail: one WebSocket on /v1/ws?token=<key> that subscribes to
// every inbox of the account, reconnects with exponential backoff and
// resumes with last_event_id, so events stored while it was away are
// replayed (PROTOCOL.md §6). Events may come twice (a replay overlapping a
// live push): they are passed on once per event_id.

// Backoff: the delay before reconnect attempt n (from 0) is drawn from
// [d/2, d] with d = min(MAX, BASE * 2^n); a connection that reached
// "subscribed" starts again from 0.
const BASE_MS = 500;
const MAX_MS = 30_000;
// After 4008 (too many connections) the account is at its cap: wait long.
const TOO_MANY_MS = 15_000;
const SEEN_MAX = 2000;

export function backoff(attempt, random = Math.random) {
  const d = Math.min(MAX_MS, BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(d / 2 + (random() * d) / 2);
}

export function wsURL(key) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return scheme + '//' + location.host + '/v1/ws?token=' + encodeURIComponent(key);
}

export class LiveTail {
  // onEvent(payload) gets each new event; onState(state, detail) is told
  // "connecting", "live", "reconnecting" (detail: {delay, code}),
  // "stopped" or "unauthorized"; onError(message) gets error frames.
  constructor(key, { onEvent, onState, onError }) {
    this.key = key;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onError = onError;
    this.ws = null;
    this.wanted = false;
    this.attempt = 0;
    this.timer = 0;
    this.lastEventId = '';
    this.seen = new Set();
  }

  get running() {
    return this.wanted;
  }

  start() {
    if (this.wanted) return;
    this.wanted = true;
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'console stopped the tail');
    this.onState('stopped');
  }

  connect() {
    this.onState('connecting');
    const ws = new WebSocket(wsURL(this.key));
    this.ws = ws;
    ws.addEventListener('open', () => {
      const sub = { type: 'subscribe' };
      if (this.lastEventId) sub.last_event_id = this.lastEventId;
      ws.send(JSON.stringify(sub));
    });
    ws.addEventListener('message', (m) => this.frame(m.data));
    ws.addEventListener('close', (e) => this.closed(ws, e));
  }

  frame(data) {
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      this.onError('the server sent a frame that is not JSON');
      return;
    }
    if (typeof f.event === 'string' && typeof f.event_id === 'string') {
      if (f.event_id > this.lastEventId) this.lastEventId = f.event_id;
      if (this.seen.has(f.event_id)) return;
      this.seen.add(f.event_id);
      if (this.seen.size > SEEN_MAX) this.seen.delete(this.seen.values().next().value);
      this.onEvent(f);
    } else if (f.type === 'subscribed') {
      this.attempt = 0;
      this.onState('live', { resumedAfter: this.lastEventId });
    } else if (f.type === 'error') {
      this.onError(String(f.message));
    }
  }

  closed(ws, e) {
    if (this.ws !== ws) return; // stopped, or replaced
    this.ws = null;
    if (!this.wanted) return;
    if (e.code === 4001) {
      // The key is wrong or revoked: reconnecting cannot help.
      this.wanted = false;
      this.onState('unauthorized', { reason: e.reason });
      return;
    }
    let delay = backoff(this.attempt++);
    if (e.code === 4008) delay = Math.max(delay, TOO_MANY_MS);
    this.onState('reconnecting', { delay, code: e.code, reason: e.reason });
    this.timer = setTimeout(() => {
      if (this.wanted) this.connect();
    }, delay);
  }
}
