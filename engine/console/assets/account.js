// The account view: inboxes and webhook settings, the live tail, the
// stored events, one event's delivery attempts and message, a form that
// posts a test message, and client snippets. It uses the public /v1 API
// with the signed-in key and nothing else.

import { $, h, fill, show, time, pill, errorText } from './dom.js';
import { Client } from './api.js';
import { LiveTail } from './tail.js';
import { renderMessage } from './message.js';
import { pythonSnippet, nodeSnippet } from './snippets.js';

const TAIL_MAX = 200; // items kept in the live tail
const EVENTS_PAGE = 20;
const PENDING_REFRESH_MS = 2000; // a pending event's attempts, while shown
const TAIL_KEY = 'mailwire.tail'; // "1" while the tail runs (survives a reload)
const LAST_KEY = 'mailwire.tail.last'; // the newest event id the tail saw

export class AccountView {
  constructor(key, onUnauthorized) {
    this.key = key;
    this.client = new Client(key);
    this.onUnauthorized = onUnauthorized;
    this.abort = new AbortController();
    this.inboxes = new Map(); // id -> inbox
    this.eventsOffset = 0;
    this.detailSeq = 0;
    this.detailID = '';
    this.refreshTimer = 0;
    this.pendingTimer = 0;
    this.tail = new LiveTail(key, {
      onEvent: (ev) => this.tailEvent(ev),
      onState: (state, detail) => this.tailState(state, detail),
      onError: (msg) => this.tailError(msg),
    });
  }

  on(id, type, fn) {
    $(id).addEventListener(type, fn, { signal: this.abort.signal });
  }

  start() {
    this.on('inboxes-refresh', 'click', () => this.loadInboxes());
    this.on('tail-toggle', 'click', () => this.toggleTail());
    this.on('events-status', 'change', () => {
      this.eventsOffset = 0;
      this.loadEvents();
    });
    this.on('events-refresh', 'click', () => this.loadEvents());
    this.on('events-prev', 'click', () => {
      this.eventsOffset = Math.max(0, this.eventsOffset - EVENTS_PAGE);
      this.loadEvents();
    });
    this.on('events-next', 'click', () => {
      this.eventsOffset += EVENTS_PAGE;
      this.loadEvents();
    });
    this.on('form-send', 'submit', (e) => {
      e.preventDefault();
      this.send();
    });
    this.on('copy-python', 'click', () => copy($('snippet-python'), $('copy-python')));
    this.on('copy-node', 'click', () => copy($('snippet-node'), $('copy-node')));

    $('snippet-python').textContent = pythonSnippet(this.key);
    $('snippet-node').textContent = nodeSnippet(this.key);
    fill($('tail-list'));
    fill($('detail'), h('p', { class: 'muted' }, 'Pick an event from the live tail or the list.'));
    this.tail.lastEventId = sessionStorage.getItem(LAST_KEY) || '';
    this.tailState('stopped');
    this.loadInboxes();
    this.loadEvents();
    if (sessionStorage.getItem(TAIL_KEY) === '1') this.tail.start();
  }

  // destroy stops everything and empties the view: nothing of the
  // account (the snippets hold its key) stays in the page.
  destroy() {
    this.abort.abort();
    this.tail.stop();
    clearTimeout(this.refreshTimer);
    clearTimeout(this.pendingTimer);
    this.detailSeq++;
    sessionStorage.removeItem(TAIL_KEY);
    sessionStorage.removeItem(LAST_KEY);
    for (const id of ['inbox-list', 'send-inbox', 'send-result', 'tail-list', 'tail-error', 'events-list', 'events-total', 'detail', 'snippet-python', 'snippet-node']) {
      fill($(id));
    }
    fill($('account-webhook'), '—');
  }

  // failed handles an API error of a background call: a rejected key
  // signs the tab out; anything else is shown where the call belongs.
  failed(err, where) {
    if (err.status === 401) {
      this.onUnauthorized();
      return;
    }
    fill(where, h('span', { class: 'error' }, errorText(err)));
  }

  // Inboxes and webhook settings.

