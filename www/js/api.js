// api.js: the one place that talks to the VTP REST API: token storage, fetch with the Bearer header, problem+json errors in words.

const TOKEN_KEY = 'vtp.token';
export const API = '/api/v1';

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}
export function setToken(tok) { sessionStorage.setItem(TOKEN_KEY, tok); }
export function clearToken() { sessionStorage.removeItem(TOKEN_KEY); }

// The token's claims, for display only (the server is the one that checks it).
export function tokenClaims(tok = getToken()) {
  try {
    const part = tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), c => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch { return null; }
}

// An error from the API (or from the network), with a sentence a person can read.
export class ApiError extends Error {
  constructor(status, problem, fallback) {
    const p = problem || {};
    let msg;
    if (status === 0) msg = fallback || 'The server could not be reached. Check your connection and try again.';
    else {
      const title = p.title || fallback || `HTTP ${status}`;
      msg = `${title} (${status})` + (p.detail ? `: ${p.detail}` : '') + (p.code ? ` [${p.code}]` : '');
      if (status === 503 && p.retry_after) msg += ` Try again in ${p.retry_after} s.`;
    }
    super(msg);
    this.status = status;
    this.code = p.code || '';
    this.problem = p;
  }
}

// Called when the API says 401: the app sends the user back to sign-in.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

// The share token of the page (a share link), added to read requests.
let shareToken = '';
export function setShareToken(s) { shareToken = s || ''; }
export function getShareToken() { return shareToken; }

export function withShare(url) {
  if (!shareToken) return url;
  return url + (url.includes('?') ? '&' : '?') + 'share=' + encodeURIComponent(shareToken);
}

export function authHeaders() {
  const tok = getToken();
  return tok && !shareToken ? { Authorization: 'Bearer ' + tok } : {};
}

async function problemOf(res) {
  const type = res.headers.get('Content-Type') || '';
  let p = null;
  if (type.includes('json')) {
    try { p = await res.json(); } catch { p = null; }
  }
  if (p && res.headers.get('Retry-After')) p.retry_after = res.headers.get('Retry-After');
  return p;
}

// request(method, path, {json, query, accept, headers, as: 'blob'|'text', keepalive}) -> parsed JSON, text, Blob or null (204).
// A 404 whose code is `not_found` means the server has no such endpoint (yet).
export async function request(method, path, opts = {}) {
  let url = path.startsWith('/') ? path : `${API}/${path}`;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }
  url = withShare(url);
  const headers = { ...authHeaders(), ...(opts.headers || {}) };
  let body;
  if (opts.json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(opts.json); }
  if (opts.accept) headers.Accept = opts.accept;
  let res;
  try {
    res = await fetch(url, { method, headers, body, keepalive: !!opts.keepalive });
  } catch (e) {
    throw new ApiError(0, null, `The server could not be reached (${e.message}).`);
  }
  if (!res.ok) {
    const p = await problemOf(res);
    const err = new ApiError(res.status, p, res.statusText);
    if (res.status === 401 && !shareToken) onUnauthorized(err);
    throw err;
  }
  if (res.status === 204) return null;
  if (opts.as === 'blob') return res.blob();
  if (opts.as === 'text') return res.text();
  const type = res.headers.get('Content-Type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const get = (p, o) => request('GET', p, o);
export const isMissingEndpoint = err => err && err.status === 404 && err.code === 'not_found';
export const post = (p, json, o = {}) => request('POST', p, { ...o, json });
export const del = (p, o) => request('DELETE', p, o);

// Upload a file as the raw body, reporting progress (fraction 0..1) as it goes.
// Returns {promise, abort}.
export function upload(path, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', path.startsWith('/') ? path : `${API}/${path}`);
    const h = authHeaders();
    for (const k of Object.keys(h)) xhr.setRequestHeader(k, h[k]);
    xhr.setRequestHeader('Content-Type', file.type && /^(video|audio)\//.test(file.type) ? file.type : 'video/mp4');
    xhr.upload.onprogress = e => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) { onProgress(1); resolve(body); return; }
      if (body && xhr.getResponseHeader('Retry-After')) body.retry_after = xhr.getResponseHeader('Retry-After');
      const err = new ApiError(xhr.status, body, xhr.statusText);
      if (xhr.status === 401) onUnauthorized(err);
      reject(err);
    };
    xhr.onerror = () => reject(new ApiError(0, null, 'The upload failed: the server could not be reached.'));
    xhr.onabort = () => reject(new ApiError(0, null, 'The upload was cancelled.'));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

// An image behind the Bearer header, as an object URL (caller revokes it).
export async function imageURL(path) {
  const blob = await request('GET', path, { as: 'blob' });
  return URL.createObjectURL(blob);
}
