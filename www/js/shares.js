// shares.js: the shares page: create a link or a share with a user (expiry, max views, download), copy the link, see views, revoke.

import { get, post, del } from './api.js';
import { h, fmtDate, showError, confirmDialog, toast } from './ui.js';

// The link a person opens: the player page with the share token (no sign-in needed).
export function shareLink(recordingId, token) {
  return `${location.origin}${location.pathname}#/play/${recordingId}?share=${encodeURIComponent(token)}`;
}

export async function render(main, { id }) {
  document.title = 'Shares – VTP';
  const msg = h('div#shares-message', { 'aria-live': 'polite' });
  main.replaceChildren(h('p', h('a', { href: '#/recordings' }, '← Recordings')), h('h1#shares-title', 'Shares'), msg);
  let rec;
  try {
    rec = await get(`recordings/${id}`);
    main.querySelector('#shares-title').textContent = `Shares: ${rec.title}`;
    document.title = `Shares: ${rec.title} – VTP`;
  } catch (err) {
    showError(msg, err, 'This recording cannot be opened: ');
    return null;
  }
  const created = h('div#share-created', { 'aria-live': 'polite' });
  const listMsg = h('div#shares-list-message', { 'aria-live': 'polite' });
  const table = h('div#shares-list');

  const form = h('form#share-form', { onsubmit: async e => {
    e.preventDefault();
    const f = e.target;
    const body = {};
    if (f.elements.user.value.trim()) body.user_id = f.elements.user.value.trim();
    if (f.elements.expires.value) {
      const d = new Date(f.elements.expires.value);
      if (isNaN(d)) { showError(created, new Error('The expiry is not a valid date.')); return; }
      body.expires_at = d.toISOString().replace(/\.\d+Z$/, 'Z');
    }
    if (f.elements.maxviews.value) body.max_views = Number(f.elements.maxviews.value);
    body.can_download = f.elements.download.checked;
    try {
      const share = await post(`recordings/${id}/shares`, body);
      created.replaceChildren();
      if (share.user_id) {
        created.append(h('p.notice', `Shared with ${share.user_id}: it is now in their list of recordings.`));
      } else {
        const link = shareLink(id, share.token);
        const code = h('code.link#share-link', link);
        created.append(h('div.notice',
          h('p', 'Link created. It is shown only now: copy it.'), code, ' ',
          h('button.secondary#copy-link', { type: 'button', onclick: async () => {
            try { await navigator.clipboard.writeText(link); toast('Link copied.'); }
            catch { getSelection().selectAllChildren(code); toast('Press Ctrl+C to copy the selected link.'); }
          } }, 'Copy link')));
      }
      f.reset();
      await loadList();
    } catch (err) {
      showError(created, err, 'The share was not created: ');
    }
  } },
  h('div.row',
    h('div', h('label', { for: 'share-user' }, 'Share with a user id (leave empty for a link)'), h('input#share-user', { type: 'text', name: 'user', maxlength: 200 })),
    h('div', h('label', { for: 'share-expires' }, 'Expires (optional)'), h('input#share-expires', { type: 'datetime-local', name: 'expires' })),
    h('div', h('label', { for: 'share-max' }, 'Most views (optional)'), h('input#share-max', { type: 'number', name: 'maxviews', min: 1, step: 1 }))),
  h('label', h('input#share-download', { type: 'checkbox', name: 'download' }), ' Allow downloads'),
  h('p', h('button', { type: 'submit' }, 'Create share')));

  async function loadList() {
    try {
      const list = await get(`recordings/${id}/shares`);
      showError(listMsg, null);
      const items = list.items || [];
      table.replaceChildren(items.length ? h('div.table-wrap', h('table#shares-table',
        h('thead', h('tr', ['Kind', 'Created', 'Expires', 'Views', 'Download', 'State', ''].map(c => h('th', { scope: 'col' }, c)))),
        h('tbody', items.map(sh => h('tr', { 'data-share': sh.id },
          h('td', sh.user_id ? `user ${sh.user_id}` : 'link'),
          h('td', fmtDate(sh.created_at)),
          h('td', sh.expires_at ? fmtDate(sh.expires_at) : 'never'),
          h('td', `${sh.views}${sh.max_views ? ` of ${sh.max_views}` : ''}`),
          h('td', sh.can_download ? 'yes' : 'no'),
          h('td', sh.revoked_at ? `revoked ${fmtDate(sh.revoked_at)}` : 'active'),
          h('td', sh.revoked_at ? '' : h('button.danger', { type: 'button', 'aria-label': `Revoke share created ${fmtDate(sh.created_at)}`, onclick: async () => {
            if (!await confirmDialog('Revoke this share? Its link stops working at once.', 'Revoke')) return;
            try { await del(`shares/${sh.id}`); toast('Share revoked.'); await loadList(); }
            catch (err) { showError(listMsg, err, 'Not revoked: '); }
          } }, 'Revoke'))))))) : h('p.muted', 'No shares yet.'));
    } catch (err) {
      table.replaceChildren();
      showError(listMsg, err, 'The shares are not available: ');
    }
  }
  main.append(h('h2', 'New share'), form, created, h('h2', 'Existing shares'), listMsg, table);
  await loadList();
  return null;
}
