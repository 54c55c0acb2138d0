#!/usr/bin/env node
// Browser test of the WebAssembly UI against the real backend, gateway and
// trainer on 127.0.0.1. It builds a throwaway data folder: an admin made
// with `backend create-admin`, a Pro user with $25.00 of credit made over
// REST, and a small Fashion-MNIST sample. It then drives Debian's Chromium
// through playwright-core and checks sign-in, the home screen, model
// creation, training to completion with live progress, stop and resume,
// billing and the 360 px layout. It prints `e2e: N passed, N failed` last
// and exits non-zero on a failure. Every process it starts is killed on
// exit, failure included.
//
// Run after `make all ui`: node tests/e2e/ui.test.mjs
// Screenshots of the main screens go to $E2E_SCREENSHOTS when it names a
// folder, else to the run's temporary folder, which is kept only when a
// check fails.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)),
  '../..');
const bin = (name) => path.join(root, 'build/bin', name);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'trainyard-e2e-'));
const data = path.join(tmp, 'data');
const shots = process.env.E2E_SCREENSHOTS || path.join(tmp, 'screenshots');
const children = [];
let browser = null;
let passed = 0;
let failed = 0;

// The whole run's limit, so a hung server cannot hang `make test`.
const TOTAL_TIMEOUT_MS = 90000;
const ADMIN = { email: 'admin@e2e.local', password: 'admin-password-1' };
const USER = { email: 'user@e2e.local', password: 'user-password-1' };
const CREDIT = 25000000; // micro-dollars
const TRAIN_IMAGES = 600; // 75 batches of 8: the epoch bar moves
const VAL_IMAGES = 100;

function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`PASS ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail ? ': ' + detail : ''}`);
  }
}

function run(cmd, args, input) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(`${path.basename(cmd)} ${args.join(' ')} failed ` +
      `(status ${r.status}): ${r.stderr}`);
  return r.stdout;
}

// Start a server in its own process group and return its port, read from
// the --port-file it writes once it listens.
async function startServer(name, args, env) {
  const portFile = path.join(tmp, `${name}.port`);
  const log = fs.openSync(path.join(tmp, `${name}.log`), 'w');
  const child = spawn(bin(name), [...args, '--port-file', portFile], {
    env: { ...process.env, ...env },
    stdio: ['ignore', log, log],
    detached: true,
  });
  children.push(child);
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null)
      break;
    const text = fs.existsSync(portFile) ?
      fs.readFileSync(portFile, 'utf8').trim() : '';
    if (/^\d+$/.test(text))
      return Number(text);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not start; see ${tmp}/${name}.log`);
}

function stopAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch (e) {
        // It exited in the meantime.
      }
    }
  }
}

// Call the REST API as a script would: cookie session plus CSRF token.
async function signedInClient(base, credentials) {
  const r = await fetch(`${base}/api/v1/auth/signin`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(credentials),
  });
  if (r.status !== 200)
    throw new Error(`sign-in of ${credentials.email} returned ${r.status}`);
  const cookie = r.headers.get('set-cookie').split(';')[0];
  const { csrf } = await r.json();
  return async (method, p, body) => {
    const res = await fetch(`${base}/api/v1${p}`, {
      method,
      headers: {
        Cookie: cookie,
        'X-CSRF-Token': csrf,
        'Content-Type': 'application/json',
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (res.status >= 300)
      throw new Error(`${method} ${p} returned ${res.status}: ${text}`);
    return text ? JSON.parse(text) : {};
  };
}

async function setUp() {
  fs.mkdirSync(path.join(data, 'datasets'), { recursive: true });
  fs.mkdirSync(shots, { recursive: true });
  run(bin('train'), ['import-fmnist', path.join(data, 'datasets/fm'),
    `train=${TRAIN_IMAGES}`, `val=${VAL_IMAGES}`]);
  run(bin('backend'), ['create-admin', ADMIN.email, '--data', data],
    ADMIN.password + '\n');
  run('sqlite3', [path.join(data, 'trainyard.db'),
    'INSERT INTO datasets(account_id, name, task, path, images, ' +
    `created_at) VALUES(NULL, 'fm', 'classify', 'datasets/fm', ` +
    `${TRAIN_IMAGES + VAL_IMAGES}, 1);`]);
  const backendPort = await startServer('backend',
    ['--data', data, '--listen', '127.0.0.1:0'],
    { TRAINYARD_PWHASH: 'fast', TRAINYARD_TRAIN: bin('train') });
  const gatewayPort = await startServer('gateway', ['--listen',
    '127.0.0.1:0', '--backend', `127.0.0.1:${backendPort}`, '--secret',
    path.join(data, 'gateway.secret'), '--ui', path.join(root, 'build/ui')],
    {});
  const base = `http://127.0.0.1:${gatewayPort}`;
  const admin = await signedInClient(base, ADMIN);
  const account = await admin('POST', '/admin/accounts',
    { ...USER, plan: 'pro' });
  await admin('POST', `/admin/accounts/${account.id}/credits`,
    { amount: CREDIT, description: 'e2e test credit' });
  return base;
}

