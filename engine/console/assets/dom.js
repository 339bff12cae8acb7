// DOM helpers. Nothing here parses markup: text goes in as text nodes and
// attributes through setAttribute, so a subject, an address or a filename
// that looks like HTML is shown, never run (see package console's doc).

// h builds an element: h('a', {class: 'x', href: '#y'}, 'text', child...).
// Attribute names starting with "on" are refused (handlers are attached
// with addEventListener by the caller); null and false attributes are
// left out; children that are strings or numbers become text nodes.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (/^on/i.test(name)) throw new Error('h: event handler attribute ' + name);
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// $ returns the element with id (it must exist: the page is static).
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error('no element #' + id);
  return el;
}

// fill replaces el's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// show shows or hides elements by their hidden attribute.
export function show(el, visible) {
  el.hidden = !visible;
}

// time renders an API time as a <time> with the local time shown and the
// exact UTC time as its title.
export function time(iso, withDate) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, String(iso));
  const text = withDate ? d.toLocaleString() : d.toLocaleTimeString();
  return h('time', { datetime: iso, title: iso }, text);
}

// bytes renders a size.
export function bytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1024 / 1024).toFixed(1) + ' MiB';
}

// num renders a count or a rate (a few significant digits).
export function num(x, digits) {
  if (x === null || x === undefined) return '—';
  if (Number.isInteger(x) && digits === undefined) return x.toLocaleString('en-US');
  return x.toFixed(digits === undefined ? 2 : digits);
}

// pill renders a status (pending, delivered, failed, ok...).
export function pill(status) {
  return h('span', { class: 'pill pill-' + String(status).replace(/[^a-z]/g, '') }, status);
}

// errorText is the message to show for a failed call.
export function errorText(err) {
  return err && err.message ? err.message : String(err);
}
