// player.js: the player page: hls.js with a quality menu, resume from GET …/progress, progress beacons, storyboard previews, keyboard shortcuts, download.

import { get, request, getToken, getShareToken, withShare, tokenClaims, imageURL, isMissingEndpoint } from './api.js';
import { h, fmtDuration, fmtDate, showError, statusBadge, saveBlob } from './ui.js';

const HEARTBEAT_MS = 10000;

function newSessionId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, '0')).join('');
}

export async function render(main, { id }) {
  document.title = 'Player – VTP';
  const msg = h('div#player-message', { 'aria-live': 'polite' });
  main.replaceChildren(getShareToken() ? '' : h('p', h('a', { href: '#/recordings' }, '← Recordings')), h('h1#player-title', 'Recording'), msg);
  let rec;
  try {
    rec = await get(`recordings/${id}`);
  } catch (err) {
    showError(msg, err, 'This recording cannot be opened: ');
    return null;
  }
  document.title = `${rec.title} – VTP`;
  main.querySelector('#player-title').textContent = rec.title;
  const claims = tokenClaims() || {};
  const owner = !getShareToken() && (rec.owner_id === claims.sub || claims.role === 'admin');
  main.append(h('p.meta', statusBadge(rec.status), ` ${fmtDuration(rec.duration_s)} · owner ${rec.owner_id} · ${fmtDate(rec.created_at)}`));

  if (!rec.stream_url) {
    main.append(h('p.notice#not-playable', rec.status === 'failed'
      ? 'This recording failed and cannot be played.'
      : `This recording cannot be played yet (status: ${rec.status}). Its stream appears here once processing is done.`));
    if (owner) main.append(h('p', h('a', { href: `#/analytics/${id}` }, 'Analytics'), ' · ', h('a', { href: `#/shares/${id}` }, 'Shares')));
    return null;
  }

  // ---- the player
  const video = h('video#video', { controls: true, playsinline: true, preload: 'metadata', 'aria-label': `Video: ${rec.title}` });
  const seek = h('input#seek', { type: 'range', min: 0, max: rec.duration_s || 0, step: 0.1, value: 0, 'aria-label': 'Position' });
  const timeText = h('span#time', '0:00 / ' + fmtDuration(rec.duration_s));
  const preview = h('div.preview', { hidden: true, 'aria-hidden': 'true' }, h('span'));
  const quality = h('select#quality', { 'aria-label': 'Quality' }, h('option', { value: '-1' }, 'Auto'));
  const playBtn = h('button#play-toggle', { type: 'button' }, 'Play');
  const beaconStatus = h('p#beacon-status.muted', { 'aria-live': 'polite' });
  const region = h('section.player', { 'aria-label': 'Player', tabindex: '0' },
    video,
    h('div.timeline', preview, seek),
    h('div.controls', playBtn, timeText,
      h('label', { for: 'quality', class: 'shrink', style: 'display:inline;margin:0 0 0 1rem' }, 'Quality '), quality));
  const help = h('p.muted', 'Keys: space play/pause, ← → 5 s back/forward, ↑ ↓ volume.');
  main.append(region, help, beaconStatus);

  const cleanups = [];
  const objectURLs = [];
  let hls = null;

  const src = withShare(rec.stream_url);
  if (window.Hls && window.Hls.isSupported()) {
    const tok = getShareToken() ? '' : getToken();
    hls = new window.Hls({
      // The master playlist needs the Bearer header; the URIs inside carry their own tokens.
      xhrSetup: (xhr, url) => { if (tok && new URL(url, location.href).origin === location.origin) xhr.setRequestHeader('Authorization', 'Bearer ' + tok); },
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, (_e, data) => {
      quality.replaceChildren(h('option', { value: '-1' }, 'Auto'),
        ...data.levels.map((l, i) => h('option', { value: String(i) }, l.height ? `${l.height}p` : `${Math.round(l.bitrate / 1000)} kbit/s`)));
    });
    hls.on(window.Hls.Events.ERROR, (_e, data) => {
      window.vtpHlsErrors = (window.vtpHlsErrors || 0) + (data.fatal ? 1 : 0);
      if (!data.fatal) return;
      const status = data.response && data.response.code;
      showError(msg, new Error(`Playback error: ${data.details}${status ? ` (HTTP ${status})` : ''}.`));
      if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    quality.addEventListener('change', () => { hls.currentLevel = Number(quality.value); });
    cleanups.push(() => hls.destroy());
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = src;
    quality.disabled = true;
  } else {
    showError(msg, new Error('This browser cannot play HLS video.'));
  }

  // ---- resume
  const progressQuery = {};
  const sessionId = newSessionId();
  if (getShareToken()) progressQuery.session_id = sessionId;
  let resumeAt = 0;
  try {
    const p = await get(`recordings/${id}/progress`, { query: progressQuery });
    if (p && p.position_s > 3 && !p.completed && (!rec.duration_s || p.position_s < rec.duration_s - 3)) resumeAt = p.position_s;
  } catch (err) {
    if (!isMissingEndpoint(err)) showError(beaconStatus, err, 'Could not read where you stopped: ');
  }
  if (resumeAt) {
    const apply = () => { video.currentTime = resumeAt; beaconStatus.textContent = `Resumed at ${fmtDuration(resumeAt)}.`; };
    if (video.readyState >= 1) apply(); else video.addEventListener('loadedmetadata', apply, { once: true });
  }

  // ---- beacons
  let rangeStart = null;     // start of the range watched since the last report
  let lastPos = 0;
  let beaconsOff = false;
  async function beacon(event, extra = {}, keepalive = false, retried = false) {
    if (beaconsOff) return;
    const body = { session_id: sessionId, event, position_s: round(video.currentTime), playback_rate: video.playbackRate, ...extra };
    try {
      await request('POST', `recordings/${id}/progress`, { json: body, keepalive });
    } catch (err) {
      if (err.status === 429) {                // at most one event a second per session: send it once more a second later
        if (!retried && !keepalive) setTimeout(() => beacon(event, { ...body, ...extra }, false, true), 1100);
        return;
      }
      if (isMissingEndpoint(err)) { beaconsOff = true; return; }   // progress not on this server (yet)
      showError(beaconStatus, err, 'Progress not saved: ');
    }
  }
  const round = x => Math.round(x * 1000) / 1000;
  function takeRange() {
    if (rangeStart === null) return {};
    const from = rangeStart, to = video.currentTime;
    rangeStart = video.paused ? null : to;
    return to > from ? { from_s: round(from), to_s: round(to) } : {};
  }
  let seekingFrom = null;
  let pendingSeek = null;    // {from, timer}: a seek not reported yet
  video.addEventListener('play', () => { rangeStart = video.currentTime; beacon('play'); });
  video.addEventListener('pause', () => { if (!video.ended && !video.seeking) beacon('pause', takeRange()); });
  video.addEventListener('seeking', () => {
    if (seekingFrom === null) seekingFrom = lastPos;
  });
  video.addEventListener('seeked', () => {
    const from = seekingFrom ?? lastPos;
    seekingFrom = null;
    if (rangeStart !== null && from > rangeStart) beacon('heartbeat', { position_s: round(from), from_s: round(rangeStart), to_s: round(from) });
    rangeStart = video.paused ? null : video.currentTime;
    // Quick successive seeks (arrow keys, dragging) become one report, a second after the last.
    if (!pendingSeek && Math.abs(video.currentTime - from) <= 0.5) return;
    if (!pendingSeek) pendingSeek = { from };
    clearTimeout(pendingSeek.timer);
    pendingSeek.timer = setTimeout(flushSeek, 1000);
  });
  function flushSeek(keepalive = false) {
    if (!pendingSeek) return;
    const { from, timer } = pendingSeek;
    clearTimeout(timer);
    pendingSeek = null;
    if (Math.abs(video.currentTime - from) > 0.5) beacon('seek', { from_s: round(from), to_s: round(video.currentTime) }, keepalive);
  }
  video.addEventListener('ended', () => beacon('ended', takeRange()));
  video.addEventListener('timeupdate', () => {
    if (!video.seeking) lastPos = video.currentTime;
    if (document.activeElement !== seek) seek.value = video.currentTime;
    timeText.textContent = `${fmtDuration(video.currentTime)} / ${fmtDuration(video.duration || rec.duration_s)}`;
  });
  video.addEventListener('durationchange', () => { if (isFinite(video.duration)) seek.max = video.duration; });
  video.addEventListener('play', () => { playBtn.textContent = 'Pause'; });
  video.addEventListener('pause', () => { playBtn.textContent = 'Play'; });
  const hb = setInterval(() => { if (!video.paused && !video.seeking) beacon('heartbeat', takeRange()); }, HEARTBEAT_MS);
  const onHide = () => { flushSeek(true); if (!video.paused) beacon('pause', takeRange(), true); };
  window.addEventListener('pagehide', onHide);
  cleanups.push(() => { clearInterval(hb); window.removeEventListener('pagehide', onHide); onHide(); });

  playBtn.addEventListener('click', () => { if (video.paused) video.play().catch(() => {}); else video.pause(); });
  seek.addEventListener('input', () => { video.currentTime = Number(seek.value); });

  // ---- keyboard: space, arrows (not while typing in a field)
  const onKey = e => {
    if (e.target.closest('input:not([type=range]), textarea, select') || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target === seek && (e.key === 'ArrowLeft' || e.key === 'ArrowRight')) return;   // the range handles them
    let done = true;
    if (e.key === ' ' || e.key === 'k') { if (video.paused) video.play().catch(() => {}); else video.pause(); }
    else if (e.key === 'ArrowLeft') video.currentTime = Math.max(0, video.currentTime - 5);
    else if (e.key === 'ArrowRight') video.currentTime = Math.min(video.duration || Infinity, video.currentTime + 5);
    else if (e.key === 'ArrowUp') video.volume = Math.min(1, video.volume + 0.1);
    else if (e.key === 'ArrowDown') video.volume = Math.max(0, video.volume - 0.1);
    else done = false;
    if (done) e.preventDefault();
  };
  region.addEventListener('keydown', onKey);

  // ---- storyboard previews over the timeline
  get(`recordings/${id}/storyboard.json`).then(async sb => {
    const url = await imageURL(`/api/v1/recordings/${id}/${sb.image_url || 'storyboard.jpg'}`);
    objectURLs.push(url);
    const tile = t => sb.tiles.find(x => t >= x.start_s && t < x.end_s) || sb.tiles[sb.tiles.length - 1];
    preview.style.width = sb.tile_width + 'px';
    preview.style.height = sb.tile_height + 'px';
    preview.style.backgroundImage = `url(${url})`;
    seek.addEventListener('pointermove', e => {
      const r = seek.getBoundingClientRect();
      const frac = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
      const t = frac * (Number(seek.max) || sb.duration_s);
      const x = tile(t);
      if (!x) return;
      preview.style.backgroundPosition = `-${x.x}px -${x.y}px`;
      preview.style.left = Math.min(Math.max(0, e.clientX - r.left - sb.tile_width / 2), r.width - sb.tile_width) + 'px';
      preview.firstChild.textContent = fmtDuration(t);
      preview.hidden = false;
    });
    seek.addEventListener('pointerleave', () => { preview.hidden = true; });
  }).catch(() => { /* no storyboard (yet): the timeline works without previews */ });

  // ---- download
  const canDownload = owner;   // a share link that allows downloads gets the same button below
  if (canDownload || getShareToken()) {
    const dlMsg = h('div#download-message', { 'aria-live': 'polite' });
    const dl = h('button.secondary#download', { type: 'button', onclick: async () => {
      showError(dlMsg, null);
      dl.disabled = true;
      try {
        if (getShareToken()) {
          // Ask for one byte first, so that a refusal (no downloads on this link) is shown here in words.
          await request('GET', `recordings/${id}/download`, { headers: { Range: 'bytes=0-0' }, as: 'blob' });
          location.href = withShare(`/api/v1/recordings/${id}/download`);
          return;
        }
        let res;
        try { res = await get(`recordings/${id}/download-url`); } catch (err) { if (!isMissingEndpoint(err)) throw err; }
        if (res && res.url) {
          await request('GET', res.url, { headers: { Range: 'bytes=0-0' }, as: 'blob' });   // a refusal shows here, in words
          location.href = res.url;
          return;
        }
        // No signed download links on this server (yet): fetch with the Bearer header.
        const blob = await request('GET', `recordings/${id}/download`, { as: 'blob' });
        saveBlob(blob, `${rec.title.replace(/[^\w.-]+/g, '_')}.mp4`);
      } catch (err) { showError(dlMsg, err, 'Download failed: '); }
      finally { dl.disabled = false; }
    } }, 'Download');
    main.append(h('p', dl), dlMsg);
  }
  if (owner) main.append(h('p', h('a', { href: `#/analytics/${id}` }, 'Analytics'), ' · ', h('a', { href: `#/shares/${id}` }, 'Shares')));

  return () => { cleanups.forEach(f => f()); objectURLs.forEach(u => URL.revokeObjectURL(u)); };
}