async function noHorizontalScroll(page) {
  return page.evaluate(() =>
    document.documentElement.scrollWidth <=
    document.documentElement.clientWidth);
}

// Count the canvas pixels that are not transparent, to tell a drawn chart
// from an empty one.
async function inkedPixels(page, id) {
  return page.evaluate((canvasId) => {
    const c = document.getElementById(canvasId);
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4)
      if (px[i] !== 0)
        n++;
    return n;
  }, id);
}

async function testSignIn(page, base) {
  await page.goto(`${base}/`);
  await page.waitForSelector('#signin-email');
  await page.fill('#signin-email', USER.email);
  await page.fill('#signin-password', 'wrong-password');
  await page.click('#signin-submit');
  await page.waitForFunction(() =>
    document.getElementById('signin-error')?.textContent);
  const error = await page.textContent('#signin-error');
  check('wrong password shows message',
    error === 'Invalid email or password.', `got "${error}"`);
  await page.screenshot({ path: path.join(shots, 'signin.png') });

  await page.fill('#signin-password', USER.password);
  await page.press('#signin-password', 'Enter');
  await page.waitForSelector('#balance');
  await page.waitForFunction(() =>
    document.getElementById('balance')?.textContent.startsWith('$'));
  check('sign-in shows home with email',
    (await page.textContent('#who')) === USER.email);
}

async function testHome(page) {
  const balance = await page.textContent('#balance');
  check('home shows balance', balance === '$25.00', `got "${balance}"`);
  await page.waitForSelector('#datasets li');
  const sets = await page.textContent('#datasets');
  check('home lists sample data set', sets.includes('fm (sample)') &&
    sets.includes(`${TRAIN_IMAGES + VAL_IMAGES} images`), `got "${sets}"`);
  await page.waitForSelector('#models-none');
  check('home says no models yet', true);
}

async function testCreateModel(page) {
  await page.fill('#new-name', 'e2e-fmnist');
  await page.selectOption('#new-arch', 'yolov8n-cls.yaml');
  await page.fill('#new-epochs', '3');
  await page.fill('#new-imgsz', '16');
  await page.fill('#new-batch', '8');
  await page.click('#new-submit');
  await page.waitForFunction(() => location.hash === '#/models/1');
  await page.waitForFunction(() =>
    document.getElementById('m-title')?.textContent === 'e2e-fmnist');
  const meta = await page.textContent('#m-meta');
  check('model screen shows arguments',
    meta.includes('image size 16') && meta.includes('batch 8'),
    `got "${meta}"`);
  await page.waitForSelector('#m-type option', { state: 'attached' });
  const type = await page.textContent('#m-type');
  check('instance type shows price', type.includes('$0.50 per hour'),
    `got "${type}"`);
  check('start form has the epochs from New model',
    (await page.inputValue('#m-epochs-input')) === '3');
}

