// ui.mjs: drives the web UI in Debian's headless Chromium (playwright-core) against a running stack.
// Usage: node tests/browser/ui.mjs BASE_URL TOKEN OUTDIR TITLE
//   TOKEN: an instructor's or admin's token; TITLE: a recording the caller made through the API.
// Prints one line per step ("ok <step>") and a last line "RESULT {json}"; exit 1 on the first failure
// (with a screenshot failure.png in OUTDIR). Screenshots of each page go to OUTDIR.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

// Ask the test runner (on stdin/stdout) to change something on the server, and wait until it says done.
const runner = createInterface({ input: process.stdin });
const replies = runner[Symbol.asyncIterator]();
async function ask(what) {
  console.log(`NEED ${what}`);
  const { value, done } = await replies.next();
  if (done || value.trim() !== 'done') throw new Error(`the runner did not do: ${what} (${value})`);
}

const [base, token, outdir, title] = process.argv.slice(2);
if (!base || !token || !outdir || !title) {
  console.error('usage: ui.mjs BASE_URL TOKEN OUTDIR TITLE');
  process.exit(2);
}
mkdirSync(outdir, { recursive: true });
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'];
const T = 10000;
const result = {};
const pageErrors = [];

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: FLAGS, headless: true });
let page;
const shot = name => page.screenshot({ path: join(outdir, name), fullPage: true });
const ok = step => console.log(`ok ${step}`);
function expect(cond, what) { if (!cond) throw new Error(`expected ${what}`); }
async function newPage(ctx) {
  const p = await ctx.newPage();
  p.setDefaultTimeout(T);
  p.on('pageerror', e => pageErrors.push(String(e)));
  return p;
}
const exact = t => new RegExp('^' + t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '$');
const rowOf = t => page.locator('#recordings > li', { has: page.locator('.rec-title', { hasText: exact(t) }) });

