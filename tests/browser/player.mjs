// player.mjs: the player page in Debian's headless Chromium: hls.js plays to 10 s, progress beacons reach the
// real API, a reload resumes near 10 s, and the analytics page counts the view.
// Usage: node tests/browser/player.mjs BASE_URL TOKEN OUTDIR RECORDING_ID HLS_DIR [SHARE_TOKEN]
// Until the API streams HLS itself (issue 4), HLS_DIR (master.m3u8 + media playlists + segments, made by the
// test with ffmpeg) stands in for it: the recording's stream_url and its /stream/ requests are answered from
// that folder inside the browser. Everything else (recording, progress, analytics) is the real API.
// HLS_DIR '-': no stand-in, the recording must have the API's own stream. SHARE_TOKEN (optional, a link
// share of the recording): the link plays in a fresh context without a token, and is refused after a revoke in the UI.
// Prints "ok <step>" lines and "RESULT {json}"; exit 1 on failure (failure.png in OUTDIR).
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { join, normalize } from 'node:path';

const [base, token, outdir, id, hlsDir, shareToken] = process.argv.slice(2);
if (!hlsDir) { console.error('usage: player.mjs BASE_URL TOKEN OUTDIR RECORDING_ID HLS_DIR'); process.exit(2); }
mkdirSync(outdir, { recursive: true });
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'];
const result = { beacons: [] };
const pageErrors = [];
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: FLAGS, headless: true });
let page;
const ok = step => console.log(`ok ${step}`);
function expect(cond, what) { if (!cond) throw new Error(`expected ${what}`); }
const TYPES = { m3u8: 'application/vnd.apple.mpegurl', ts: 'video/mp2t', m4s: 'video/mp4', mp4: 'video/mp4' };