// Start training, then sample the state and both progress bars until the
// session completes.
async function testTraining(page) {
  await page.click('#m-start');
  const samples = [];
  const deadline = Date.now() + 45000;
  let state = '';
  while (Date.now() < deadline) {
    const s = await page.evaluate(() => {
      const bar = (id) => {
        const el = document.getElementById(id);
        return { value: el.value, max: el.max };
      };
      return {
        state: document.getElementById('m-status').dataset.state,
        text: document.getElementById('m-status').textContent,
        epoch: bar('m-epoch-bar'),
        run: bar('m-run-bar'),
      };
    });
    samples.push(s);
    state = s.state;
    if (state === 'completed' || state === 'failed')
      break;
    await page.waitForTimeout(150);
  }
  check('training reaches completed', state === 'completed',
    `last state "${state}", status "${samples.at(-1).text}"`);
  const overfull = samples.filter((s) => s.epoch.value > s.epoch.max ||
    s.run.value > s.run.max);
  check('progress bars never exceed max', overfull.length === 0);
  const epochValues = new Set(samples.map((s) => s.epoch.value));
  const runValues = new Set(samples.map((s) => s.run.value));
  check('progress advances during training',
    epochValues.size + runValues.size >= 4,
    `epoch bar values ${[...epochValues]}, run bar values ${[...runValues]}`);
  const initializing = samples.find((s) => s.state === 'initializing');
  if (initializing)
    check('initializing is said to be free',
      initializing.text.includes('free of charge'), initializing.text);
  const last = samples.at(-1);
  check('run bar full at completion', last.run.value === last.run.max &&
    last.run.max === 3, JSON.stringify(last.run));
  check('epochs done shown', (await page.textContent('#m-epochs')) ===
    'Epochs done: 3 of 3');
  check('loss chart drawn', (await inkedPixels(page, 'chart-loss')) > 500);
  check('accuracy chart drawn', (await inkedPixels(page, 'chart-acc')) > 500);
  check('stop disabled after completion',
    await page.isDisabled('#m-stop'));
  const actionError = await page.textContent('#m-error');
  check('start shows no error', actionError === '', `got "${actionError}"`);
}

async function testBilling(page) {
  await page.waitForFunction(() =>
    document.getElementById('bill-total')?.dataset.rows === '3', null,
  { timeout: 10000 }).catch(() => {});
  const rows = await page.getAttribute('#bill-total', 'data-rows');
  check('billing lists 3 charges', rows === '3', `got ${rows} rows`);
  await page.screenshot({ path: path.join(shots, 'model.png'),
    fullPage: true });

  const href = await page.getAttribute('#bill-csv', 'href');
  const report = await page.evaluate(async (url) => {
    const csv = await fetch(url).then((r) => ({
      status: r.status, text: r.text(),
    }));
    const balance = await fetch('/api/v1/balance').then((r) => r.json());
    return { status: csv.status, text: await csv.text,
      balance: balance.balance };
  }, href);
  check('CSV download link works', report.status === 200 &&
    report.text.startsWith('time_utc,'), `status ${report.status}`);
  const net = report.text.split('\r\n').map((l) => l.split(','))
    .find((f) => f[1] === 'total' && f[4] === 'net');
  const netMicros = net ? Math.round(Number(net[8]) * 1e6) : NaN;
  check('CSV net equals balance change',
    netMicros === report.balance - CREDIT,
    `net ${netMicros}, balance change ${report.balance - CREDIT}`);
  const pdf = await page.getAttribute('#bill-pdf', 'href');
  check('PDF link points at report', pdf === '/api/v1/models/1/billing.pdf');
}

async function testNarrow(page) {
  await page.setViewportSize({ width: 360, height: 640 });
  await page.waitForTimeout(100);
  check('model screen fits 360 px', await noHorizontalScroll(page));
  await page.screenshot({ path: path.join(shots, 'model-360.png'),
    fullPage: true });
  await page.goBack();
  await page.waitForSelector('#model-link-1');
  const hash = await page.evaluate(() => location.hash);
  check('browser back returns home', hash === '' || hash === '#/',
    `hash "${hash}"`);
  await page.waitForFunction(() =>
    document.getElementById('model-state-1')?.textContent);
  const state = await page.textContent('#model-state-1');
  check('home shows model state', state === 'completed, 3 of 3 epochs',
    `got "${state}"`);
  check('home fits 360 px', await noHorizontalScroll(page));
  await page.screenshot({ path: path.join(shots, 'home-360.png'),
    fullPage: true });
}

