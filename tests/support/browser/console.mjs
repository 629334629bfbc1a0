// Drives the operator console in Debian's chromium, as an operator would:
//   node console.mjs <base-url> <user> <password> <room> <out-dir>
// Loads / cold (timing and bytes), checks it with axe-core, signs in,
// starts a recording in <room>, watches its events arrive over the page's
// WebSocket, pauses, resumes, stops, waits for completed, plays it in the
// page until currentTime > 1, downloads it, takes screenshots at desktop
// and 390 px width (into <out-dir>), checks the signed-in pages with
// axe-core at both widths, and deletes it. Prints one JSON line of results
// (the steps' facts, timings, violations) and exits 0, or prints
// {"error": ...} and exits 1 at the first step that fails.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const [base, user, password, room, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: node console.mjs <base-url> <user> <password> <room> <out-dir>');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });

const out = { steps: [], events: [], axe: {} };
const step = (name, facts) => out.steps.push(Object.assign({ step: name }, facts || {}));
const SLOW = 90000;

// axe-core on the page as it is: serious and critical violations only.
async function axe(page, label) {
  // Through the debugger protocol: the page's CSP (rightly) refuses an
  // injected inline script.
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const res = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length,
      targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  out.axe[label] = res.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  out.axe[label + '_minor'] = res.filter((v) => !(v.impact === 'serious' || v.impact === 'critical')).map((v) => v.id);
}

// Navigation and resource timing of the page's load.
async function loadFigures(page) {
  return page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource');
    const ready = performance.getEntriesByName('console-ready')[0];
    const bytes = res.reduce((a, r) => a + (r.transferSize || 0), nav.transferSize || 0);
    const body = res.reduce((a, r) => a + (r.encodedBodySize || 0), nav.encodedBodySize || 0);
    return {
      dom_interactive_ms: Math.round(nav.domInteractive),
      dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
      load_ms: Math.round(nav.loadEventEnd),
      ready_ms: ready ? Math.round(ready.startTime) : null,
      transferred_bytes: bytes,
      body_bytes: body,
      requests: res.length + 1,
      resources: res.map((r) => ({ name: new URL(r.name).pathname, transfer: r.transferSize, body: r.encodedBodySize })),
    };
  });
}

const rowOf = (page, id) => page.locator(`#recordings-body tr[data-id="${id}"]`);
const eventSeen = (page, type) => page.waitForSelector(`#events li[data-type="${type}"]`,
  { state: 'attached', timeout: 30000 });

