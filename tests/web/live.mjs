// The container page on a live host: tests/web_browser.rs boots a lab
// (docs/lab.md), applies a host with the container `work`, starts
// `ctm serve` inside the lab on its loopback, and runs this in the lab's
// network namespace with CTM_URL, CTM_TOKEN and CTM_SHOTS. The buttons
// change the state, the graphs get samples, the console prints the
// output of `echo`, and axe finds no serious violation.
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { launch, accessible } from './common.mjs';

const URL_ = process.env.CTM_URL;
const TOKEN = process.env.CTM_TOKEN;
const SHOTS = process.env.CTM_SHOTS;

const { page, problems, close } = await launch();
let step = '';

/// What the terminal shows, line by line.
const terminalText = () => page.evaluate(() => {
  const buffer = window.ctmTerminal.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i += 1) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join('\n');
});

async function press(verb, result) {
  await page.click(`[data-verb="${verb}"]`);
  await page.waitForFunction((text) => document.getElementById('result').textContent.includes(text), result,
    { timeout: 60000 });
}

const state = (expected) => page.waitForFunction((s) => document.getElementById('state').textContent === s,
  expected, { timeout: 60000 });

try {
  step = 'log in';
  await page.goto(`${URL_}login`);
  await page.fill('#token', TOKEN);
  await page.click('button[type=submit]');
  await page.waitForSelector('#summary .card');

  step = 'the container page shows a running container and graphs its use';
  await page.goto(`${URL_}containers/work`);
  await state('running');
  await page.waitForFunction(() => /CPU \d+\.\d %/.test(document.getElementById('use-now').textContent),
    null, { timeout: 20000 });
  assert.ok(await page.locator('#cpu-chart canvas').count() > 0, 'the CPU graph is drawn');
  assert.match(await page.textContent('#last-logs'), /\S/);
  await accessible(page, 'the container page of a running container');

  step = 'pause and resume change the state';
  await press('pause', 'Paused container work.');
  await state('paused');
  await press('resume', 'Resumed container work.');
  await state('running');

  step = 'stop and start, as jobs, change the state';
  await press('stop', 'Stopped container work.');
  await state('stopped');
  await press('start', 'Started container work.');
  await state('running');
  await page.screenshot({ path: join(SHOTS, 'container-live-laptop.png'), fullPage: true });

  step = 'the console prints the output of echo';
  await page.click('#console-pane-tab');
  await page.click('#console-open');
  await page.waitForSelector('.xterm-helper-textarea');
  await page.waitForFunction(() => window.ctmTerminal && /[#$] ?$/m.test(
    (() => { const b = window.ctmTerminal.buffer.active; let t = ''; for (let i = 0; i < b.length; i += 1) t += `${b.getLine(i).translateToString(true)}\n`; return t; })(),
  ), null, { timeout: 20000 });
  await page.focus('.xterm-helper-textarea');
  await page.keyboard.type('echo hello-$((6*7)); tty\n');
  await page.waitForFunction(() => {
    const b = window.ctmTerminal.buffer.active;
    // The echo's line, and then tty's: both printed before looking.
    const lines = [];
    for (let i = 0; i < b.length; i += 1) lines.push(b.getLine(i).translateToString(true).trim());
    return lines.includes('hello-42') && lines.some((l) => /^\/dev\/pts\/\d+$/.test(l));
  }, null, { timeout: 20000 });
  const shown = await terminalText();
  assert.match(shown, /^\/dev\/pts\/\d+$/m, 'the shell has a terminal of its own');
  await page.screenshot({ path: join(SHOTS, 'container-console-laptop.png'), fullPage: true });
  await accessible(page, 'the console');
  // Leaving the page ends the shell (tests/web_browser.rs checks).

  step = 'no script error and no CSP violation';
  assert.deepEqual(problems, []);
  console.log('live browser tests: all steps passed');
} catch (e) {
  console.error(`live browser test failed at: ${step}\n${e.stack || e}`);
  if (problems.length) console.error(`console:\n${problems.join('\n')}`);
  await page.screenshot({ path: join(SHOTS, 'live-failure.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await close();
}
