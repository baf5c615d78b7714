// Browser tests of `ctm serve`, in Debian's headless Chromium driven by
// playwright-core. tests/web_browser.rs starts the server against a
// sandbox root and runs this with CTM_URL, CTM_TOKEN, CTM_HOST_FILE and
// CTM_SHOTS (where the screenshots go). Exits non-zero on the first
// failure, naming the step.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { launch, accessible, fitsThePhone, LAPTOP, PHONE } from './common.mjs';

const URL_ = process.env.CTM_URL;
const TOKEN = process.env.CTM_TOKEN;
const HOST_FILE = process.env.CTM_HOST_FILE;
const SHOTS = process.env.CTM_SHOTS;

const { context, page, problems, close } = await launch();
const dialogs = [];
page.on('dialog', (d) => { dialogs.push(d.type()); d.accept().catch(() => {}); });
// The first full answer (200) for each path, for the page weight.
const firstAnswers = new Map();
page.on('response', (r) => {
  const path = new URL(r.url()).pathname;
  if (r.status() === 200 && !firstAnswers.has(path)) {
    // Asked for at once: a page's bodies are gone once the next one loads.
    firstAnswers.set(path, Promise.all([
      r.allHeaders().then((h) => h['content-encoding']),
      r.body().then((b) => b.length),
      r.request().sizes().then((s) => s.responseBodySize),
    ]).then(([encoding, decoded, encoded]) => ({ encoding, encoded, decoded }),
      // Some answers' bodies are gone before they can be asked for (a
      // redirect's); only the ones checked below must be there.
      (e) => ({ error: String(e) })));
  }
});

let step = '';
const api = async (method, path, body) => {
  const r = await fetch(`${URL_}${path.slice(1)}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(data)}`);
  return data;
};

