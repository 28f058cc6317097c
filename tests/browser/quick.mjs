// quick.mjs: the player page plays a recording's stream with hls.js up to a given time, whatever stage its
// HLS is at (test_playable.py: the quick rendition while it is still being written, then the ladder).
// Usage: node tests/browser/quick.mjs BASE_URL TOKEN OUTDIR RECORDING_ID PLAY_TO_S
// Prints "ok <what>" and "RESULT {json}"; exit 1 on failure (quick-failure.png in OUTDIR).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, token, outdir, id, playTo] = process.argv.slice(2);
if (!playTo) { console.error('usage: quick.mjs BASE_URL TOKEN OUTDIR RECORDING_ID PLAY_TO_S'); process.exit(2); }
mkdirSync(outdir, { recursive: true });
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'];
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: FLAGS, headless: true });
const result = {};
let page;
try {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  await ctx.addInitScript(tok => sessionStorage.setItem('vtp.token', tok), token);
  page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  page.on('request', r => { if (r.url().includes('/stream/')) (result.requests ??= []).push(new URL(r.url()).pathname.split('/stream/')[1]); });
  await page.goto(`${base}/#/play/${id}`);
  await page.locator('#video').waitFor();
  await page.waitForFunction(() => document.querySelector('#quality').options.length > 1);
  result.levels = await page.evaluate(() => [...document.querySelector('#quality').options].map(o => o.textContent));
  await page.evaluate(() => { const v = document.querySelector('#video'); v.muted = true; v.play(); });
  await page.waitForFunction(t => document.querySelector('#video').currentTime >= t, Number(playTo), { timeout: 30000 });
  result.played_to = await page.evaluate(() => document.querySelector('#video').currentTime);
  result.hls_errors = await page.evaluate(() => window.vtpHlsErrors || 0);
  if (result.hls_errors !== 0) throw new Error(`expected no fatal hls.js error, got ${result.hls_errors}`);
  console.log(`ok played to ${result.played_to.toFixed(1)} s with hls.js`);
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
} catch (e) {
  console.log(`RESULT ${JSON.stringify(result)}`);
  console.error(e);
  if (page) await page.screenshot({ path: join(outdir, 'quick-failure.png'), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
