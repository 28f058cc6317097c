// analytics.js: the owner's analytics page: summary figures, the retention curve (SVG), views by day, the per-person table (live attendance, coverage) and its CSV export.

import { get, request } from './api.js';
import { h, fmtDuration, fmtDate, fmtPercent, showError, saveBlob } from './ui.js';

const SVG = 'http://www.w3.org/2000/svg';
const REFRESH_MS = 10000;

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  children.forEach(c => el.append(c));
  return el;
}

// The retention curve: viewers per 5-second bucket, as an area chart with labelled axes.
function retentionChart(points, duration) {
  const W = 800, H = 240, L = 40, B = 28, T = 10, R = 10;
  const maxT = Math.max(duration || 0, ...points.map(p => p.t + 5), 5);
  const maxV = Math.max(1, ...points.map(p => p.viewers));
  const x = t => L + (t / maxT) * (W - L - R);
  const y = v => T + (1 - v / maxV) * (H - T - B);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'ret-title ret-desc' },
    s('title', { id: 'ret-title' }, 'Retention'),
    s('desc', { id: 'ret-desc' }, points.length
      ? `Viewers per 5-second part of the recording; most: ${maxV}.`
      : 'Nobody has watched yet.'));
  svg.append(s('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#4a5360' }));
  svg.append(s('line', { x1: L, y1: T, x2: L, y2: H - B, stroke: '#4a5360' }));
  for (const v of [0, maxV]) svg.append(s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 12, fill: '#1b1f24' }, String(v)));
  for (let i = 0; i <= 4; i++) {
    const t = (maxT * i) / 4;
    svg.append(s('text', { x: x(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle', 'font-size': 12, fill: '#1b1f24' }, fmtDuration(t)));
  }
  if (points.length) {
    const sorted = [...points].sort((a, b) => a.t - b.t);
    let d = `M ${x(sorted[0].t)} ${y(0)}`;
    for (const p of sorted) d += ` L ${x(p.t)} ${y(p.viewers)} L ${x(p.t + 5)} ${y(p.viewers)}`;
    d += ` L ${x(sorted[sorted.length - 1].t + 5)} ${y(0)} Z`;
    svg.append(s('path', { d, fill: '#b6cdf7', stroke: '#0b57d0', 'stroke-width': 1.5 }));
  }
  return svg;
}

function card(label, value, id) {
  return h('div.card', h('div.n', { id }, value), h('div', label));
}

export async function render(main, { id }) {
  document.title = 'Analytics – VTP';
  const msg = h('div#analytics-message', { 'aria-live': 'polite' });
  const viewersMsg = h('div#viewers-message', { 'aria-live': 'polite' });
  main.replaceChildren(h('p', h('a', { href: '#/recordings' }, '← Recordings')), h('h1#analytics-title', 'Analytics'), msg);
  let rec = null;
  try {
    rec = await get(`recordings/${id}`);
    main.querySelector('#analytics-title').textContent = `Analytics: ${rec.title}`;
    document.title = `Analytics: ${rec.title} – VTP`;
  } catch (err) {
    showError(msg, err, 'This recording cannot be opened: ');
    return null;
  }
  const summary = h('div#analytics-summary');
  const viewers = h('div#viewers');
  const csvBtn = h('button.secondary#csv', { type: 'button', onclick: async () => {
    showError(viewersMsg, null);
    try {
      const text = await request('GET', `recordings/${id}/analytics`, { query: { by: 'user' }, accept: 'text/csv', as: 'text' });
      saveBlob(new Blob([text], { type: 'text/csv' }), `analytics-${id}.csv`);
    } catch (err) { showError(viewersMsg, err, 'CSV export failed: '); }
  } }, 'Export CSV');
  main.append(summary, h('h2', 'People'), h('p', csvBtn), viewersMsg, viewers);

  try {
    const a = await get(`recordings/${id}/analytics`);
    summary.replaceChildren(
      h('div.cards',
        card('Views', String(a.views), 'stat-views'),
        card('Unique viewers', String(a.unique_viewers), 'stat-unique'),
        card('Watch time', fmtDuration(a.watch_time_s), 'stat-watch'),
        card('Average view', fmtDuration(a.avg_view_s), 'stat-avg'),
        card('Completion', fmtPercent(a.completion_rate), 'stat-completion')),
      h('h2', 'Retention'),
      retentionChart(a.retention || [], rec.duration_s),
      h('h2', 'By day'),
      (a.by_day || []).length
        ? h('div.table-wrap', h('table', h('thead', h('tr', h('th', { scope: 'col' }, 'Day'), h('th', { scope: 'col' }, 'Views'), h('th', { scope: 'col' }, 'Watch time'))),
          h('tbody', a.by_day.map(d => h('tr', h('td', d.date), h('td', String(d.views)), h('td', fmtDuration(d.watch_time_s)))))))
        : h('p.muted', 'No views yet.'));
  } catch (err) {
    showError(summary, err, 'Analytics are not available: ');
  }

  async function loadViewers() {
    try {
      const list = await get(`recordings/${id}/analytics`, { query: { by: 'user' } });
      const items = list.items || [];
      showError(viewersMsg, null);
      viewers.replaceChildren(items.length
        ? h('div.table-wrap', h('table#viewers-table',
          h('thead', h('tr', ['Person', 'Live', 'Live time', 'Sessions', 'Watch time', 'Coverage', 'Completed', 'Last watched'].map(c => h('th', { scope: 'col' }, c)))),
          h('tbody', items.map(v => h('tr',
            h('td', v.display_name ? `${v.display_name} (${v.user_id})` : v.user_id),
            h('td', v.attended_live ? 'yes' : 'no'), h('td', fmtDuration(v.live_s)), h('td', String(v.sessions)),
            h('td', fmtDuration(v.watch_time_s)), h('td', fmtPercent(v.coverage)), h('td', v.completed ? 'yes' : 'no'),
            h('td', fmtDate(v.last_watched_at)))))))
        : h('p.muted', 'Nobody attended or watched yet.'));
    } catch (err) {
      showError(viewersMsg, err, 'The list of people is not available: ');
    }
  }
  await loadViewers();
  // Live attendance changes while the class runs: refresh the table.
  const live = ['pending', 'recording'].includes(rec.status);
  const timer = live ? setInterval(loadViewers, REFRESH_MS) : 0;
  return () => clearInterval(timer);
}