// Wait until the model screen's state is one of states. Predicates here and
// above allow a missing element, because the screen is rebuilt on the
// hashchange event, a moment after a click changes the hash.
async function waitForState(page, states, timeout) {
  await page.waitForFunction((wanted) =>
    wanted.includes(document.getElementById('m-status')?.dataset.state),
  states, { timeout }).catch(() => {});
  return page.getAttribute('#m-status', 'data-state');
}

// While model 1 trains, a second model's screen names it as the reason
// that cloud training is unavailable; then Stop and Resume work.
async function testStopResume(page) {
  await page.click('#model-link-1');
  await page.waitForFunction(() =>
    document.getElementById('m-status')?.dataset.state === 'completed');
  await page.fill('#m-epochs-input', '200');
  await page.click('#m-start');
  let state = await waitForState(page, ['training'], 20000);
  check('second run starts training', state === 'training', state);

  await page.click('#m-back-link');
  await page.fill('#new-name', 'e2e-second');
  await page.click('#new-submit');
  await page.waitForFunction(() => location.hash === '#/models/2');
  await page.waitForFunction(() =>
    document.getElementById('m-unavailable')?.classList.contains('hidden')
      === false);
  const warning = await page.textContent('#m-unavailable');
  check('other model training is named', warning.startsWith(
    'Cloud training unavailable: model e2e-fmnist is training'), warning);
  check('start disabled while other trains',
    await page.isDisabled('#m-start'));
  check('warning fits 360 px', await noHorizontalScroll(page));

  await page.click('#m-back-link');
  await page.click('#model-link-1');
  await page.waitForFunction(() => {
    const el = document.getElementById('m-epochs');
    return el !== null && /^Epochs done: [1-9]/.test(el.textContent);
  }, null, { timeout: 20000 }).catch(() => {});
  await page.click('#m-stop');
  state = await waitForState(page, ['stopped'], 20000);
  check('stop reaches stopped', state === 'stopped', state);
  check('resume enabled when stopped', !(await page.isDisabled('#m-resume')));
  await page.click('#m-resume');
  state = await waitForState(page, ['initializing', 'training'], 10000);
  check('resume restarts the session',
    state === 'initializing' || state === 'training', state);
  await waitForState(page, ['training'], 20000);
  await page.click('#m-stop');
  state = await waitForState(page, ['stopped'], 20000);
  check('second stop reaches stopped', state === 'stopped', state);
}

async function testSignOut(page) {
  await page.click('#signout');
  await page.waitForSelector('#signin-email');
  check('sign out shows sign-in', true);
  check('sign-in fits 360 px', await noHorizontalScroll(page));
}

async function main() {
  const base = await setUp();
  // A persistent context on a new folder: a fresh profile per run.
  browser = await chromium.launchPersistentContext(
    path.join(tmp, 'chromium'), {
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
        '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
      viewport: { width: 1000, height: 900 },
    });
  const context = browser;
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Chromium logs each 4xx reply as a console error. The 401s of /me
  // before sign-in and of the wrong password are expected, so only other
  // console errors count.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load '))
      pageErrors.push(m.text());
  });

  await testSignIn(page, base);
  await testHome(page);
  await testCreateModel(page);
  await testTraining(page);
  await testBilling(page);
  await testNarrow(page);
  await testStopResume(page);
  await testSignOut(page);
  check('no page errors', pageErrors.length === 0, pageErrors.join('; '));
}

const watchdog = setTimeout(() => {
  console.log(`FAIL e2e run timed out after ${TOTAL_TIMEOUT_MS} ms`);
  stopAll();
  console.log(`e2e: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopAll();
    process.exit(1);
  });
}

try {
  await main();
} catch (e) {
  check('e2e run', false, e.stack || String(e));
} finally {
  if (browser)
    await browser.close().catch(() => {});
  stopAll();
  clearTimeout(watchdog);
}
if (failed === 0)
  fs.rmSync(tmp, { recursive: true, force: true });
else
  console.log(`logs and screenshots kept in ${tmp}`);
console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
