// app.js: the web UI's entry point: hash router, sign-in page, header; each page is a module with render(main, params) returning a cleanup.

import { getToken, setToken, clearToken, tokenClaims, setUnauthorizedHandler, setShareToken, get } from './api.js';
import { h, errorBox } from './ui.js';
import * as recordings from './recordings.js';
import * as player from './player.js';
import * as analytics from './analytics.js';
import * as shares from './shares.js';

const main = document.getElementById('main');
let cleanup = null;
// Why the user is on the sign-in page; kept in session storage so that a reload still says it.
const MSG_KEY = 'vtp.signin-message';
function setSigninMessage(m) { try { sessionStorage.setItem(MSG_KEY, m); } catch { /* storage off */ } }
function takeSigninMessage() {
  try { const m = sessionStorage.getItem(MSG_KEY) || ''; sessionStorage.removeItem(MSG_KEY); return m; } catch { return ''; }
}

// A 401 from any call: forget the token and go back to sign-in with the server's words.
setUnauthorizedHandler(err => {
  clearToken();
  setSigninMessage(`Your token was refused: ${err.message}. Sign in again.`);
  if (!location.hash.startsWith('#/signin')) location.hash = '#/signin';
  else route();
});

// "#/play/ID?share=TOKEN" -> {page: 'play', id: 'ID', query: URLSearchParams}
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] || '', id: parts[1] || '', query: new URLSearchParams(qs || '') };
}

function updateHeader() {
  const c = getToken() ? tokenClaims() : null;
  const who = document.getElementById('whoami');
  who.textContent = c ? `${c.name || c.sub || '?'} (${c.role || 'no role'})` : '';
  document.getElementById('signout').hidden = !getToken();
  document.getElementById('nav-recordings').hidden = !getToken();
}

document.getElementById('signout').addEventListener('click', () => {
  clearToken();
  setSigninMessage('You are signed out.');
  location.hash = '#/signin';
});

function renderSignin() {
  document.title = 'Sign in – VTP';
  const msg = h('div#signin-message', { 'aria-live': 'polite' });
  const why = takeSigninMessage();
  if (why) msg.append(h('p.error', { role: 'alert' }, why));
  const input = h('textarea#token', { name: 'token', required: true, rows: 4, autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'token-help' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form#signin-form', {
    onsubmit: async e => {
      e.preventDefault();
      const tok = input.value.trim();
      msg.replaceChildren();
      if (!tok) { msg.append(h('p.error', { role: 'alert' }, 'Paste a token first.')); return; }
      button.disabled = true;
      setToken(tok);
      try {
        await get('recordings', { query: { limit: 1 } });   // the server judges the token
        location.hash = '#/recordings';
      } catch (err) {
        if (err.status !== 401) { clearToken(); msg.replaceChildren(errorBox(err, 'Sign-in failed: ')); }
      } finally { button.disabled = false; }
    },
  },
  h('label', { for: 'token' }, 'Access token (JWT)'),
  input,
  h('p#token-help.muted', 'Paste the token your school gave you, or the admin token that ', h('code', 'make run'),
    ' prints. It is kept in this browser tab only (session storage) and forgotten when the tab closes.'),
  button);
  main.replaceChildren(h('h1', 'Sign in'), msg, form);
  input.focus();
  return null;
}

async function route() {
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } cleanup = null; }
  const { page, id, query } = parseHash();
  setShareToken(page === 'play' ? query.get('share') : '');
  updateHeader();
  // A share link plays without signing in.
  const shared = page === 'play' && query.get('share');
  if (!getToken() && !shared) {
    if (page !== 'signin') { history.replaceState(null, '', '#/signin'); }
    cleanup = renderSignin();
    return;
  }
  const pages = { recordings, play: player, analytics, shares };
  if (page === 'signin') { cleanup = renderSignin(); return; }
  const mod = pages[page];
  if (!mod) { location.replace('#/recordings'); return; }
  main.replaceChildren();
  try {
    cleanup = await mod.render(main, { id, query }) || null;
  } catch (err) {
    main.replaceChildren(h('h1', 'Something went wrong'), errorBox(err));
  }
  main.focus({ preventScroll: true });
}

// One-click sign-in: a link "…/#token=<JWT>" (as the dev stack prints) signs in and drops the token from the address bar.
{
  const m = /^#token=(.+)$/.exec(location.hash);
  if (m) {
    setToken(decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + '#/recordings');
  }
}
window.addEventListener('hashchange', route);
route();
