// ui.js: small DOM helpers shared by the pages: element builder, formatting, error boxes, confirmation dialog, toast.

// h('div.cls#id', {attrs}, ...children): build an element. Strings become text nodes (never HTML).
export function h(tag, attrs, ...children) {
  const m = /^([a-z0-9-]+)((?:[.#][\w-]+)*)$/i.exec(tag);
  const el = document.createElement(m ? m[1] : tag);
  if (m && m[2]) for (const part of m[2].match(/[.#][\w-]+/g)) {
    if (part[0] === '.') el.classList.add(part.slice(1)); else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) { children.unshift(attrs); attrs = null; }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k in el && k !== 'list' && k !== 'form' && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s)) return '–';
  s = Math.max(0, Math.floor(s));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const p = n => String(n).padStart(2, '0');
  return hh ? `${hh}:${p(mm)}:${p(ss)}` : `${mm}:${p(ss)}`;
}

export function fmtDate(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function fmtPercent(x) {
  return x === null || x === undefined ? '–' : `${Math.round(x * 100)} %`;
}

// An error box (role=alert so screen readers announce it) holding the error's words.
export function errorBox(err, prefix = '') {
  return h('p.error', { role: 'alert' }, prefix + (err && err.message ? err.message : String(err)));
}

// Replace the content of a slot (an element reserved for messages) with an error, or clear it.
export function showError(slot, err, prefix = '') {
  slot.replaceChildren();
  if (err) slot.append(errorBox(err, prefix));
}

let toastTimer = 0;
export function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
}

// A modal confirmation: resolves true (confirmed) or false. Focus goes back where it was.
export function confirmDialog(question, confirmLabel = 'Delete') {
  return new Promise(resolve => {
    const back = document.activeElement;
    const dlg = h('dialog', { 'aria-labelledby': 'confirm-q' },
      h('form', { method: 'dialog' },
        h('p#confirm-q', question),
        h('div.row',
          h('button.secondary.shrink', { type: 'submit', value: 'cancel', autofocus: true }, 'Cancel'),
          h('button.danger.shrink', { type: 'submit', value: 'ok' }, confirmLabel))));
    dlg.addEventListener('close', () => {
      dlg.remove();
      if (back && back.focus) back.focus();
      resolve(dlg.returnValue === 'ok');
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function statusBadge(status) {
  return h(`span.badge.${status}`, status);
}

// Download a Blob under a file name.
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
