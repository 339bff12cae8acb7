// The console's entry point: two views chosen by the URL's fragment
// (#account, the default, and #operator), each with its own credential in
// this tab's sessionStorage: an API key, or the admin token. A credential
// is checked against the server before it is kept.

import { $, show, errorText } from './dom.js';
import { Client } from './api.js';
import { AccountView } from './account.js';
import { OperatorView } from './operator.js';

const KEY = 'mailwire.apiKey';
const ADMIN = 'mailwire.adminToken';

let account = null; // AccountView while signed in
let operator = null; // OperatorView while signed in

function current() {
  return location.hash === '#operator' ? 'operator' : 'account';
}

let shown = ''; // the view on screen, to scroll to the top when it changes

function route() {
  const view = current();
  if (view !== shown) {
    shown = view;
    window.scrollTo(0, 0);
  }
  $('nav-account').classList.toggle('active', view === 'account');
  $('nav-operator').classList.toggle('active', view === 'operator');

  const key = sessionStorage.getItem(KEY);
  if (key && !account) {
    account = new AccountView(key, () => signOutAccount('The server rejected the API key: sign in again.'));
    account.start();
  }
  const token = sessionStorage.getItem(ADMIN);
  if (token && !operator) {
    operator = new OperatorView(token, (why) => signOutOperator(why));
    operator.start();
  }
  show($('signin-account'), view === 'account' && !account);
  show($('view-account'), view === 'account' && !!account);
  show($('signin-operator'), view === 'operator' && !operator);
  show($('view-operator'), view === 'operator' && !!operator);
  if (operator) operator.setVisible(view === 'operator');

  const signedIn = view === 'account' ? !!account : !!operator;
  show($('signout'), signedIn);
  $('whoami').textContent = signedIn ? (view === 'account' ? 'API key …' + key.slice(-4) : 'admin') : '';
  if (!signedIn) $(view === 'account' ? 'input-key' : 'input-admin').focus();
}

function signOutAccount(why) {
  sessionStorage.removeItem(KEY);
  if (account) account.destroy();
  account = null;
  signInError('signin-key-error', why);
  route();
}

function signOutOperator(why) {
  sessionStorage.removeItem(ADMIN);
  if (operator) operator.destroy();
  operator = null;
  signInError('signin-admin-error', why);
  route();
}

function signInError(id, msg) {
  const el = $(id);
  el.textContent = msg || '';
  show(el, !!msg);
}

// signIn checks a credential with one call and keeps it when it works.
async function signIn(form, input, errorID, storageKey, check) {
  const value = input.value.trim();
  if (!value) return;
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    await new Client(value).get(check);
    sessionStorage.setItem(storageKey, value);
    input.value = '';
    signInError(errorID, '');
    route();
  } catch (e) {
    signInError(errorID, e.status === 401 ? 'The server does not accept this credential.' : errorText(e));
  } finally {
    button.disabled = false;
  }
}

$('form-key').addEventListener('submit', (e) => {
  e.preventDefault();
  signIn($('form-key'), $('input-key'), 'signin-key-error', KEY, '/v1/inboxes?limit=1');
});
$('form-admin').addEventListener('submit', (e) => {
  e.preventDefault();
  signIn($('form-admin'), $('input-admin'), 'signin-admin-error', ADMIN, '/admin/v1/stats');
});
$('signout').addEventListener('click', () => (current() === 'account' ? signOutAccount() : signOutOperator()));
window.addEventListener('hashchange', route);
route();
