// The container page: what GET /api/containers/NAME says (state,
// addresses, forwards, binds, limits, environment, provisioning steps,
// the last log lines), live CPU and memory graphs from successive
// samples (GET .../stats every 2 s: CPU % is the growth of the CPU time
// over the time between two samples, as on the dashboard), the buttons
// (each a POST of the API, its result shown), a console tab, and the
// snapshots and backups card (backups.js).
//
// The graphs are uPlot's: 48 KB minified, no dependencies, canvas (so it
// styles nothing inline), and kept up by its author for years.
// A bundle of its own (web/build.mjs), loaded after app.js by this page
// only; app.js has made the page's common parts (the confirmation
// banner, log out) and set up the style policy shim (csp.js).
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

import { api } from './api.js';
import { h, $, fill, muted, bytes, showError } from './dom.js';
import { follow } from './jobs.js';
import { stateBadge } from './dashboard.js';
import { tabs } from './tabs.js';
import { openConsole } from './console.js';
import { backups } from './backups.js';

const SAMPLE_MS = 2000;
/// Points kept in each graph: five minutes.
const KEEP = 150;

let name = '';
const series = { at: [], cpu: [], memory: [] };
let previous = null;
let charts = {};

function row(label, ...value) {
  return h('tr', {}, h('th', { scope: 'row', class: 'text-nowrap fw-normal text-body-secondary' }, label), h('td', {}, value));
}

function settings(d) {
  const s = d.status;
  const list = (items, empty) => (items.length ? h('ul', { class: 'list-unstyled mb-0' }, items.map((i) => h('li', {}, i))) : muted(empty));
  return h('div', { class: 'table-responsive' }, h('table', { class: 'table table-sm mb-0 settings' }, h('tbody', {},
    row('Image', s.image ?? muted('unknown')),
    row('Network', s.networks.length > 1
      ? list(s.networks.map((n) => [h('span', { class: 'fw-semibold' }, n.network), ' on ', h('code', {}, n.interface),
        n.bridged === false ? [' ', h('span', { class: 'badge text-bg-warning' }, `${n.host_interface} not in ${n.bridge}`)] : '']), 'none')
      : s.network ?? muted('none')),
    row('Addresses', list((s.networks.length > 1 ? s.networks.flatMap((n) => n.addresses) : s.addresses)
      .map((a) => h('code', {}, a)), 'none')),
    row('Seen inside', s.live_addresses ? list(s.live_addresses.map((a) => h('code', {}, a)), 'none') : muted('unknown')),
    row('Forwards', list(s.forwards, 'none')),
    row('Binds', list(d.binds.map((b) => [h('code', {}, b.source), ' → ', h('code', {}, b.target),
      b.read_only ? ' (read-only)' : '', b.idmap ? ' (idmap)' : '']), 'none')),
    row('Volumes', list(d.volumes.map((v) => [h('span', { class: 'fw-semibold' }, v.volume), ' ',
      h('code', { class: 'small' }, `(${v.source})`), ' → ', h('code', {}, v.target),
      v.read_only ? ' (read-only)' : '', v.idmap ? ' (idmap)' : '']), 'none')),
    row('Limits', d.limits.memory_bytes === null && d.limits.cpus === null ? muted('none')
      : [d.limits.memory_bytes !== null ? `memory ${bytes(d.limits.memory_bytes)}` : '',
        d.limits.memory_bytes !== null && d.limits.cpus !== null ? ', ' : '',
        d.limits.cpus !== null ? `${d.limits.cpus} CPUs` : '']),
    row('Environment', list(Object.entries(d.environment).map(([k, v]) => h('code', {}, `${k}=${v}`)), 'none')),
    row('Autostart', s.autostart ? 'yes' : 'no'),
    row('Features', [s.docker ? 'Docker ' : '', s.nested ? 'nested ' : ''].join('').trim() || muted('none')),
    row('Unit', s.unit ?? muted('unknown')),
    row('Drift', s.drift.length || s.drift_actions.length
      ? list([...s.drift.map((f) => `${f.path}: ${f.reason}`), ...s.drift_actions], '')
      : 'in sync'))));
}

