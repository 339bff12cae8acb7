// The operator view: GET /admin/v1/stats every 2 s (connections,
// rates the server computes over a window, queues, overdue attempts,
// connections per account) and GET /admin/v1/events?status=failed across
// accounts every 10 s, while the view is visible.

import { $, h, fill, show, time, num, errorText } from './dom.js';
import { Client } from './api.js';

const STATS_EVERY_MS = 2000;
const FAILED_EVERY_MS = 10_000;
const ACCOUNTS_EVERY_MS = 30_000;
const FAILED_PAGE = 20;

export class OperatorView {
  constructor(token, onUnauthorized) {
    this.client = new Client(token);
    this.onUnauthorized = onUnauthorized;
    this.abort = new AbortController();
    this.visible = false;
    this.timers = {};
    this.gens = {};
    this.accounts = new Map(); // id -> name
    this.accountsAt = 0;
    this.failedOffset = 0;
    this.stats = null;
  }

  start() {
    const on = (id, fn) => $(id).addEventListener('click', fn, { signal: this.abort.signal });
    on('op-failed-prev', () => {
      this.failedOffset = Math.max(0, this.failedOffset - FAILED_PAGE);
      this.loop('failed', () => this.loadFailed(), FAILED_EVERY_MS);
    });
    on('op-failed-next', () => {
      this.failedOffset += FAILED_PAGE;
      this.loop('failed', () => this.loadFailed(), FAILED_EVERY_MS);
    });
  }

  setVisible(v) {
    if (v === this.visible) return;
    this.visible = v;
    if (v) {
      this.loop('stats', () => this.loadStats(), STATS_EVERY_MS);
      this.loop('failed', () => this.loadFailed(), FAILED_EVERY_MS);
    } else {
      for (const [name, t] of Object.entries(this.timers)) {
        clearTimeout(t);
        this.gens[name] = (this.gens[name] || 0) + 1;
      }
      this.timers = {};
    }
  }

  destroy() {
    this.setVisible(false);
    this.abort.abort();
    for (const id of ['op-accounts-table', 'op-failed', 'op-failed-total', 'op-failed-page', 'op-accounts-more', 'op-updated']) fill($(id));
  }

  // loop runs fn now and then every ms after it finished, while visible;
  // a new loop of the same name replaces the old one (even mid-call).
  loop(name, fn, ms) {
    clearTimeout(this.timers[name]);
    this.gens[name] = (this.gens[name] || 0) + 1;
    const gen = this.gens[name];
    const run = async () => {
      if (!this.visible || gen !== this.gens[name]) return;
      await fn();
      if (this.visible && gen === this.gens[name]) this.timers[name] = setTimeout(run, ms);
    };
    run();
  }

  failed(err) {
    if (err.status === 401 || err.status === 403) {
      this.onUnauthorized(errorText(err));
      return;
    }
    const el = $('op-error');
    el.textContent = errorText(err);
    show(el, true);
  }

  async loadAccounts() {
    // The names of up to 100 accounts; those with connections that are
    // not among them get their name from the stats answer.
    const page = await this.client.get('/admin/v1/accounts?limit=100');
    this.accounts = new Map(page.data.map((a) => [a.id, a.name]));
    this.accountsTotal = page.total;
    this.accountsAt = Date.now();
  }