try {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  page = await newPage(ctx);

  // 1. a bad token: the sign-in page says why
  await page.goto(base + '/');
  await page.locator('#signin-form').waitFor();
  await page.fill('#token', 'not-a-valid-token');
  await page.click('#signin-form button[type=submit]');
  const bad = page.locator('#signin-message .error');
  await bad.waitFor();
  const badText = await bad.innerText();
  expect(/401/.test(badText) && /refused/i.test(badText), `a 401 message, got: ${badText}`);
  expect(await page.evaluate(() => sessionStorage.getItem('vtp.token')) === null, 'the bad token forgotten');
  await shot('signin-bad-token.png');
  ok('bad token shows sign-in with a message');

  // 2. sign in: the list shows the test's recording
  await page.fill('#token', token);
  await page.click('#signin-form button[type=submit]');
  await rowOf(title).waitFor();
  expect(await page.evaluate(() => sessionStorage.getItem('vtp.token')) !== null, 'the token kept in sessionStorage');
  const row = rowOf(title);
  expect(/pending/.test(await row.locator('.badge').innerText()), 'status pending in the row');
  expect(/Owner /.test(await row.innerText()), 'owner in the row');
  await shot('recordings.png');
  ok('sign in, list shows the recording');

  // 3. search narrows the list to it
  await page.fill('#q', title);
  await page.click('#search button[type=submit]');
  await page.waitForFunction(t => {
    const rows = document.querySelectorAll('#recordings > li[data-id]');
    return rows.length === 1 && rows[0].textContent.includes(t);
  }, title);
  await page.selectOption('#status-filter', 'ready');
  await page.click('#search button[type=submit]');
  await page.locator('#recordings li.muted', { hasText: 'No recordings match' }).waitFor();
  await page.fill('#q', '');
  await page.selectOption('#status-filter', '');
  await page.click('#search button[type=submit]');
  await rowOf(title).waitFor();
  ok('search and status filter');

  // 4. an API error in words: a URL the server refuses (422)
  await page.click('#start-panel summary');
  const started = `${title}-started`;
  await page.fill('#start-title', started);
  await page.fill('#start-room', 'room-ui');
  await page.check('input[name=source-type][value=url]');
  await page.fill('#start-url', 'http://example.org/not-allowed');
  await page.click('#start-form button[type=submit]');
  const err = page.locator('#start-message .error');
  await err.waitFor();
  const errText = await err.innerText();
  expect(/not started/.test(errText) && /422/.test(errText) && errText.length > 40, `an error in words, got: ${errText}`);
  await shot('start-error.png');
  ok(`API error shown in words: ${errText}`);

  // 5. start a recording from the form
  await page.fill('#start-url', 'rtmp://127.0.0.1/live/ui-test');
  await page.click('#start-form button[type=submit]');
  await page.locator('#start-message .notice').waitFor();
  const srow = rowOf(started);
  await srow.waitFor();
  result.started = await srow.getAttribute('data-id');
  expect(/pending/.test(await srow.locator('.badge').innerText()), 'new recording pending');
  ok('start a recording from the form');

  // 6. stop it
  await srow.getByRole('button', { name: `Stop ${started}` }).click();
  await page.waitForFunction(id => document.querySelector(`#recordings > li[data-id="${id}"]`)?.dataset.status === 'stopping', result.started);
  ok('stop');

  // 7. delete with confirmation (cancel first, then confirm)
  await srow.getByRole('button', { name: `Delete ${started}` }).click();
  await page.locator('dialog[open]').waitFor();
  await page.locator('dialog[open]').getByRole('button', { name: 'Cancel' }).click();
  await page.waitForTimeout(200);
  expect(await rowOf(started).count() === 1, 'still listed after Cancel');
  await rowOf(started).getByRole('button', { name: `Delete ${started}` }).click();
  await page.locator('dialog[open]').waitFor();
  await shot('delete-confirm.png');
  await page.locator('dialog[open]').getByRole('button', { name: 'Delete' }).click();
  await rowOf(started).waitFor({ state: 'detached' });
  result.deleted = result.started;
  ok('delete with confirmation');

  // 8. import a file with an upload progress bar
  await page.click('#import-panel summary');
  const imported = `${title}-imported`;
  await page.fill('#import-title', imported);
  await page.setInputFiles('#import-file', { name: 'lesson.mp4', mimeType: 'video/mp4', buffer: Buffer.alloc(2 * 1024 * 1024, 7) });
  await page.click('#import-form button[type=submit]');
  await page.locator('#import-message .notice').waitFor();
  expect(await page.locator('#upload-progress').evaluate(e => e.value) === 100, 'upload bar at 100');
  const irow = rowOf(imported);
  await irow.waitFor();
  result.imported = await irow.getAttribute('data-id');
  expect(await irow.locator('.jobs progress').count() >= 1, 'a job progress bar on the imported recording');
  expect(/probe/.test(await irow.locator('.jobs').innerText()), 'the probe job listed');
  await shot('import.png');
  ok('import with upload progress, job bar shown');

  // 8b. the job bar follows the job while it runs (the page polls the recording)
  const bar = irow => page.locator(`#recordings > li[data-id="${result.imported}"] .jobs`);
  await ask(`progress ${result.imported} 0.4`);
  await bar().filter({ hasText: /probe: running\s*40 %/ }).waitFor();
  await ask(`progress ${result.imported} 0.8`);
  await bar().filter({ hasText: /probe: running\s*80 %/ }).waitFor();
  expect(await bar().locator('progress').evaluate(e => e.value) === 80, 'the bar at 80');
  await shot('job-progress.png');
  ok('job progress bar updates while the job runs');

  // 9. the player page degrades when there is no stream yet
  const id = await rowOf(title).getAttribute('data-id');
  await page.goto(`${base}/#/play/${id}`);
  await page.locator('#not-playable').waitFor();
  await shot('player-not-ready.png');
  ok('player page without a stream');

  // 10. analytics
  await page.goto(`${base}/#/analytics/${id}`);
  const views = page.locator('#stat-views, #analytics-summary .error').first();
  await views.waitFor();
  result.analytics = await views.innerText();
  await shot('analytics.png');
  const csv = page.waitForEvent('download');
  await page.click('#csv');
  const file = await (await csv).path();
  const text = (await import('node:fs')).readFileSync(file, 'utf8');
  expect(text.startsWith('user_id,'), `a CSV with a header row, got ${text.slice(0, 40)}`);
  ok(`analytics page: ${result.analytics} views, CSV export`);

  // 11. shares: create a link, open it in a fresh context, revoke, the link stops working
  await page.goto(`${base}/#/shares/${id}`);
  await page.locator('#share-form').waitFor();
  await page.fill('#share-max', '50');
  await page.click('#share-form button[type=submit]');
  const link = await page.locator('#share-link').innerText();
  expect(link.includes(`#/play/${id}?share=`), `a player link, got ${link}`);
  await page.locator('#shares-table tbody tr').first().waitFor();
  await shot('shares.png');
  const anon = await browser.newContext();
  const apage = await newPage(anon);
  await apage.goto(link);
  await apage.locator('#player-title', { hasText: title }).waitFor();
  await apage.screenshot({ path: join(outdir, 'share-open.png'), fullPage: true });
  page.once('dialog', () => {});
  await page.locator('#shares-table').getByRole('button', { name: /Revoke/ }).first().click();
  await page.locator('dialog[open]').getByRole('button', { name: 'Revoke' }).click();
  await page.locator('#shares-table td', { hasText: /^revoked/ }).first().waitFor();
  await apage.reload();
  const gone = apage.locator('#player-message .error');
  await gone.waitFor();
  result.revoked_message = await gone.innerText();
  expect(/403|404/.test(result.revoked_message), `a refusal in words, got ${result.revoked_message}`);
  await apage.screenshot({ path: join(outdir, 'share-revoked.png'), fullPage: true });
  await anon.close();
  ok(`share link works, then is refused after revoke: ${result.revoked_message}`);

  // 12. a token the server refuses mid-session sends you back to sign-in
  await page.evaluate(() => sessionStorage.setItem('vtp.token', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad'));
  await page.goto(`${base}/#/recordings`);
  await page.locator('#signin-message .error').waitFor();
  expect(/refused/.test(await page.locator('#signin-message').innerText()), 'the refusal explained');
  ok('401 during use returns to sign-in');

  // 13. on a phone, signed in with a one-click link
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  page = await newPage(phone);
  await page.goto(`${base}/#token=${encodeURIComponent(token)}`);
  await rowOf(title).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow <= 1, `no horizontal scrolling on a phone (overflow ${overflow}px)`);
  await shot('recordings-phone.png');
  await phone.close();
  ok('phone layout and one-click token link');

  expect(pageErrors.length === 0, `no uncaught page errors, got ${pageErrors.join('; ')}`);
  console.log('RESULT ' + JSON.stringify(result));
  runner.close();
  await browser.close();
} catch (e) {
  console.log(`FAIL ${e.message.split('\n')[0]}`);
  console.error(e.stack);
  if (pageErrors.length) console.error('page errors: ' + pageErrors.join('; '));
  try { await page.screenshot({ path: join(outdir, 'failure.png'), fullPage: true }); } catch { /* no page */ }
  await browser.close();
  runner.close();
  process.exit(1);
}