function steps(d) {
  if (!d.steps.length) return muted('No provisioning steps.');
  return h('div', { class: 'table-responsive' }, h('table', { class: 'table table-sm mb-0' },
    h('thead', {}, h('tr', {}, ['Step', 'When', 'Last result'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, d.steps.map((step) => h('tr', {},
      h('td', {}, step.description, h('div', { class: 'small text-body-secondary font-monospace' }, step.id)),
      h('td', { class: 'small text-nowrap' }, step.phase === 'before-boot' ? 'before boot' : 'running'),
      h('td', { class: 'small' }, step.result
        ? [step.result.ran ? `ran (${step.result.millis} ms)` : 'done already',
          ` in generation ${step.recorded_in}`,
          step.result.output ? h('pre', { class: 'diff small mb-0 mt-1', tabindex: '0' }, step.result.output) : null]
        : muted('not recorded')))))));
}

async function load() {
  const d = await api('GET', `/api/containers/${encodeURIComponent(name)}`);
  fill($('state'), d.live ? stateBadge(d.status.state) : muted('unknown: files-only root'));
  fill($('settings'), settings(d));
  fill($('steps'), steps(d));
  fill($('last-logs'), d.logs.length ? d.logs.join('\n') : h('span', { class: 'text-body-secondary' }, d.logs_note ?? 'No log lines.'));
  const refused = $('actions').dataset.refused;
  for (const b of document.querySelectorAll('[data-verb]')) {
    const state = d.status.state;
    const useless = { start: state === 'running' || state === 'paused', pause: state !== 'running', resume: state !== 'paused' }[b.dataset.verb];
    b.disabled = !d.live || Boolean(refused) || Boolean(useless);
    b.title = refused || (d.live ? '' : 'a files-only root: nothing runs here');
  }
  $('console-open').disabled = !d.live || Boolean(refused) || d.status.state !== 'running';
  return d;
}

function chart(id, label, format) {
  const box = $(id);
  const width = Math.max(200, box.clientWidth || 300);
  return new uPlot({
    width,
    height: 160,
    title: label,
    legend: { show: false },
    scales: { y: { range: (u, min, max) => [0, Math.max(max, 1)] } },
    axes: [{ stroke: 'currentColor' }, { stroke: 'currentColor', values: (u, ticks) => ticks.map(format), size: 70 }],
    series: [{}, { label, stroke: 'rgb(13, 110, 253)', fill: 'rgba(13, 110, 253, 0.1)', width: 2 }],
  }, [[], []], box);
}

async function sample() {
  let s;
  try {
    s = await api('GET', `/api/containers/${encodeURIComponent(name)}/stats`);
  } catch (e) {
    $('use-now').textContent = e.status === 409 ? e.message : `not updated: ${e.message}`;
    return false;
  }
  const cpuUsec = s.stats?.cpu_usec ?? null;
  let cpu = null;
  if (previous && cpuUsec !== null && previous.cpu !== null && s.sampled_at_ms > previous.at) {
    cpu = ((cpuUsec - previous.cpu) / ((s.sampled_at_ms - previous.at) * 1000)) * 100;
  }
  previous = { at: s.sampled_at_ms, cpu: cpuUsec };
  const memory = s.stats?.memory?.current_bytes ?? null;
  series.at.push(s.sampled_at_ms / 1000);
  series.cpu.push(cpu);
  series.memory.push(memory);
  for (const list of Object.values(series)) if (list.length > KEEP) list.shift();
  charts.cpu.setData([series.at, series.cpu]);
  charts.memory.setData([series.at, series.memory]);
  $('use-now').textContent = s.stats
    ? `CPU ${cpu === null ? 'measuring…' : `${cpu.toFixed(1)} %`} · memory ${memory === null ? 'unknown' : bytes(memory)}`
      + (s.stats.memory?.limit_bytes ? ` of ${bytes(s.stats.memory.limit_bytes)}` : '')
      + (s.stats.pids ? ` · ${s.stats.pids.current} tasks` : '')
      + (s.stats.unavailable.length ? ` · unavailable: ${s.stats.unavailable.join('; ')}` : '')
    : `not running (${s.state})`;
  return true;
}

function result(ok, message) {
  fill($('result'), h('div', { class: `alert alert-${ok ? 'success' : 'danger'} py-2 small`, role: 'status' }, message));
}

async function act(verb) {
  const path = `/api/containers/${encodeURIComponent(name)}/${verb}`;
  const buttons = [...document.querySelectorAll('[data-verb]')];
  for (const b of buttons) b.disabled = true;
  try {
    if (['start', 'stop', 'restart'].includes(verb)) {
      const { job } = await api('POST', path);
      const box = h('div', { class: 'small' });
      fill($('result'), box);
      await new Promise((resolve) => {
        follow(job, box, (ok, event) => { result(ok, event.message); resolve(); }, { quiet: true });
      });
    } else {
      const body = verb === 'kill' ? { signal: $('signal').value } : undefined;
      const answer = await api('POST', path, body);
      result(true, answer.done);
    }
  } catch (e) {
    result(false, e.message);
  }
  await load().catch(showError);
}

async function container() {
  name = $('container-head').dataset.name;
  tabs(document.querySelector('[role="tablist"]'));
  for (const b of document.querySelectorAll('[data-verb]')) {
    b.addEventListener('click', () => act(b.dataset.verb));
  }
  openConsole(name, $('terminal'), $('console-open'), $('console-close'));
  backups(name);
  // A restore from the card stops and starts the container.
  document.addEventListener('ctm:state', () => load().catch(() => {}));
  const d = await load();
  if (!d.live) {
    for (const figure of document.querySelectorAll('figure.chart')) figure.classList.add('d-none');
    $('use-now').textContent = 'CPU and memory: unknown: files-only root.';
    return;
  }
  charts = {
    cpu: chart('cpu-chart', 'CPU %', (v) => `${v.toFixed(0)} %`),
    memory: chart('memory-chart', 'Memory', (v) => bytes(v)),
  };
  await sample();
  setInterval(sample, SAMPLE_MS);
  setInterval(() => load().catch(() => {}), 5 * SAMPLE_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  if (document.body.dataset.page === 'container') container().catch(showError);
});