// Polls fn(arg) in the page until it is true. page.waitForFunction would
// need 'unsafe-eval', which the console's CSP (rightly) refuses.
async function until(page, fn, arg, timeout, what) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(fn, arg)) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await page.waitForTimeout(100);
  }
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'edgerec-console-'));
let context;
let failed = false;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // Chrome reports each 4xx as a console error: the signed-out session
  // check and the wrong password answer 401 on purpose.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(m.text());
  });
  page.on('dialog', (d) => d.accept());

  // 1. Cold load of the sign-in page.
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  out.cold = await loadFigures(page);
  if (!(await page.isVisible('#signin'))) throw new Error('the sign-in form is not shown');
  await axe(page, 'signin');
  await page.screenshot({ path: path.join(outDir, 'signin-desktop.png') });

  // 2. Sign in (a wrong password first: the form says so).
  await page.fill('#signin-user', user);
  await page.fill('#signin-password', password + 'x');
  await page.click('#signin-form button[type=submit]');
  await until(page, () => document.getElementById('signin-error').textContent.includes('Wrong'),
    null, 15000, 'the wrong password message');
  await page.fill('#signin-password', password);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#page-recordings:not([hidden])', { timeout: 15000 });
  step('signed_in');

  // 3. Reload signed in: the session survives; timing of a warm, signed-in load.
  await page.reload({ waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  await page.waitForSelector('#page-recordings:not([hidden])', { timeout: 15000 });
  out.signed_in = await loadFigures(page);

  // 4. Start: subscribe to the room first, then start from the form.
  await page.fill('#start-room', room);
  await page.dispatchEvent('#start-room', 'change');
  await until(page, () => /live: [1-9]/.test(document.getElementById('live').textContent),
    null, 15000, 'the room subscription');
  await page.selectOption('#start-quality', 'low');
  await page.click('#start-button');
  await page.waitForSelector(`#recordings-body tr[data-status="recording"]`, { timeout: 30000 });
  const id = await page.getAttribute('#recordings-body tr[data-status="recording"]', 'data-id');
  out.recording_id = id;
  step('started', { id });
  await page.waitForTimeout(2500);

  // 5. Pause, resume, stop: each through its button; each event arrives.
  for (const [button, type, status] of [['pause', 'recording_paused', 'paused'],
    ['resume', 'recording_resumed', 'recording'], ['stop', 'recording_stopped', null]]) {
    await rowOf(page, id).locator(`button[data-action="${button}"]`).click();
    await eventSeen(page, type);
    if (status) await page.waitForSelector(`#recordings-body tr[data-id="${id}"][data-status="${status}"]`, { timeout: 15000 });
    step(button, { event: type });
    if (button === 'resume') await page.waitForTimeout(2000);
  }

  // 6. Completed (the worker's event reaches the page; no reload).
  await eventSeen(page, 'recording_completed').catch(() => {});
  await page.waitForSelector(`#recordings-body tr[data-id="${id}"][data-status="completed"]`, { timeout: SLOW });
  step('completed');
  await until(page, (rid) => {
    const img = document.querySelector(`#recordings-body tr[data-id="${rid}"] img`);
    return img && img.complete && img.naturalWidth > 0;
  }, id, 15000, 'the thumbnail');
  step('thumbnail');

  // 7. Play in the page until currentTime > 1.
  await rowOf(page, id).locator('button[data-action="play"]').click();
  await page.evaluate(() => { const v = document.getElementById('player-video'); v.muted = true; v.play(); });
  await until(page, () => document.getElementById('player-video').currentTime > 1, null, 30000, 'playback past 1 s');
  const played = await page.evaluate(() => {
    const v = document.getElementById('player-video');
    return { currentTime: v.currentTime, duration: v.duration, readyState: v.readyState, error: v.error && v.error.code };
  });
  step('played', played);

  // 8. Download through the link.
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 30000 }),
    rowOf(page, id).locator('a', { hasText: 'Download' }).click(),
  ]);
  const saved = path.join(outDir, 'download-' + (download.suggestedFilename() || 'recording'));
  await download.saveAs(saved);
  // The state as the session sees it, to compare the download with.
  const state = await page.evaluate(async (rid) => {
    const tr = document.querySelector(`#recordings-body tr[data-id="${rid}"]`);
    const room = tr.querySelector('td[data-label="Room"]').textContent;
    const r = await fetch('/api/webrtc/rooms/' + encodeURIComponent(room) + '/recording/' + rid + '/status');
    return r.json();
  }, id);
  step('downloaded', { file: saved, bytes: fs.statSync(saved).size, name: download.suggestedFilename(),
    file_size_bytes: state.file_size_bytes, checksum: state.metadata && state.metadata.checksum });

  // 9. Screenshots and axe at desktop width.
  await page.screenshot({ path: path.join(outDir, 'recordings-desktop.png'), fullPage: true });
  await axe(page, 'recordings_desktop');
  await page.click('#nav a[data-page="rooms"]');
  await page.waitForSelector('#page-rooms:not([hidden])');
  await page.screenshot({ path: path.join(outDir, 'rooms-desktop.png'), fullPage: true });
  await axe(page, 'rooms_desktop');
  await page.click('#nav a[data-page="system"]');
  await page.waitForSelector('#health-status', { timeout: 15000 });
  await page.waitForSelector('#sys-policies table, #sys-policies:not(:empty)', { timeout: 15000 });
  await page.screenshot({ path: path.join(outDir, 'system-desktop.png'), fullPage: true });
  await axe(page, 'system_desktop');
  out.system = await page.evaluate(() => ({
    health: document.getElementById('health-status').textContent,
    policies: [...document.querySelectorAll('#sys-policies tr[data-policy]')].map((t) => t.dataset.policy),
  }));

  // 10. Phone width: nothing wider than the screen; screenshots; axe.
  await page.setViewportSize({ width: 390, height: 844 });
  out.phone = {};
  for (const p of ['recordings', 'rooms', 'system']) {
    await page.click(`#nav a[data-page="${p}"]`);
    await page.waitForSelector(`#page-${p}:not([hidden])`);
    await page.waitForTimeout(300);
    out.phone[p] = await page.evaluate(() => document.documentElement.scrollWidth);
    await page.screenshot({ path: path.join(outDir, p + '-phone.png'), fullPage: true });
    await axe(page, p + '_phone');
  }
  await page.setViewportSize({ width: 1280, height: 860 });

  // 11. Delete (the confirmation is accepted); the row goes, the event comes.
  await page.click('#nav a[data-page="recordings"]');
  await page.click('#player-close');
  await rowOf(page, id).locator('button[data-action="delete"]').click();
  await page.waitForSelector(`#recordings-body tr[data-id="${id}"]`, { state: 'detached', timeout: 30000 });
  await eventSeen(page, 'recording_deleted');
  step('deleted');

  out.events = await page.evaluate(() => [...document.querySelectorAll('#events li')].map((li) => li.dataset.type).reverse());
  out.page_errors = errors;
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
  failed = true;
  try {
    const page = context && context.pages()[0];
    if (page) await page.screenshot({ path: path.join(outDir, 'failure.png'), fullPage: true });
  } catch { /* nothing more to keep */ }
} finally {
  if (context) await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
process.exit(failed ? 1 : 0);