try {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  await ctx.addInitScript(tok => sessionStorage.setItem('vtp.token', tok), token);
  const stream = `/api/v1/recordings/${id}/stream/`;
  // The recording as the API says, plus a stream_url while the API has none.
  if (hlsDir !== '-') await ctx.route(url => new URL(url).pathname === `/api/v1/recordings/${id}`, async route => {
    const res = await route.fetch();
    const rec = await res.json();
    result.real_stream_url = rec.stream_url;
    if (!rec.stream_url) rec.stream_url = `${stream}playlist.m3u8`;
    await route.fulfill({ response: res, json: rec });
  });
  if (hlsDir !== '-') await ctx.route(url => new URL(url).pathname.startsWith(stream) && !result.real_stream_url, async route => {
    const req = route.request();
    expect(req.headers().authorization === `Bearer ${token}` || !new URL(req.url()).pathname.endsWith('playlist.m3u8'),
      'the playlist request carries the Bearer header');
    let rel = new URL(req.url()).pathname.slice(stream.length);
    if (rel === 'playlist.m3u8') rel = 'master.m3u8';
    const file = normalize(join(hlsDir, rel));
    if (!file.startsWith(normalize(hlsDir)) || !existsSync(file)) return route.fulfill({ status: 404, body: 'no such file' });
    await route.fulfill({ status: 200, contentType: TYPES[file.split('.').pop()] || 'application/octet-stream', body: readFileSync(file) });
  });
  page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', e => pageErrors.push(String(e)));
  page.on('request', r => {
    if (r.method() === 'POST' && r.url().includes('/progress')) result.beacons.push(JSON.parse(r.postData()).event);
  });

  // 1. play to 10 s
  await page.goto(`${base}/#/play/${id}`);
  await page.locator('#video').waitFor();
  await page.waitForFunction(() => document.querySelector('#quality').options.length > 1);
  await page.evaluate(() => { const v = document.querySelector('#video'); v.muted = true; });
  await page.locator('.player').focus();
  await page.keyboard.press(' ');     // the keyboard shortcut starts playback
  await page.waitForFunction(() => document.querySelector('#video').currentTime >= 10.5, null, { timeout: 20000 });
  await page.keyboard.press(' ');
  await page.waitForFunction(() => document.querySelector('#video').paused);
  result.played_to = await page.evaluate(() => document.querySelector('#video').currentTime);
  result.hls_errors = await page.evaluate(() => window.vtpHlsErrors || 0);
  expect(result.hls_errors === 0, 'no fatal hls.js error');
  await page.screenshot({ path: join(outdir, 'player.png'), fullPage: true });
  await page.waitForTimeout(1200);     // the API takes one event a second per session: let the pause land
  ok(`played to ${result.played_to.toFixed(1)} s with hls.js`);

  // 2. arrow keys seek
  const before = await page.evaluate(() => document.querySelector('#video').currentTime);
  await page.locator('.player').focus();
  const seekBeacon = page.waitForRequest(r => r.method() === 'POST' && r.url().includes('/progress') &&
    JSON.parse(r.postData()).event === 'seek');
  await page.keyboard.press('ArrowLeft');
  await page.waitForFunction(b => Math.abs(document.querySelector('#video').currentTime - (b - 5)) < 0.6, before);
  const seekBody = JSON.parse((await seekBeacon).postData());
  expect(Math.abs(seekBody.from_s - before) < 0.6 && Math.abs(seekBody.to_s - (before - 5)) < 0.6,
    `a seek beacon from ${before} back 5 s, got ${JSON.stringify(seekBody)}`);
  const seekBack = page.waitForResponse(r => r.request().method() === 'POST' && r.url().includes('/progress') &&
    JSON.parse(r.request().postData()).event === 'seek' && JSON.parse(r.request().postData()).to_s > before - 1);
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction(b => Math.abs(document.querySelector('#video').currentTime - b) < 0.6, before);
  expect((await seekBack).status() === 204, 'the second seek recorded');
  ok('arrow keys seek 5 s, the seek is reported');

  // 3. a reload resumes near 10 s (GET …/progress of the real API)
  await page.reload();
  await page.locator('#beacon-status', { hasText: 'Resumed at' }).waitFor();
  await page.waitForFunction(() => document.querySelector('#video').currentTime > 0);
  result.resumed_at = await page.evaluate(() => document.querySelector('#video').currentTime);
  expect(result.resumed_at >= 9 && result.resumed_at <= 12.5, `a resume near 10 s, got ${result.resumed_at}`);
  ok(`reload resumes at ${result.resumed_at.toFixed(1)} s`);

  // 3b. the download button: without the API's own stream this recording has no file yet, and the
  // API's refusal is shown in words; with it, the file is there
  if (hlsDir === '-') {
    const dl = page.waitForEvent('download');
    await page.click('#download');
    result.downloaded = (await dl).suggestedFilename();
    // the storyboard preview over the timeline, and the poster in the list
    const seekBox = await page.locator('#seek').boundingBox();
    await page.mouse.move(seekBox.x + seekBox.width * 0.75, seekBox.y + seekBox.height / 2);
    await page.locator('.preview:not([hidden])').waitFor();
    expect(/blob:/.test(await page.locator('.preview').evaluate(e => e.style.backgroundImage)), 'the sprite as preview');
    await page.screenshot({ path: join(outdir, 'storyboard-preview.png') });
    await page.goto(`${base}/#/recordings`);
    await page.locator(`#recordings > li[data-id="${id}"] .poster img`).waitFor();
    await page.screenshot({ path: join(outdir, 'recordings-poster.png') });
    ok(`download starts (${result.downloaded}), storyboard preview, poster`);
  } else {
  await page.click('#download');
  const dlErr = page.locator('#download-message .error');
  await dlErr.waitFor();
  result.download_message = await dlErr.innerText();
  expect(/^Download failed: .+ \((404|409)\)/.test(result.download_message), `a refusal in words, got ${result.download_message}`);
  ok(`download refusal in words: ${result.download_message}`);
  }

  // 4. the analytics page counts the view
  await page.goto(`${base}/#/analytics/${id}`);
  await page.locator('#stat-views').waitFor();
  result.views = await page.locator('#stat-views').innerText();
  await page.screenshot({ path: join(outdir, 'analytics-one-view.png'), fullPage: true });
  expect(result.views === '1', `one view, got ${result.views}`);
  ok('analytics shows one view');

  // 5. a share link plays in a fresh context (no token), and stops working once revoked
  if (shareToken) {
    const anon = await browser.newContext();
    const apage = await anon.newPage();
    apage.setDefaultTimeout(15000);
    apage.on('pageerror', e => pageErrors.push(String(e)));
    const link = `${base}/#/play/${id}?share=${encodeURIComponent(shareToken)}`;
    await apage.goto(link);
    await apage.locator('#video').waitFor();
    await apage.evaluate(() => { const v = document.querySelector('#video'); v.muted = true; });
    await apage.click('#play-toggle');
    await apage.waitForFunction(() => document.querySelector('#video').currentTime >= 2, null, { timeout: 20000 });
    expect(await apage.evaluate(() => window.vtpHlsErrors || 0) === 0, 'no fatal hls.js error on the share link');
    await apage.screenshot({ path: join(outdir, 'share-plays.png'), fullPage: true });
    await page.goto(`${base}/#/shares/${id}`);
    await page.locator('#shares-table').getByRole('button', { name: /Revoke/ }).first().click();
    await page.locator('dialog[open]').getByRole('button', { name: 'Revoke' }).click();
    await page.locator('#shares-table td', { hasText: /^revoked/ }).first().waitFor();
    await apage.reload();
    await apage.locator('#player-message .error', { hasText: 'share_revoked' }).waitFor();
    await apage.screenshot({ path: join(outdir, 'share-revoked.png'), fullPage: true });
    await anon.close();
    ok('share link plays without a token, and is refused after revoke');
  }

  expect(pageErrors.length === 0, `no uncaught page errors, got ${pageErrors.join('; ')}`);
  console.log('RESULT ' + JSON.stringify(result));
  await browser.close();
} catch (e) {
  console.log(`FAIL ${e.message.split('\n')[0]}`);
  console.error(e.stack);
  console.error('so far: ' + JSON.stringify(result));
  if (pageErrors.length) console.error('page errors: ' + pageErrors.join('; '));
  try { await page.screenshot({ path: join(outdir, 'failure.png'), fullPage: true }); } catch { /* no page */ }
  await browser.close();
  process.exit(1);
}