  async loadInboxes() {
    const list = $('inbox-list');
    let inboxes, total;
    try {
      ({ data: inboxes, total } = await this.client.get('/v1/inboxes?limit=100'));
    } catch (e) {
      this.failed(e, list);
      return;
    }
    this.inboxes = new Map(inboxes.map((i) => [i.id, i]));
    fill(
      list,
      inboxes.length ? null : h('li', { class: 'muted' }, 'No inboxes yet (POST /v1/inboxes).'),
      inboxes.map((i) =>
        h(
          'li',
          { 'data-inbox-id': i.id },
          h('strong', { class: 'address' }, i.address),
          i.displayName ? h('span', { class: 'muted' }, ' · ' + i.displayName) : null,
          h('br'),
          h('code', { class: 'id' }, i.id),
          h('br'),
          h('span', { class: 'muted' }, 'Webhook: '),
          i.webhookUrl ? h('code', { class: 'url' }, i.webhookUrl) : h('span', { class: 'muted' }, 'the account webhook, if any'),
        ),
      ),
      total > inboxes.length ? h('li', { class: 'muted' }, 'The first ' + inboxes.length + ' of ' + total + ' inboxes are shown.') : null,
    );
    const select = $('send-inbox');
    const chosen = select.value;
    fill(
      select,
      inboxes.map((i) => h('option', { value: i.id, selected: i.id === chosen }, i.address)),
    );
    try {
      const wh = await this.client.get('/v1/webhook');
      fill($('account-webhook'), h('code', { class: 'url' }, wh.url));
    } catch (e) {
      if (e.status === 404) fill($('account-webhook'), 'not set');
      else this.failed(e, $('account-webhook'));
    }
  }

  address(inboxID) {
    const i = this.inboxes.get(inboxID);
    return i ? i.address : inboxID;
  }

  // The live tail.

  toggleTail() {
    if (this.tail.running) {
      this.tail.stop();
      sessionStorage.removeItem(TAIL_KEY);
    } else {
      sessionStorage.setItem(TAIL_KEY, '1');
      show($('tail-error'), false);
      this.tail.start();
    }
  }

  tailState(state, detail) {
    const el = $('tail-status');
    el.dataset.state = state;
    let text = state;
    if (state === 'connecting') text = 'connecting…';
    if (state === 'live') text = detail && detail.resumedAfter ? 'live (resumed)' : 'live';
    if (state === 'reconnecting') {
      text = 'reconnecting in ' + (detail.delay / 1000).toFixed(1) + ' s (closed ' + detail.code + ')';
    }
    if (state === 'unauthorized') {
      text = 'key rejected';
      sessionStorage.removeItem(TAIL_KEY);
      this.tailError('The server rejected the API key (revoked?): sign in again.');
    }
    el.textContent = text;
    $('tail-toggle').textContent = this.tail.running ? 'Stop' : 'Start live tail';
  }

  tailError(msg) {
    const el = $('tail-error');
    el.textContent = msg;
    show(el, true);
  }

