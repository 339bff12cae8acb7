// The message view: headers, the text body, the HTML body in a sandboxed
// frame, attachments to download. Everything shown here came in by mail
// and is treated as hostile: text through text nodes only, HTML only
// inside <iframe sandbox="" srcdoc>, which runs no script, has an opaque
// origin (no access to this page or its storage), submits no form and
// opens no window. The frame also inherits the page's CSP, and the
// document gets a stricter one of its own.

import { h, fill, time, bytes, errorText } from './dom.js';
import { saveBlob } from './api.js';

// FRAME_CSP goes first in the srcdoc: no scripts, no network (remote
// images and fonts are trackers), inline styles and data: images only.
const FRAME_CSP =
  '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'">';

// htmlFrame returns a sandboxed frame showing html. The sandbox attribute
// is set before srcdoc and before the frame is in the document.
export function htmlFrame(html) {
  const frame = h('iframe', {
    id: 'msg-html',
    sandbox: '',
    referrerpolicy: 'no-referrer',
    title: 'HTML body (sandboxed: no scripts)',
  });
  frame.srcdoc = FRAME_CSP + html;
  return frame;
}

// renderMessage fills el with message m (GET /v1/messages/{id}).
export function renderMessage(el, client, m) {
  const panes = {};
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const addPane = (name, label, content) => {
    const tab = h('button', { type: 'button', class: 'tab', role: 'tab', 'data-pane': name }, label);
    tab.addEventListener('click', () => select(name));
    tabs.appendChild(tab);
    panes[name] = { tab, pane: h('div', { class: 'pane', id: 'pane-' + name }, content) };
  };
  const select = (name) => {
    for (const [n, p] of Object.entries(panes)) {
      p.pane.hidden = n !== name;
      p.tab.setAttribute('aria-selected', String(n === name));
    }
  };

  addPane('text', 'Text', h('pre', { id: 'msg-text', class: 'body' }, m.bodyText || ''));
  if (m.bodyHtml !== null && m.bodyHtml !== undefined) addPane('html', 'HTML', htmlFrame(m.bodyHtml));
  const headers = h('div', { id: 'msg-headers' }, h('p', { class: 'muted' }, 'Loading headers…'));
  addPane('headers', 'Headers', headers);

  const raw = h('button', { type: 'button', class: 'quiet small', id: 'msg-raw' }, 'Download .eml');
  raw.addEventListener('click', () => download(client, '/v1/messages/' + encodeURIComponent(m.id) + '/raw', m.id + '.eml', raw));
  tabs.appendChild(raw);

  const atts = h('ul', { id: 'msg-attachments', class: 'attachments' });
  for (const a of m.attachments || []) {
    const btn = h('button', { type: 'button', class: 'small' }, 'Download');
    btn.addEventListener('click', () => download(client, a.url, a.filename, btn));
    atts.appendChild(
      h('li', {}, h('span', { class: 'filename' }, a.filename), ' ', h('span', { class: 'muted' }, a.contentType + ', ' + bytes(a.sizeBytes)), ' ', btn),
    );
  }

  fill(
    el,
    h('h3', { id: 'msg-subject', class: 'subject' }, m.subject || '(no subject)'),
    h(
      'dl',
      { class: 'meta' },
      h('dt', {}, 'From'),
      h('dd', { id: 'msg-from' }, m.from),
      h('dt', {}, 'To'),
      h('dd', {}, m.to),
      (m.cc || []).length ? [h('dt', {}, 'Cc'), h('dd', {}, m.cc.join(', '))] : null,
      h('dt', {}, 'Received'),
      h('dd', {}, time(m.receivedAt, true)),
      h('dt', {}, 'Message'),
      h('dd', {}, h('code', {}, m.id), ' ', h('span', { class: 'muted' }, m.rfcMessageId || '')),
    ),
    tabs,
    Object.values(panes).map((p) => p.pane),
    (m.attachments || []).length ? [h('h4', {}, 'Attachments'), atts] : null,
  );
  select(panes.html ? 'html' : 'text');

  client
    .head('/v1/messages/' + encodeURIComponent(m.id) + '/raw')
    .then((rows) => {
      const body = h('tbody');
      for (const [name, value] of rows) body.appendChild(h('tr', {}, h('th', {}, name), h('td', {}, value)));
      fill(headers, h('table', { class: 'table headers' }, body));
    })
    .catch((e) => fill(headers, h('p', { class: 'muted' }, 'Headers are not available: ' + errorText(e))));
}

async function download(client, path, filename, btn) {
  if (!path.startsWith('/v1/')) return; // only this API's files
  btn.disabled = true;
  try {
    saveBlob(await client.blob(path), filename);
  } catch (e) {
    btn.title = errorText(e);
    btn.textContent = 'Failed';
  } finally {
    btn.disabled = false;
  }
}