/// Screenshots of the page as it is, at laptop and phone widths.
async function shots(name) {
  await page.screenshot({ path: join(SHOTS, `${name}-laptop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(200);
  await page.screenshot({ path: join(SHOTS, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(LAPTOP);
}

async function editorText() {
  return page.evaluate(() => window.ctmEditor.state.doc.toString());
}

async function setEditorText(text) {
  await page.evaluate((t) => {
    const v = window.ctmEditor;
    v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: t } });
  }, text);
}

try {
  step = 'the login page comes first';
  await page.goto(URL_);
  assert.match(page.url(), /\/login$/);
  await shots('login');

  step = 'a wrong token is refused';
  await page.fill('#token', 'not-the-token');
  await page.click('button[type=submit]');
  await page.waitForSelector('.alert-danger');
  // The refused login answers 401, which the console reports: expected.
  problems.length = 0;

  await accessible(page, 'the login page');

  step = 'the right token logs in';
  await page.fill('#token', TOKEN);
  await page.click('button[type=submit]');
  await page.waitForSelector('#summary .card');
  assert.equal(new URL(page.url()).pathname, '/');
  const cookie = (await context.cookies()).find((c) => c.name === 'ctm_session');
  assert.ok(cookie.httpOnly, 'the session cookie is HttpOnly');
  assert.equal(cookie.sameSite, 'Strict');
  await shots('dashboard-empty');

  step = 'every page has one h1, a skip link first, and focus shown on the navbar';
  assert.equal(await page.locator('h1').count(), 1);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to the content');
  await page.keyboard.press('Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.equal(outline, 'solid', 'the focused navbar link shows its focus');
  await accessible(page, 'the login page\'s successor, the empty dashboard');

  step = 'the editor loads the host file and finds it valid';
  await page.goto(`${URL_}editor`);
  await page.waitForSelector('#validity.text-bg-success');
  const original = await editorText();
  assert.equal(original, readFileSync(HOST_FILE, 'utf8'));
  await page.waitForSelector('#plan .plan-summary');

  step = 'the editor has an accessible name, its problems are announced, its tabs take the arrow keys';
  assert.match(await page.getAttribute('.cm-content', 'aria-label'), /^The host file /);
  assert.equal(await page.getAttribute('#diagnostics', 'aria-live'), 'polite');
  await page.focus('#plan-pane-tab');
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.getAttribute('#network-pane-tab', 'aria-selected'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'network-pane-tab');
  assert.ok(await page.isVisible('#network-pane'));
  await page.keyboard.press('End');
  assert.equal(await page.getAttribute('#container-pane-tab', 'aria-selected'), 'true');
  await page.keyboard.press('Home');
  assert.ok(await page.isVisible('#plan-pane'));
  await accessible(page, 'the editor');

  step = 'the page, its assets and the host file come compressed';
  // Bytes as received (encoded) and once decoded, of the first full
  // answer for each: the assets came with the dashboard, and are only
  // revalidated (304) since.
  const sizes = {};
  for (const path of ['/editor', '/assets/app.js', '/assets/app.css', '/api/source']) {
    assert.ok(firstAnswers.has(path), `${path} was loaded`);
    sizes[path] = await firstAnswers.get(path);
    const { encoding, encoded, decoded } = sizes[path];
    assert.match(encoding ?? '', /^(br|gzip)$/, `${path} is compressed: ${JSON.stringify(sizes[path])}`);
    assert.ok(encoded < decoded, `${path} is smaller as sent: ${JSON.stringify(sizes[path])}`);
  }
  const pageParts = ['/editor', '/assets/app.js', '/assets/app.css'];
  const total = (key) => pageParts.reduce((sum, p) => sum + sizes[p][key], 0);
  console.log(`page weight of /editor: ${pageParts.map((p) => `${p} ${sizes[p].encoding} ${sizes[p].encoded} (${sizes[p].decoded})`).join(', ')}; `
    + `total ${total('encoded')} bytes received (${total('decoded')} decoded); `
    + `then /api/source ${sizes['/api/source'].encoding} ${sizes['/api/source'].encoded} (${sizes['/api/source'].decoded})`);

  step = 'an error shows at its line, with its message';
  const broken = original.replace('    docker                                    // Docker inside the container\n',
    '    docker                                    // Docker inside the container\n    colour "blue"\n');
  assert.notEqual(broken, original);
  const errorLine = broken.split('\n').findIndex((l) => l.includes('colour')) + 1;
  await setEditorText(broken);
  await page.waitForSelector('#validity.text-bg-danger');
  await page.waitForSelector('.cm-lintRange-error');
  const diagnostic = await page.textContent('#diagnostics li');
  assert.ok(diagnostic.startsWith(`${errorLine}:5`), `diagnostic at line ${errorLine}: ${diagnostic}`);
  assert.match(diagnostic, /colour/);
  assert.match(diagnostic, /ctm::unknown-node/);
  // The gutter marks the same line.
  const marked = await page.evaluate(() => {
    const v = window.ctmEditor;
    const el = document.querySelector('.cm-lintRange-error');
    return v.state.doc.lineAt(v.posAtDOM(el)).number;
  });
  assert.equal(marked, errorLine);
  await shots('editor-error');

  step = 'fixing it brings back the plan, with its diffs';
  const edited = original.replace('forward "tcp" host=8080 container=80', 'forward "tcp" host=8081 container=80');
  await setEditorText(edited);
  await page.waitForSelector('#validity.text-bg-success');
  await page.waitForSelector('#plan .plan-files details');
  await page.click('#plan .plan-files details summary');
  const diffText = await page.textContent('#plan pre.diff');
  assert.match(diffText, /^\+\+\+ b\//m);
  await shots('editor-plan');

  step = 'the container form offers the networks, templates and images there are, and shows errors at their field';
  await page.click('[data-tab="container-pane"]');
  await page.waitForSelector('#container-network option[value="lan"]', { state: 'attached' });
  await page.waitForSelector('#container-template option[value="base"]', { state: 'attached' });
  await page.waitForSelector('#container-image option[value="debian-bookworm"]', { state: 'attached' });
  assert.ok(await page.isChecked('#container-autostart'), 'a new container starts at boot');
  assert.deepEqual(await page.$$eval('#container-root option', (os) => os.map((o) => o.value)),
    ['', 'snapshot', 'reflink', 'copy', 'overlay'], 'the root field offers every kind, auto as the default');
  await page.fill('#container-name', 'tmp');
  await page.selectOption('#container-template', 'base');
  await page.fill('#container-memory', 'lots');
  await page.fill('#container-forwards', 'tcp 80');
  await page.click('#container-form button[type=submit]');
  await page.waitForSelector('#container-forwards.is-invalid');
  assert.match(await page.textContent('#container-forwards-error'), /is not a forward/);
  await page.fill('#container-forwards', '');
  await page.click('#container-form button[type=submit]');
  await page.waitForSelector('#container-memory.is-invalid');
  assert.match(await page.textContent('#container-memory-error'), /memory|size|lots/i);
  await shots('editor-form-error');
  await setEditorText(edited);
  await page.waitForSelector('#validity.text-bg-success');
  await page.fill('#container-memory', '');

  step = 'the container form adds a container and keeps the comments';
  await page.fill('#container-name', 'db');
  await page.selectOption('#container-template', 'base');
  await page.selectOption('#container-network', 'lan');
  await page.fill('#container-forwards', 'tcp 5432 5432');
  await page.check('#container-docker');
  await page.selectOption('#container-root', 'copy');
  await page.click('#container-form button[type=submit]');
  await page.waitForFunction(() => window.ctmEditor.state.doc.toString().includes('container "db"'));
  const withDb = await editorText();
  assert.ok(withDb.startsWith(edited.trimEnd()), 'the text before the new container is untouched');
  for (const comment of ['// NAT and tunnels leave through this link', '// ctm picks the addresses', '// masquerade out of the uplink']) {
    assert.ok(withDb.includes(comment), `comment kept: ${comment}`);
  }
  assert.match(withDb, /container "db" \{\n {4}from "base"\n {4}network "lan"\n {4}docker\n {4}root "copy"\n {4}forward "tcp" host=5432 container=5432\n\}/);
  await page.waitForSelector('#validity.text-bg-success');
  await shots('editor-form');

  step = 'saving writes the file';
  await page.click('#save');
  await page.waitForFunction(() => document.getElementById('saved-state').textContent === 'saved');
  assert.equal(readFileSync(HOST_FILE, 'utf8'), withDb);

  step = 'unsaved edits warn before leaving and are kept as a draft';
  const unsaved = `${withDb}// not saved yet\n`;
  await setEditorText(unsaved);
  await page.waitForTimeout(700);
  await page.reload();
  await page.waitForSelector('#restore-draft');
  assert.ok(dialogs.includes('beforeunload'), `leaving asked first: ${dialogs}`);
  await page.click('#restore-draft');
  assert.equal(await editorText(), unsaved);
  await page.waitForFunction(() => document.getElementById('saved-state').textContent === 'unsaved changes');
  // A volume for db, which the dashboard shows once applied.
  const withVolume = withDb.replace('container "db" {\n',
    'volume "dbdata"\ncontainer "db" {\n    volume "dbdata" "/var/lib/db" idmap=#true\n');
  assert.notEqual(withVolume, withDb);
  await setEditorText(withVolume);
  await page.waitForSelector('#validity.text-bg-success');
  await page.click('#save');
  await page.waitForFunction(() => document.getElementById('saved-state').textContent === 'saved');
  assert.equal(readFileSync(HOST_FILE, 'utf8'), withVolume);
  await page.waitForTimeout(700);

  step = 'apply shows the plan and completes against the sandbox root';
  await page.goto(`${URL_}apply`);
  await page.waitForSelector('#plan .plan-summary');
  await page.waitForSelector('#apply-button:not([disabled])');
  await page.click('#apply-button');
  await page.waitForSelector('#progress-log .result', { timeout: 30000 });
  const result = await page.textContent('#progress-log .result');
  assert.equal(result, 'Done: the host is on generation 1.');
  const log = await page.textContent('#progress-log');
  assert.match(log, /Applying generation 1/);
  assert.match(log, /Health check/);
  await shots('apply-done');
  await accessible(page, 'the apply page');

  step = 'the dashboard shows the applied generation';
  await page.goto(URL_);
  await page.waitForSelector('#containers table');
  const containers = await page.textContent('#containers');
  for (const name of ['builder', 'ci', 'db', 'web']) assert.ok(containers.includes(name), name);
  assert.match(await page.textContent('main'), /unknown: files-only root/);
  assert.equal(await page.textContent('#summary .card .fs-5'), '1');
  await page.waitForSelector('#volumes table');
  const volumes = await page.textContent('#volumes');
  assert.match(volumes, /dbdata/);
  assert.match(volumes, /\/var\/lib\/ctm\/volumes\/dbdata/);
  assert.match(volumes, /directory/, 'made by the apply, even on a files-only root');
  assert.match(volumes, /in sync/);
  assert.equal(await page.textContent('#volumes a[href="/containers/db"]'), 'db');
  await shots('dashboard');

  step = 'the container list takes a search and a filter';
  await page.fill('#filter-text', 'builder');
  assert.equal(await page.locator('#containers tbody tr:not(.d-none)').count(), 1);
  assert.match(await page.textContent('#containers tbody tr:not(.d-none)'), /builder/);
  await page.fill('#filter-text', '');
  await page.selectOption('#filter-state', 'drift');
  assert.equal(await page.locator('#containers tbody tr:not(.d-none)').count(), 0);
  await page.selectOption('#filter-state', '');
  assert.equal(await page.locator('#containers tbody tr:not(.d-none)').count(), 4);
  await accessible(page, 'the dashboard');
  await fitsThePhone(page, 'the dashboard');

  step = 'the UI follows the system\'s dark theme';
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.reload();
  await page.waitForSelector('#containers table');
  assert.equal(await page.getAttribute('html', 'data-bs-theme'), 'dark');
  await accessible(page, 'the dashboard, dark');
  await shots('dashboard-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  step = 'a container page shows its settings and steps, and what a files-only root cannot tell';
  await page.click('#containers a[href="/containers/web"]');
  await page.waitForSelector('#settings table');
  const settings = await page.textContent('#settings');
  assert.match(settings, /\/srv\/www → \/var\/www \(read-only\)/);
  assert.match(settings, /tcp 8081 → 80/);
  assert.match(settings, /memory 1\.0 GiB, 2 CPUs/);
  assert.match(await page.textContent('#state'), /unknown: files-only root/);
  assert.match(await page.textContent('#steps'), /networkd|root file system/);
  assert.ok(await page.isDisabled('[data-verb="stop"]'));
  assert.match(await page.textContent('#use-now'), /files-only root/);
  await page.focus('#overview-pane-tab');
  await page.keyboard.press('ArrowRight');
  assert.ok(await page.isVisible('#console-pane'));
  assert.ok(await page.isDisabled('#console-open'));
  await page.keyboard.press('ArrowLeft');
  await accessible(page, 'the container page');
  await fitsThePhone(page, 'the container page');
  await shots('container');

  step = 'the snapshots and backups card lists an archive, downloads it by cookie, and shows a restore first';
  await page.waitForSelector('#archives table');
  assert.match(await page.textContent('#snapshots'), /No snapshots/);
  assert.match(await page.textContent('#archives'), /20261204T100000Z/);
  const href = await page.getAttribute('[data-download="20261204T100000Z"]', 'href');
  assert.equal(href, '/api/containers/web/archives/20261204T100000Z/download');
  // The page's own session (its HttpOnly cookie) authorizes the link: no
  // token in the URL.
  const download = await page.request.get(`${URL_}${href.slice(1)}`);
  assert.equal(download.status(), 200);
  assert.equal(await download.text(), 'archive bytes');
  await page.click('[data-restore="archive"][data-id="20261204T100000Z"]');
  await page.waitForSelector('#restore-plan');
  assert.match(await page.textContent('#restore-steps'), /verify the archive/);
  // A files-only root has no root file system to restore into: blocked,
  // and its button says so by being off.
  assert.match(await page.textContent('#restore-blocked'), /no root file system/);
  assert.ok(await page.isDisabled('#restore-go'));
  await accessible(page, 'the container page with a restore shown');
  await shots('container-restore');
  await page.click('#restore-cancel');
  assert.equal(await page.locator('#restore-plan').count(), 0);

  step = 'a second generation, then a rollback that shows its plan first';
  const source = await api('GET', '/api/source');
  await api('POST', '/api/save', { text: source.text.replace('host=5432', 'host=5433'), base: source.text });
  const planned = await api('POST', '/api/plan', {});
  const { job } = await api('POST', '/api/apply', { fingerprint: planned.plan.fingerprint });
  for (let i = 0; i < 100 && (await api('GET', '/api/generations')).current !== 2; i += 1) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(job > 0);
  await page.goto(`${URL_}generations`);
  await page.waitForSelector('#generations table');
  await page.click('[data-rollback="1"]');
  await page.waitForSelector('#rollback .plan-summary');
  assert.match(await page.textContent('#rollback'), /returning to generation 1/);
  await page.click('#diff-form button[type=submit]');
  // Several files changed (the ruleset, the health expectations, the
  // loopback forward's units): each is a closed <details> until opened.
  await page.click('#diff details summary >> nth=0');
  await page.waitForSelector('#diff pre.diff');
  await shots('generations');
  await accessible(page, 'the generations page');
  await fitsThePhone(page, 'the generations page');
  await page.click('#rollback-go');
  await page.waitForSelector('#progress-log .result', { timeout: 30000 });
  assert.equal(await page.textContent('#progress-log .result'), 'Rolled back: the host is on generation 1.');

  step = 'an apply waiting for confirmation shows its countdown on every page, and its revert after';
  const before = await api('GET', '/api/source');
  await api('POST', '/api/save', { text: before.text.replace('host=5432', 'host=5434'), base: before.text });
  const third = await api('POST', '/api/plan', {});
  await api('POST', '/api/apply', { fingerprint: third.plan.fingerprint, confirm_timeout: 5 });
  await page.goto(`${URL_}logs/web`);
  await page.waitForSelector('#confirm-banner .countdown', { timeout: 10000 });
  assert.match(await page.textContent('#confirm-banner'), /Generation 3 is waiting for confirmation: \d:\d\d left, then the host returns to generation 1/);
  await shots('confirm-countdown');
  await page.waitForSelector('#reverted-note', { timeout: 20000 });
  assert.match(await page.textContent('#reverted-note'),
    /Generation 3 was rolled back at \S+ for want of a confirmation; the host is on generation 1\./);
  await page.goto(`${URL_}generations`);
  await page.waitForSelector('#generations .reverted');
  const late = await fetch(`${URL_}api/confirm`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ generation: 3 }),
  });
  assert.equal(late.status, 409);
  assert.match((await late.json()).error, /generation 3 was rolled back at .* for want of a confirmation; the host is on generation 1/);

  step = 'logs say plainly that they need the live system';
  await page.goto(`${URL_}logs/web`);
  await page.waitForSelector('#logs-unavailable');
  assert.match(await page.textContent('#logs-unavailable'), /need the live system/);
  await shots('logs');
  await accessible(page, 'the logs page');

  step = 'a topology goes down from its page, its plan shown in a dialog first';
  const plain = await api('GET', '/api/source');
  await api('POST', '/api/save', { text: `${plain.text}\ntopology "builds" {\n    container "ci"\n}\n`, base: plain.text });
  const withTopology = await api('POST', '/api/plan', {});
  await api('POST', '/api/apply', { fingerprint: withTopology.plan.fingerprint });
  for (let i = 0; i < 100 && (await api('GET', '/api/topologies')).length === 0; i += 1) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.goto(`${URL_}topologies`);
  await page.waitForSelector('#topologies tr[data-topology="builds"][data-down="false"]');
  assert.match(await page.textContent('#topologies tr[data-topology="builds"]'), /Containers: ci/);
  assert.ok(await page.isDisabled('button[data-topology="builds"][data-move="up"]'), 'Up is disabled on a topology that is up');
  await accessible(page, 'the topologies page');
  await fitsThePhone(page, 'the topologies page');
  await page.click('button[data-topology="builds"][data-move="down"]');
  await page.waitForSelector('#topology-plan .plan-summary');
  assert.match(await page.textContent('#topology-dialog-title'), /ctm down builds/);
  assert.match(await page.textContent('#topology-plan'), /health\.json/);
  await shots('topology-plan');
  await accessible(page, 'the topologies page\'s plan dialog');
  await page.click('#topology-go');
  await page.waitForSelector('#topology-progress .result', { timeout: 30000 });
  assert.match(await page.textContent('#topology-progress .result'), /^Topology builds is down \(generation \d+\)\.$/);
  await page.waitForSelector('#topologies tr[data-topology="builds"][data-down="true"]');
  assert.equal((await api('GET', '/api/topologies'))[0].down, true);
  assert.ok(await page.isDisabled('button[data-topology="builds"][data-move="down"]'));
  await shots('topologies');

  step = 'the fleet page shows each host, and why one cannot be reached or planned';
  await page.goto(`${URL_}fleet`);
  await page.waitForSelector('#fleet-hosts tr[data-host="h1"]');
  assert.match(await page.textContent('#fleet-hosts tr[data-host="h1"]'), /cannot connect to 127\.0\.0\.1 port 1/);
  await page.click('#fleet-plan-go');
  await page.waitForSelector('#fleet-totals');
  assert.equal(await page.textContent('#fleet-totals'),
    '0 of 1 host would change (0 to add, 0 to change, 0 to destroy; 0 actions); 1 could not be planned.');
  assert.match(await page.textContent('.fleet-host-plan .alert-danger'), /Connection refused/);
  await shots('fleet');

  step = 'no script error and no CSP violation on any page';
  assert.deepEqual(problems, []);
  console.log('browser tests: all steps passed');
} catch (e) {
  console.error(`browser test failed at: ${step}\n${e.stack || e}`);
  if (problems.length) console.error(`console:\n${problems.join('\n')}`);
  await page.screenshot({ path: join(SHOTS, 'failure.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await close();
}
