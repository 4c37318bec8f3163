// The dashboard end to end, in real headless Chromium (Debian's, through playwright-core),
// against the local stack as `make dev` runs it. Env: API_URL, API_KEY (an app from make
// dev-app), SHOTS (where the screenshots go; default docs/dashboard). scripts/dashboard-test.sh
// starts the stack, makes the app and runs this.
//
// What the API says is the truth: every number the page shows is compared with the API's own
// answer to the same question. The browser console must stay free of errors and no request may
// fail, except the two the test provokes on purpose (a bad key's 401, an out-of-window 422),
// each expected exactly once.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import assert from 'node:assert/strict';

const API_URL = process.env.API_URL ?? fail('API_URL');
const API_KEY = process.env.API_KEY ?? fail('API_KEY');
const SHOTS = resolve(process.env.SHOTS ?? '../docs/dashboard');
const DASHBOARD = `${API_URL}/dashboard`;
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };
mkdirSync(SHOTS, { recursive: true });

function fail(name) {
  console.error(`e2e: ${name} is not set`);
  process.exit(2);
}
const log = (...a) => console.log('e2e:', ...a);
const started = Date.now();
const step = (name) => log(`[+${((Date.now() - started) / 1000).toFixed(1)}s] ${name}`);

async function api(path, init = {}) {
  const r = await fetch(API_URL + path, {
    ...init,
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json', ...(init.headers ?? {}) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${r.status} ${text}`);
  return r.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text;
}
const post = (path, body) => api(path, { method: 'POST', body });
async function until(what, check, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
const digits = (s) => Number(String(s).replace(/[^\d]/g, ''));

// ---- The world, through the API: two people with a phone (push) and a number (SMS) each, a
// push to both, u1 clicks, u2's phone confirms delivery.
step('seeding through the API');
const tag = Date.now().toString(36);
const sub = (body) => post('/v1/subscriptions', body);
const u1 = `u1-${tag}`;
const u2 = `u2-${tag}`;
const p1 = (await sub({ channel: 'push', token: `tok-1-${tag}`, platform: 'android', external_user_id: u1 })).subscription_id;
const p2 = (await sub({ channel: 'push', token: `tok-2-${tag}`, platform: 'ios', external_user_id: u2 })).subscription_id;
await sub({ channel: 'sms', phone_number: '+15551234561', external_user_id: u1 });
await sub({ channel: 'sms', phone_number: '+15551234562', external_user_id: u2 });
const sent = await post('/v1/messages', {
  channel: 'push',
  contents: { title: 'Back in stock', body: 'The blue sneakers are back, in every size, until Sunday' },
  include_external_user_ids: [u1, u2],
});
const MSG = sent.message_id;
await until('both pushes sent', async () => (await api(`/v1/messages/${MSG}`)).stats.sent === 2);
await post('/v1/events', { events: [{ message_id: MSG, subscription_id: p1, kind: 'clicked' }, { message_id: MSG, subscription_id: p2, kind: 'delivered' }] });
await until('stats caught up', async () => {
  const s = (await api(`/v1/messages/${MSG}`)).stats;
  return s.clicked === 1 && s.delivered === 1;
});

// ---- The browser, watched for errors the whole run.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
/** Failures provoked on purpose: status → how many times it may be seen (each exactly). */
const expected = new Map();
let expectedSeen = new Map();
function expectFailure(status) {
  expected.set(status, (expected.get(status) ?? 0) + 1);
}
function watch(page, name) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const provoked = /the server responded with a status of (\d+)/.exec(m.text());
    if (provoked && expected.has(Number(provoked[1]))) return; // counted on its response below
    problems.push(`${name} console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name} page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // A download's blob: URL is revoked after use; anything else failing is a problem.
    if (!r.url().startsWith('blob:')) problems.push(`${name} request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const n = expectedSeen.get(r.status()) ?? 0;
    if (n < (expected.get(r.status()) ?? 0)) expectedSeen.set(r.status(), n + 1);
    else problems.push(`${name} failed request: ${r.request().method()} ${r.url()} → ${r.status()}`);
  });
}
async function newPage(viewport, name) {
  // The person's zone is not UTC: what they type is local time, what the API gets is UTC.
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'Europe/Paris', acceptDownloads: true });
  const page = await context.newPage();
  watch(page, name);
  return { context, page };
}
async function shot(page, name) {
  // At phone width nothing may make the page scroll sideways (wide tables scroll in their box).
  const overflow = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const by = document.documentElement.scrollWidth - width;
    // The outermost elements reaching past the right edge, to say what is too wide.
    const wide = [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > width + 1)
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}.${e.className} ${Math.round(e.getBoundingClientRect().width)}px`);
    return { by, wide };
  });
  assert.ok(overflow.by <= 0, `${name}: the page scrolls sideways by ${overflow.by}px: ${overflow.wide.join(', ')}`);
  await shotOnly(page, name);
}
const shotOnly = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true, animations: 'disabled' });

try {
  const { page } = await newPage(DESKTOP, 'desktop');

  // ---- First load, timed by the browser itself.
  step('first load');
  await page.goto(DASHBOARD, { waitUntil: 'load' });
  await page.getByLabel('API key').waitFor();
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource').map((r) => ({ name: r.name, bytes: r.transferSize }));
    return { ttfb: n.responseStart, domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd, res };
  });
  log(`first load: TTFB ${nav.ttfb.toFixed(0)} ms, DOMContentLoaded ${nav.domContentLoaded.toFixed(0)} ms, load ${nav.load.toFixed(0)} ms (navigation timing); ${nav.res.length} resources, ${nav.res.reduce((a, r) => a + r.bytes, 0)} bytes transferred`);
  const transferred = nav.res.reduce((a, r) => a + r.bytes, 0);
  assert.ok(transferred < 30_000, `the bundle goes gzipped: ${transferred} bytes transferred`);
  for (const r of nav.res) assert.ok(r.name.startsWith(`${API_URL}/dashboard/`), `only this origin: ${r.name}`);
  await shot(page, 'signin-desktop');

  // ---- Sign in: a bad key says so, a good one is kept in the tab.
  step('sign in');
  expectFailure(401);
  await page.getByLabel('API key').fill('rk_not_a_key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not accepted' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a bad key is not kept');
  await page.getByLabel('API key').fill(API_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Messages' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('retarget.apiKey')), API_KEY);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in local storage');

  // ---- The list: the API's message, newest first, with its funnel at a glance.
  step('messages list');
  const listed = await api('/v1/messages?limit=20');
  const row = page.locator('table.messages tbody tr').filter({ hasText: MSG });
  await row.waitFor();
  const firstRowId = await page.locator('table.messages tbody tr').first().locator('a').first().textContent();
  assert.equal(firstRowId, listed.messages[0].message_id, 'newest first, as the API lists');
  assert.match(await row.textContent(), /Back in stock — The blue sneakers/);
  assert.match(await row.textContent(), /2\b.*→.*1 \(50%\).*→.*1 \(50%\)/, 'funnel at a glance: sent 2 → delivered 1 (50%) → clicked 1 (50%)');
  await shot(page, 'messages-desktop');

  // ---- The activity panel: the stats and every action's count, against the API's.
  step('activity panel');
  await row.getByRole('link', { name: MSG }).click();
  await page.getByRole('heading', { name: /Push message/ }).waitFor();
  const message = await api(`/v1/messages/${MSG}`);
  for (const [kind, n] of Object.entries(message.stats)) {
    assert.equal(digits(await page.locator(`td[data-kind="${kind}"]`).textContent()), n, `stats.${kind}`);
  }
  await page.locator('table.activity').waitFor();
  const actions = ['sent', 'delivered', 'not_delivered', 'clicked', 'not_clicked', 'converted', 'not_converted'];
  let checked = 0;
  for (const action of actions) {
    for (const channel of ['push', 'sms', 'email']) {
      const want = await api(`/v1/messages/${MSG}/audience/count?action=${action}&channel=${channel}`);
      const cells = page.locator(`tr[data-action="${action}"] td[data-channel="${channel}"]`);
      assert.equal(digits(await cells.locator('[data-col] .v, .v').first().textContent()), want.count, `${action} on ${channel}`);
      if (channel !== 'push') {
        assert.equal(digits(await page.locator(`tr[data-action="${action}"] td[data-channel="${channel}"][data-col="unreachable"] .v`).textContent()), want.unreachable, `${action} unreachable on ${channel}`);
      }
      checked++;
    }
  }
  log(`activity: ${checked} counts equal the API's`);
  const combined = await api(`/v1/messages/${MSG}/audience/count?did=delivered&did_not=clicked&channel=push`);
  await until('combined count', async () => (await page.getByTestId('combined-count').textContent()).includes('subscriptions'));
  assert.equal(digits(await page.getByTestId('combined-count').locator('.v').textContent()), combined.count, 'did delivered, did not clicked');
  await shot(page, 'message-desktop');

  // ---- A CSV, downloaded from the page, is the API's CSV.
  step('CSV download');
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV: Sent on push' }).click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  assert.equal(csv, await api(`/v1/messages/${MSG}/audience.csv?action=sent&channel=push`), 'the page saves the API’s CSV');
  assert.match(csv, /^subscription_id,external_user_id\n/);
  assert.equal(csv.trim().split('\n').length, 3, 'header and two people');

  // ---- Retarget from the UI, at a local time; the clock moves; it dispatches.
  step('retarget, scheduled');
  const form = page.locator('form.retarget');
  await form.getByLabel('Action', { exact: true }).selectOption('not_clicked');
  await form.getByLabel('Send on', { exact: true }).selectOption('sms');
  const want = await api(`/v1/messages/${MSG}/audience/count?action=not_clicked&channel=sms`);
  await until('live count', async () => (await page.getByTestId('live-count').textContent()).includes('Audience now'));
  assert.equal(digits((await page.getByTestId('live-count').locator('strong').textContent())), want.count, 'the live count is the API’s');
  await form.getByLabel('Body', { exact: true }).fill('Still thinking about them? 10% off today');
  await form.getByLabel('At a time').check();
  const local = await form.getByLabel('Send at (your local time)').inputValue();
  const utcShown = (await page.locator('#rt-at-utc').textContent()).match(/as (\S+Z)/)[1];
  await page.locator('section[aria-labelledby="retarget-title"]').screenshot({ path: `${SHOTS}/retarget-desktop.png`, animations: 'disabled' });
  await form.getByRole('button', { name: 'Review retarget' }).click();
  await form.getByRole('button', { name: 'Confirm retarget' }).click();
  const createdText = await form.getByRole('status').textContent();
  const RT = createdText.match(/Retarget (\S+) created/)[1];
  const rt = await api(`/v1/retargets/${RT}`);
  assert.equal(rt.send_at, utcShown, 'sent as the UTC the page showed');
  // Europe/Paris in December is UTC+1: the local wall-clock time is one hour ahead of the UTC one.
  assert.equal(new Date(`${local}:00+01:00`).toISOString().replace('.000Z', 'Z'), rt.send_at, `local ${local} → UTC ${rt.send_at}`);
  assert.deepEqual([rt.action, rt.channel, rt.status], ['not_clicked', 'sms', 'scheduled']);
  const rtRow = page.locator(`tr[data-retarget="${RT}"]`);
  await rtRow.waitFor();
  assert.equal(await rtRow.getAttribute('data-status'), 'scheduled');
  step('advance the clock; watch it dispatch');
  await post('/dev/clock', { advance_seconds: 3660 });
  // The page's clock did not move with the stack's: to it, the send is still an hour out, so it
  // asks only every 30 s; a person who moved the clock presses Refresh. Once due (the next
  // scheduler tick, 1 s here), the page follows it by itself while it is dispatching.
  await until('the scheduler claimed it', async () => (await api(`/v1/retargets/${RT}`)).status !== 'scheduled');
  await page.locator('section[aria-labelledby="retargets-title"]').getByRole('button', { name: 'Refresh' }).click();
  await page.locator(`tr[data-retarget="${RT}"][data-status="dispatched"]`).waitFor({ timeout: 30_000 });
  const done = await api(`/v1/retargets/${RT}`);
  for (const col of ['audience_size', 'enqueued', 'unreachable', 'deferred', 'capped']) {
    assert.equal(digits(await rtRow.locator(`[data-col="${col}"]`).textContent()), done[col], `retarget ${col}`);
  }
  assert.equal(done.audience_size, want.count, 'dispatched to the counted audience');

  // ---- Out of the 30-day window: the API's own words.
  step('out of the window');
  const clock = await api('/dev/clock');
  const far = new Date(Date.parse(clock.now) + 40 * 86400_000);
  // As the person in Paris would type it.
  const typed = (d) => {
    const p = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Paris', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(d).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
  };
  expectFailure(422);
  await form.getByLabel('Send at (your local time)').fill(typed(far));
  await form.getByRole('button', { name: 'Review retarget' }).click();
  await form.getByRole('button', { name: 'Confirm retarget' }).click();
  const windowError = await form.getByRole('alert').textContent();
  const apiSays = await fetch(`${API_URL}/v1/retargets`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ source_message_id: MSG, action: 'not_clicked', channel: 'sms', contents: { body: 'x' }, send_at: far.toISOString().replace(/\.\d+Z/, 'Z') }),
  }).then((r) => r.json());
  assert.equal(apiSays.code, 'send_at_out_of_window');
  assert.ok(windowError.toLowerCase().includes(apiSays.detail.split(':')[0].toLowerCase().slice(0, 30)), `the API's message: "${windowError}" vs "${apiSays.detail}"`);

  // ---- Another one, a day out (on the stack's clock), cancelled while scheduled.
  step('cancel a scheduled retarget');
  await form.getByLabel('Send at (your local time)').fill(typed(new Date(Date.parse(clock.now) + 86400_000)));
  await form.getByRole('button', { name: 'Review retarget' }).click();
  await form.getByRole('button', { name: 'Confirm retarget' }).click();
  const RT2 = (await form.getByRole('status').textContent()).match(/Retarget (\S+) created/)[1];
  await page.locator(`tr[data-retarget="${RT2}"][data-status="scheduled"]`).waitFor();
  await page.getByRole('button', { name: `Cancel retarget ${RT2}` }).click();
  await page.locator(`tr[data-retarget="${RT2}"][data-status="cancelled"]`).waitFor();
  assert.equal((await api(`/v1/retargets/${RT2}`)).status, 'cancelled');
  await page.locator('section[aria-labelledby="retargets-title"]').screenshot({ path: `${SHOTS}/retargets-desktop.png`, animations: 'disabled' });

  // ---- A retarget's own message opens like any other.
  step("the retarget's message");
  await rtRow.getByRole('link').click();
  await page.getByRole('heading', { name: /Sms message/ }).waitFor();
  assert.equal(await page.locator('.facts').getByRole('link').textContent(), MSG, 'retarget of the source');
  // Its own activity (a retarget of the retarget starts here); loaded before leaving the page.
  await page.locator('table.activity').waitFor();
  await page.locator('tr[data-retarget]').or(page.getByText('No retargets of this message yet.')).first().waitFor();

  // ---- The delivery policy, edited.
  step('delivery policy');
  await page.getByRole('link', { name: 'Delivery policy' }).click();
  await page.getByRole('heading', { name: 'Delivery policy' }).waitFor();
  await page.getByLabel(/Hold sends during quiet hours/).check();
  await page.getByLabel('From', { exact: true }).fill('22:00');
  await page.getByLabel('Until', { exact: true }).fill('07:30');
  await page.getByLabel('For recipients whose own zone is unknown').fill('Europe/Paris');
  await page.getByLabel(/Limit how many messages/).check();
  await page.getByLabel('At most (messages)').fill('5');
  await page.getByLabel(/Per \(hours/).fill('48');
  await page.getByRole('button', { name: 'Save policy' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved' }).waitFor();
  assert.deepEqual(await api('/v1/app/delivery-policy'), {
    quiet_hours: { start: '22:00', end: '07:30', channels: ['sms'] },
    default_timezone: 'Europe/Paris',
    frequency_cap: { max: 5, per_hours: 48, channels: ['push', 'sms', 'email'] },
  });
  await page.reload();
  assert.equal(await page.getByLabel('From', { exact: true }).inputValue(), '22:00', 'read back after a reload');
  await shot(page, 'policy-desktop');

  // ---- Keyboard: the sign-out button is reachable and works; the key is forgotten.
  step('sign out');
  await page.getByRole('button', { name: 'Sign out' }).focus();
  await page.keyboard.press('Enter');
  await page.getByLabel('API key').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'signed out: the key is gone');

  // ---- Phone width: every screen again.
  step('phone screenshots');
  const phone = (await newPage(PHONE, 'phone')).page;
  await phone.goto(DASHBOARD);
  await shot(phone, 'signin-phone');
  await phone.getByLabel('API key').fill(API_KEY);
  await phone.getByLabel('API key').press('Enter');
  await phone.locator('table.messages').waitFor();
  await shot(phone, 'messages-phone');
  await phone.goto(`${DASHBOARD}#/messages/${MSG}`);
  await phone.locator('table.activity').waitFor();
  await phone.locator(`tr[data-retarget="${RT}"]`).waitFor();
  await shot(phone, 'message-phone');
  await phone.locator('section[aria-labelledby="retargets-title"]').screenshot({ path: `${SHOTS}/retargets-phone.png`, animations: 'disabled' });
  await phone.goto(`${DASHBOARD}#/policy`);
  await phone.getByRole('button', { name: 'Save policy' }).waitFor();
  await shot(phone, 'policy-phone');

  for (const [status, n] of expected) assert.equal(expectedSeen.get(status) ?? 0, n, `the provoked ${status} was seen`);
  assert.deepEqual(problems, [], 'no console error and no failed request');
  step(`passed: first load ${nav.load.toFixed(0)} ms (loadEventEnd), screenshots in ${SHOTS}`);
} catch (e) {
  console.error('e2e FAILED:', e);
  if (problems.length) console.error('and:', problems);
  process.exitCode = 1;
} finally {
  await browser.close();
}