  tailEvent(ev) {
    sessionStorage.setItem(LAST_KEY, this.tail.lastEventId);
    const m = ev.message || {};
    const item = h(
      'li',
      { class: 'event new', 'data-event-id': ev.event_id, tabindex: '0' },
      h('div', { class: 'line' }, h('span', { class: 'subject' }, m.subject || '(no subject)'), h('span', { class: 't' }, time(ev.occurred_at))),
      h(
        'div',
        { class: 'line' },
        h('span', { class: 'from' }, m.from || ''),
        h('span', { class: 'muted inbox' }, this.address(ev.inbox_id) + ' · attempt ' + ev.attempt),
      ),
    );
    this.clickable(item, ev.event_id);
    const list = $('tail-list');
    list.prepend(item);
    while (list.children.length > TAIL_MAX) list.lastElementChild.remove();
    // A new event may change the stored list (and the one shown).
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      this.loadEvents();
      if (this.detailID === ev.event_id) this.refreshEvent(ev.event_id);
    }, 400);
  }

  clickable(item, eventID) {
    const open = () => this.showEvent(eventID);
    item.addEventListener('click', open);
    item.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') open();
    });
  }

  // Stored events.

  async loadEvents() {
    const status = $('events-status').value;
    const q = new URLSearchParams({ limit: String(EVENTS_PAGE), offset: String(this.eventsOffset) });
    if (status) q.set('status', status);
    const list = $('events-list');
    let page;
    try {
      page = await this.client.get('/v1/events?' + q);
    } catch (e) {
      this.failed(e, list);
      return;
    }
    fill(
      list,
      page.data.length ? null : h('li', { class: 'muted' }, 'No events.'),
      page.data.map((e) => {
        const item = h(
          'li',
          { class: 'event', 'data-event-id': e.id, 'data-status': e.status, tabindex: '0' },
          h('div', { class: 'line' }, h('span', {}, pill(e.status), ' ', h('span', { class: 'inbox' }, this.address(e.inboxId))), h('span', { class: 't' }, time(e.occurredAt))),
          h(
            'div',
            { class: 'line' },
            h('code', { class: 'id' }, e.id),
            h('span', { class: 'muted' }, e.attempts + (e.attempts === 1 ? ' attempt' : ' attempts')),
          ),
        );
        this.clickable(item, e.id);
        return item;
      }),
    );
    const from = page.total ? this.eventsOffset + 1 : 0;
    $('events-total').textContent = from + '–' + (this.eventsOffset + page.data.length) + ' of ' + page.total;
    $('events-prev').disabled = this.eventsOffset === 0;
    $('events-next').disabled = this.eventsOffset + page.data.length >= page.total;
  }

  // One event: its attempts, a redeliver button, its message. While the
  // event is pending its part of the panel is refreshed every few
  // seconds (attempts are recorded after the frame went out).

  async showEvent(id) {
    const seq = ++this.detailSeq;
    this.detailID = id;
    clearTimeout(this.pendingTimer);
    for (const el of document.querySelectorAll('.events li.selected')) el.classList.remove('selected');
    for (const el of document.querySelectorAll('.events li[data-event-id="' + CSS.escape(id) + '"]')) el.classList.add('selected');
    const eventEl = h('div', { id: 'detail-event' }, h('p', { class: 'muted' }, 'Loading the event…'));
    const msgEl = h('div', { class: 'message', id: 'detail-message' });
    fill($('detail'), eventEl, msgEl);
    const d = await this.refreshEvent(id, seq);
    if (!d) return;
    const msgID = d.event && d.event.message && d.event.message.id;
    if (!msgID) {
      fill(msgEl, h('p', { class: 'muted' }, 'This event has no message.'));
      return;
    }
    fill(msgEl, h('h2', {}, 'Message'), h('p', { class: 'muted' }, 'Loading the message…'));
    try {
      const m = await this.client.get('/v1/messages/' + encodeURIComponent(msgID));
      if (seq !== this.detailSeq) return;
      const body = h('div');
      fill(msgEl, h('h2', {}, 'Message'), body);
      renderMessage(body, this.client, m);
    } catch (e) {
      if (seq === this.detailSeq) this.failed(e, msgEl);
    }
  }

  // refreshEvent (re)renders the shown event's status and attempts and
  // returns the event, or null when another event is shown by now.
  async refreshEvent(id, seq = this.detailSeq) {
    let d;
    try {
      d = await this.client.get('/v1/events/' + encodeURIComponent(id));
    } catch (e) {
      if (seq === this.detailSeq) this.failed(e, $('detail-event'));
      return null;
    }
    if (seq !== this.detailSeq) return null;
    fill($('detail-event'), this.eventHeader(d, id), this.attemptsTable(d.attempts));
    clearTimeout(this.pendingTimer);
    if (d.status === 'pending') {
      this.pendingTimer = setTimeout(() => {
        if (seq === this.detailSeq) this.refreshEvent(id, seq);
      }, PENDING_REFRESH_MS);
    }
    return d;
  }

  eventHeader(d, id) {
    const ev = d.event || {};
    const redeliver = h('button', { type: 'button', id: 'redeliver' }, 'Redeliver');
    const before = (d.attempts || []).length;
    redeliver.addEventListener('click', () => this.redeliver(id, before, redeliver));
    const st = pill(d.status);
    st.id = 'detail-status';
    st.dataset.status = d.status;
    return h(
      'div',
      {},
      h('h2', {}, 'Event ', h('code', { id: 'detail-id' }, id)),
      h(
        'dl',
        { class: 'meta' },
        h('dt', {}, 'Status'),
        h('dd', {}, st, d.deliveredVia ? ' via ' + d.deliveredVia : ''),
        h('dt', {}, 'Inbox'),
        h('dd', {}, this.address(ev.inbox_id)),
        h('dt', {}, 'Occurred'),
        h('dd', {}, time(ev.occurred_at, true)),
        h('dt', {}, 'Next attempt'),
        h('dd', {}, time(d.nextAttemptAt, true)),
        h('dt', {}, 'Acked'),
        h('dd', {}, time(d.ackedAt, true)),
      ),
      d.status === 'failed' ? h('p', {}, redeliver, ' ', h('span', { class: 'muted' }, 'starts a new delivery cycle')) : null,
      h('p', { id: 'redeliver-result', class: 'muted', role: 'status' }),
    );
  }

  attemptsTable(attempts) {
    const body = h('tbody');
    for (const a of attempts || []) {
      body.appendChild(
        h(
          'tr',
          { 'data-n': a.n, 'data-ok': String(a.ok) },
          h('td', { class: 'n' }, a.n),
          h('td', {}, time(a.at)),
          h('td', {}, a.channel),
          h('td', {}, pill(a.ok ? 'ok' : 'failed')),
          h('td', { class: 'n' }, a.httpStatus || ''),
          h('td', { class: 'err' }, a.error || ''),
          h('td', { class: 'n' }, a.durationMs + ' ms'),
        ),
      );
    }
    return h(
      'div',
      {},
      h('h3', {}, 'Delivery attempts'),
      (attempts || []).length
        ? h(
            'table',
            { class: 'table', id: 'attempts' },
            h('thead', {}, h('tr', {}, ['#', 'At', 'Channel', 'Result', 'HTTP', 'Error', 'Duration'].map((t) => h('th', {}, t)))),
            body,
          )
        : h('p', { class: 'muted', id: 'attempts' }, 'No attempt yet.'),
    );
  }

  // redeliver starts a new cycle, then waits (up to 10 s) for its first
  // attempt to be recorded: the attempt count passes before.
  async redeliver(id, before, btn) {
    btn.disabled = true;
    const out = $('redeliver-result');
    try {
      await this.client.post('/v1/events/' + encodeURIComponent(id) + '/redeliver');
    } catch (e) {
      btn.disabled = false;
      this.failed(e, out);
      return;
    }
    out.textContent = 'Redelivering…';
    const seq = this.detailSeq;
    for (let i = 0; i < 40 && seq === this.detailSeq; i++) {
      await new Promise((r) => setTimeout(r, 250));
      let d;
      try {
        d = await this.client.get('/v1/events/' + encodeURIComponent(id));
      } catch {
        continue;
      }
      if (d.attempts.length > before) break;
    }
    if (seq === this.detailSeq) this.refreshEvent(id, seq);
    this.loadEvents();
  }

  // The test message form (POST /v1/inboxes/{id}/inbound, JSON form).

  async send() {
    const inbox = $('send-inbox').value;
    const out = $('send-result');
    if (!inbox) {
      fill(out, h('span', { class: 'error' }, 'Create an inbox first.'));
      return;
    }
    const body = { from: $('send-from').value, subject: $('send-subject').value, text: $('send-text').value };
    const html = $('send-html').value;
    if (html.trim()) body.html = html;
    try {
      const r = await this.client.post('/v1/inboxes/' + encodeURIComponent(inbox) + '/inbound', body);
      fill(out, 'Stored ', h('code', { id: 'send-message-id' }, r.messageId), ' as event ', h('code', { id: 'send-event-id' }, r.eventId), '.');
      this.loadEvents();
    } catch (e) {
      this.failed(e, out);
    }
  }
}

// copy puts a snippet on the clipboard; where the Clipboard API is not
// available (plain HTTP on a non-local address) it selects the text.
async function copy(pre, btn) {
  try {
    await navigator.clipboard.writeText(pre.textContent);
    btn.textContent = 'Copied';
  } catch {
    const range = document.createRange();
    range.selectNodeContents(pre);
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    btn.textContent = 'Selected: press Ctrl+C';
  }
  setTimeout(() => {
    btn.textContent = 'Copy';
  }, 2000);
}
