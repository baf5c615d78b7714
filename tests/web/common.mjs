// What the browser tests share: Debian's headless Chromium through
// playwright-core (from web/node_modules), every console error, page
// error and CSP violation collected, and axe-core's accessibility check
// of a page (run through the DevTools protocol, which the page's CSP does
// not govern, so the policy stays the one users get).
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const LAPTOP = { width: 1366, height: 900 };
export const PHONE = { width: 390, height: 844 };

/// A fresh browser profile with one page; `problems` collects what must
/// not happen (script errors, CSP violations).
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'ctm-chromium-'));
  // A fresh profile each run (--user-data-dir, which playwright passes for
  // a persistent context).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CTM_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: LAPTOP,
    // Bootstrap then draws no transitions: axe checks the colours a page
    // settles on, not a frame half way through a button's hover.
    reducedMotion: 'reduce',
  });
  const page = context.pages()[0] ?? await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console on ${page.url()}: ${m.text()}`); });
  await context.addInitScript(() => document.addEventListener('securitypolicyviolation', (e) => {
    console.error(`CSP violation: ${e.violatedDirective} by ${e.sourceFile}:${e.lineNumber} ${e.sample}`);
  }));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, problems, close };
}

/// axe-core's check of the page as it is: no serious or critical
/// violation (WCAG 2.1 A and AA, and best practices). Returns how many
/// rules passed, for the log.
export async function accessible(page, what) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    const details = bad.map((v) => `${v.impact} ${v.id}: ${v.help}\n${v.nodes.slice(0, 5)
      .map((n) => `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' ')}`).join('\n')}`);
    throw new Error(`axe finds ${bad.length} serious violation(s) on ${what}:\n${details.join('\n')}`);
  }
  return result.passes.length;
}

/// No page of the layout is wider than the screen at phone width: wide
/// tables scroll inside their own box.
export async function fitsThePhone(page, what) {
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(200);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.setViewportSize(LAPTOP);
  if (width > PHONE.width) throw new Error(`${what} is ${width} px wide at ${PHONE.width} px`);
}
