// recordings.js: the recordings page: search, status filter, cursor paging, posters, live job progress, start/stop/delete, file import with upload progress.

import { get, post, del, upload, imageURL, tokenClaims, API } from './api.js';
import { h, fmtDuration, fmtDate, fmtBytes, showError, confirmDialog, toast, statusBadge } from './ui.js';

const STATUSES = ['pending', 'recording', 'stopping', 'processing', 'ready', 'failed'];
const ACTIVE_JOB = new Set(['queued', 'running']);
const POLL_MS = 2000;

// Page state kept across visits in this tab (back from the player keeps the filters).
const state = { q: '', status: '', cursors: [''], page: 0 };

export async function render(main) {
  document.title = 'Recordings – VTP';
  const claims = tokenClaims() || {};
  const canCreate = claims.role === 'admin' || claims.role === 'instructor';
  const objectURLs = [];
  const rows = new Map();   // id -> {li, rec}
  const posters = new Map();   // thumbnail_url -> object URL
  let pollTimer = 0;
  let alive = true;

  const listError = h('div#list-error', { 'aria-live': 'polite' });
  const list = h('ul.recordings#recordings', { 'aria-label': 'Recordings' });
  const pageInfo = h('span.muted#page-info');
  const prevBtn = h('button.secondary', { type: 'button', onclick: () => { state.page--; load(); } }, 'Previous page');
  const nextBtn = h('button.secondary', { type: 'button', onclick: () => { state.page++; load(); } }, 'Next page');

  // ---- search and filter
  const q = h('input#q', { type: 'search', name: 'q', value: state.q, maxlength: 200 });
  const statusSel = h('select#status-filter', { name: 'status' },
    h('option', { value: '' }, 'Any status'), STATUSES.map(s => h('option', { value: s, selected: s === state.status }, s)));
  const searchForm = h('form#search', { role: 'search', onsubmit: e => {
    e.preventDefault();
    state.q = q.value.trim(); state.status = statusSel.value; state.cursors = ['']; state.page = 0;
    load();
  } },
  h('div.row',
    h('div', h('label', { for: 'q' }, 'Search titles'), q),
    h('div', h('label', { for: 'status-filter' }, 'Status'), statusSel),
    h('div.shrink', h('button', { type: 'submit' }, 'Search'))));

  // ---- start a recording
  const startMsg = h('div#start-message', { 'aria-live': 'polite' });
  const srcSdp = h('textarea#start-sdp', { name: 'sdp', spellcheck: 'false',
    placeholder: 'v=0\no=- 0 0 IN IP4 127.0.0.1\ns=room\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 40000 RTP/AVPF 96\na=rtpmap:96 VP8/90000' });
  const srcUrl = h('input#start-url', { type: 'text', name: 'url', placeholder: 'rtmp://media.example.org/live/room-42', inputmode: 'url' });
  const sdpBox = h('div', h('label', { for: 'start-sdp' }, 'SDP (RTP sender, e.g. a mediasoup PlainTransport)'), srcSdp);
  const urlBox = h('div', { hidden: true }, h('label', { for: 'start-url' }, 'Stream URL (rtmp://, srt://, rtsp://)'), srcUrl);
  const pick = type => { sdpBox.hidden = type !== 'sdp'; urlBox.hidden = type !== 'url'; };
  const startForm = h('form#start-form', { onsubmit: async e => {
    e.preventDefault();
    const f = e.target;
    const type = f.elements['source-type'].value;
    const body = {
      title: f.elements.title.value.trim(),
      room_id: f.elements.room.value.trim(),
      source: type === 'sdp' ? { type, sdp: srcSdp.value.replace(/\r?\n/g, '\r\n') } : { type, url: srcUrl.value.trim() },
    };
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      const rec = await post('recordings/start', body);
      showError(startMsg, null);
      startMsg.append(h('p.notice', `Started “${rec.title}”: ${rec.status}.`));
      f.reset(); pick('sdp');
      state.cursors = ['']; state.page = 0;
      await load();
    } catch (err) {
      showError(startMsg, err, 'The recording was not started: ');
    } finally { btn.disabled = false; }
  } },
  h('div.row',
    h('div', h('label', { for: 'start-title' }, 'Title'), h('input#start-title', { type: 'text', name: 'title', required: true, maxlength: 200 })),
    h('div', h('label', { for: 'start-room' }, 'Room'), h('input#start-room', { type: 'text', name: 'room', required: true, maxlength: 200 }))),
  h('fieldset', h('legend', 'Source'),
    h('label', h('input', { type: 'radio', name: 'source-type', value: 'sdp', defaultChecked: true, onchange: () => pick('sdp') }), ' RTP (SDP)'),
    h('label', h('input', { type: 'radio', name: 'source-type', value: 'url', onchange: () => pick('url') }), ' Stream URL')),
  sdpBox, urlBox,
  h('p', h('button', { type: 'submit' }, 'Start recording')),
  startMsg);

  // ---- import a file
  const importMsg = h('div#import-message', { 'aria-live': 'polite' });
  const bar = h('progress#upload-progress', { max: 100, value: 0, 'aria-label': 'Upload progress' });
  const barText = h('span#upload-percent', '');
  const barBox = h('p', { hidden: true }, bar, ' ', barText);
  let currentUpload = null;
  const cancelBtn = h('button.secondary', { type: 'button', hidden: true, onclick: () => currentUpload && currentUpload.abort() }, 'Cancel upload');
  const importForm = h('form#import-form', { onsubmit: async e => {
    e.preventDefault();
    const f = e.target;
    const file = f.elements.file.files[0];
    if (!file) { showError(importMsg, new Error('Choose a file to import.')); return; }
    const title = f.elements.title.value.trim() || file.name;
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true; cancelBtn.hidden = false; barBox.hidden = false;
    showError(importMsg, null);
    currentUpload = upload(`recordings?title=${encodeURIComponent(title)}`, file, frac => {
      bar.value = Math.round(frac * 100);
      barText.textContent = `${Math.round(frac * 100)} % of ${fmtBytes(file.size)}`;
    });
    try {
      const rec = await currentUpload.promise;
      importMsg.append(h('p.notice', `Imported “${rec.title}”: ${rec.status}.`));
      f.reset();
      state.cursors = ['']; state.page = 0;
      await load();
    } catch (err) {
      showError(importMsg, err, 'The import failed: ');
    } finally {
      btn.disabled = false; cancelBtn.hidden = true; currentUpload = null;
    }
  } },
  h('div.row',
    h('div', h('label', { for: 'import-file' }, 'Media file'), h('input#import-file', { type: 'file', name: 'file', accept: 'video/*,audio/*', required: true })),
    h('div', h('label', { for: 'import-title' }, 'Title (default: the file name)'), h('input#import-title', { type: 'text', name: 'title', maxlength: 200 }))),
  h('p', h('button', { type: 'submit' }, 'Import'), ' ', cancelBtn),
  barBox, importMsg);

  main.replaceChildren(
    h('h1', 'Recordings'),
    canCreate ? h('details.panel#start-panel', h('summary', 'Start a recording'), startForm) : null,
    canCreate ? h('details.panel#import-panel', h('summary', 'Import a file'), importForm) : null,
    searchForm, listError, list,
    h('nav.pager', { 'aria-label': 'Pages' }, prevBtn, pageInfo, nextBtn));

  // ---- one row
  function jobList(rec) {
    const jobs = (rec.jobs || []).filter(j => ACTIVE_JOB.has(j.state) || j.state === 'failed');
    if (!jobs.length) return null;
    return h('ul.jobs', { 'aria-label': 'Jobs' }, jobs.map(j => {
      const pct = Math.round((j.progress || 0) * 100);
      return h('li', { 'data-job': j.id },
        h('span', `${j.kind}: ${j.state}`),
        j.state === 'failed' ? null : h('progress', { max: 100, value: pct, 'aria-label': `${j.kind} progress` }),
        j.state === 'failed' ? null : h('span', `${pct} %`));
    }));
  }

  async function poster(rec) {
    const box = h('div.poster', 'No picture yet');
    if (rec.thumbnail_url && posters.has(rec.thumbnail_url)) {
      box.replaceChildren(h('img', { src: posters.get(rec.thumbnail_url), alt: '' }));
    } else if (rec.thumbnail_url) {
      imageURL(rec.thumbnail_url + (rec.thumbnail_url.includes('?') ? '&' : '?') + 'width=320').then(url => {
        if (!alive) { URL.revokeObjectURL(url); return; }
        objectURLs.push(url);
        posters.set(rec.thumbnail_url, url);
        box.replaceChildren(h('img', { src: url, alt: '' }));
      }).catch(err => { box.textContent = `No picture: ${err.status || ''} ${err.code || ''}`.trim(); });
    }
    return box;
  }

  async function rowFor(rec) {
    const owner = rec.owner_id === claims.sub || claims.role === 'admin';
    const canStop = owner && (rec.status === 'pending' || rec.status === 'recording');
    const rowMsg = h('div.row-message', { 'aria-live': 'polite' });
    const title = h('a.rec-title', { href: `#/play/${rec.id}` }, rec.title);
    const li = h('li', { 'data-id': rec.id, 'data-status': rec.status },
      await poster(rec),
      h('div',
        title,
        h('div.meta',
          statusBadge(rec.status),
          h('span', { title: 'Duration' }, `Duration ${fmtDuration(rec.duration_s)}`),
          h('span', `Owner ${rec.owner_id}`),
          h('span', `Room ${rec.room_id}`),
          h('span', fmtDate(rec.created_at))),
        jobList(rec), rowMsg),
      h('div.actions',
        canStop ? h('button.secondary', { type: 'button', 'aria-label': `Stop ${rec.title}`, onclick: async e => {
          e.target.disabled = true;
          try { const r = await post(`recordings/${rec.id}/stop`); toast(`Stopping “${r.title}”.`); await refreshOne(rec.id); }
          catch (err) { showError(rowMsg, err, 'Not stopped: '); e.target.disabled = false; }
        } }, 'Stop') : null,
        owner ? h('a.button.secondary', { href: `#/analytics/${rec.id}`, 'aria-label': `Analytics of ${rec.title}` }, 'Analytics') : null,
        owner ? h('a.button.secondary', { href: `#/shares/${rec.id}`, 'aria-label': `Shares of ${rec.title}` }, 'Share') : null,
        owner ? h('button.danger', { type: 'button', 'aria-label': `Delete ${rec.title}`, onclick: async () => {
          if (!await confirmDialog(`Delete “${rec.title}”? It disappears at once and its files are removed.`)) return;
          try { await del(`recordings/${rec.id}`); toast(`Deleted “${rec.title}”.`); rows.get(rec.id)?.li.remove(); rows.delete(rec.id); }
          catch (err) { showError(rowMsg, err, 'Not deleted: '); }
        } }, 'Delete') : null));
    return li;
  }

  function needsPoll(rec) {
    return ['pending', 'recording', 'stopping', 'processing'].includes(rec.status) ||
      (rec.jobs || []).some(j => ACTIVE_JOB.has(j.state));
  }

  async function refreshOne(id) {
    const old = rows.get(id);
    if (!old) return;
    try {
      const rec = await get(`recordings/${id}`);
      if (!alive || !rows.has(id)) return;
      // Replace only what changed, so focus and posters stay put.
      if (JSON.stringify(rec) === JSON.stringify(old.rec)) return;
      const li = await rowFor(rec);
      if (!alive || !rows.has(id)) return;
      const focused = old.li.contains(document.activeElement) ? document.activeElement.textContent : null;
      old.li.replaceWith(li);
      rows.set(id, { li, rec });
      if (focused) [...li.querySelectorAll('button, a')].find(b => b.textContent === focused)?.focus();
    } catch (err) {
      if (err.status === 404) { old.li.remove(); rows.delete(id); return; }
      showError(old.li.querySelector('.row-message'), err, 'Could not refresh: ');
    }
  }

  function schedulePoll() {
    clearTimeout(pollTimer);
    if (!alive) return;
    pollTimer = setTimeout(async () => {
      const ids = [...rows.values()].filter(r => needsPoll(r.rec)).map(r => r.rec.id);
      await Promise.all(ids.map(refreshOne));
      schedulePoll();
    }, POLL_MS);
  }

  async function load() {
    showError(listError, null);
    prevBtn.disabled = nextBtn.disabled = true;
    list.setAttribute('aria-busy', 'true');
    try {
      const page = await get('recordings', { query: { q: state.q, status: state.status, limit: 20, cursor: state.cursors[state.page] } });
      if (!alive) return;
      state.cursors[state.page + 1] = page.next_cursor || null;
      rows.clear();
      const items = await Promise.all(page.items.map(async rec => { const li = await rowFor(rec); rows.set(rec.id, { li, rec }); return li; }));
      list.replaceChildren(...items);
      if (!items.length) list.append(h('li.muted', state.q || state.status ? 'No recordings match.' : 'No recordings yet.'));
      prevBtn.disabled = state.page === 0;
      nextBtn.disabled = !page.next_cursor;
      pageInfo.textContent = `Page ${state.page + 1}`;
      schedulePoll();
    } catch (err) {
      if (!alive) return;
      list.replaceChildren();
      showError(listError, err, 'Could not load the recordings: ');
      prevBtn.disabled = state.page === 0;
    } finally { list.removeAttribute('aria-busy'); }
  }

  await load();
  return () => {
    alive = false;
    clearTimeout(pollTimer);
    if (currentUpload) currentUpload.abort();
    objectURLs.forEach(u => URL.revokeObjectURL(u));
  };
}

export { API };