  async loadStats() {
    let s;
    try {
      if (Date.now() - this.accountsAt > ACCOUNTS_EVERY_MS) await this.loadAccounts();
      s = await this.client.get('/admin/v1/stats');
    } catch (e) {
      this.failed(e);
      return;
    }
    show($('op-error'), false);
    this.stats = s;
    for (const a of s.perAccount) if (a.name) this.accounts.set(a.accountId, a.name);
    const r = s.rates;
    const set = (id, v) => {
      $(id).textContent = v;
    };
    fill($('op-updated'), 'updated ', time(s.at));
    set('op-connections', num(s.connections.registered));
    set('op-subscribed', num(s.connections.subscribed) + ' subscribed · sockets open: ' + num(s.connections.open));
    set('op-accounts', num(s.accounts));
    set('op-rate-stored', r ? num(r.eventsStored) : '—');
    set('op-stored', num(s.counters.eventsStored) + ' since start');
    set('op-rate-deliveries', r ? num(r.deliveries) : '—');
    set(
      'op-rate-channels',
      r ? 'websocket ' + num(r.attempts.websocket.ok) + ' · webhook ' + num(r.attempts.webhook.ok) : 'websocket — · webhook —',
    );
    set('op-rate-failed', r ? num(r.failedAttempts) : '—');
    set('op-failed-count', 'events failed since start: ' + num(s.counters.eventsFailed));
    set('op-webhook-queue', num(s.queues.webhook.depth));
    set(
      'op-queues',
      'of ' + num(s.queues.webhook.capacity) + ' · dispatch ' + num(s.queues.dispatch.depth) + ' · writer ' +
        num(s.queues.writer.depth) + ' · in flight ' + num(s.queues.inFlight),
    );
    set('op-overdue', num(s.due.overdue));
    set(
      'op-due',
      num(s.due.scheduled) + ' scheduled · ' + num(s.due.due) + ' due now · late by > ' + s.due.overdueAfterMs / 1000 + ' s',
    );
    set(
      'op-window',
      r
        ? 'Rates over the last ' + num(r.windowSeconds, 0) + ' s (asked: ' + s.windowSeconds + ' s), computed by the server from its counters.'
        : 'Rates appear from the second refresh on.',
    );
    this.renderAccounts(s);
  }

  renderAccounts(s) {
    const conns = new Map(s.perAccount.map((a) => [a.accountId, a]));
    const ids = new Set([...conns.keys(), ...this.accounts.keys()]);
    const rows = [...ids].map((id) => ({
      id,
      name: this.accounts.get(id) || '',
      connections: conns.has(id) ? conns.get(id).connections : 0,
      subscribed: conns.has(id) ? conns.get(id).subscribed : 0,
    }));
    rows.sort((a, b) => b.connections - a.connections || a.name.localeCompare(b.name));
    fill(
      $('op-accounts-table'),
      rows.map((a) =>
        h(
          'tr',
          { 'data-account-id': a.id },
          h('td', {}, a.name),
          h('td', {}, h('code', { class: 'id' }, a.id)),
          h('td', { class: 'n conns' }, a.connections),
          h('td', { class: 'n subs' }, a.subscribed),
        ),
      ),
    );
    const more = [];
    if (this.accountsTotal > this.accounts.size) more.push('Names of the first ' + this.accounts.size + ' of ' + this.accountsTotal + ' accounts shown.');
    if (s.perAccountTruncated) more.push('Only the ' + s.perAccount.length + ' accounts with the most connections are counted.');
    $('op-accounts-more').textContent = more.join(' ');
  }

  async loadFailed() {
    let page;
    try {
      page = await this.client.get('/admin/v1/events?status=failed&limit=' + FAILED_PAGE + '&offset=' + this.failedOffset);
    } catch (e) {
      this.failed(e);
      return;
    }
    if (page.data.length === 0 && this.failedOffset > 0 && page.total > 0) {
      this.failedOffset = Math.max(0, Math.floor((page.total - 1) / FAILED_PAGE) * FAILED_PAGE);
      return this.loadFailed();
    }
    fill(
      $('op-failed'),
      page.data.length ? null : h('tr', {}, h('td', { colspan: '5', class: 'muted' }, 'No failed events.')),
      page.data.map((e) =>
        h(
          'tr',
          { 'data-event-id': e.id },
          h('td', {}, time(e.occurredAt, true)),
          h('td', {}, h('code', { class: 'id' }, e.id)),
          h('td', { title: e.accountId }, this.accounts.get(e.accountId) || e.accountId),
          h('td', { class: 'n' }, e.attempts),
          h('td', { class: 'err' }, e.lastError || ''),
        ),
      ),
    );
    $('op-failed-total').textContent = '(' + page.total + ')';
    $('op-failed-page').textContent = page.total ? this.failedOffset + 1 + '–' + (this.failedOffset + page.data.length) : '';
    $('op-failed-prev').disabled = this.failedOffset === 0;
    $('op-failed-next').disabled = this.failedOffset + page.data.length >= page.total;
  }
}
