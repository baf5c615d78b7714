// The fleet page (`ctm serve --fleet`, docs/fleet.md): each host's
// generation, drift, pending confirmation and last apply, from
// GET /api/fleet; on request, the fleet plan from POST /api/fleet/plan.
// Applying the fleet stays with the command line.
import { api } from './api.js';
import { h, $, fill, muted, showError } from './dom.js';
import { renderPlan } from './plan.js';

const when = (unix) => new Date(unix * 1000).toISOString().replace('.000', '');

const OUTCOMES = {
  unchanged: ['unchanged', 'light border'],
  switched: ['switched', 'success'],
  failed: ['failed', 'danger'],
  'not-reached-again': ['not reached again', 'danger'],
  'rolled-back': ['rolled back', 'warning'],
  'not-rolled-back': ['not rolled back', 'danger'],
  'not-started': ['not started', 'secondary'],
};

function outcomeBadge(last) {
  if (!last) return muted('none recorded');
  const [text, colour] = OUTCOMES[last.outcome] ?? [last.outcome, 'secondary'];
  return h('span', {},
    h('span', { class: `badge text-bg-${colour} me-1 outcome`, title: last.reason ?? '' }, text),
    muted(last.started));
}

function driftBadge(drift) {
  if (drift === null || drift === undefined) return muted('unknown');
  if (drift === 0) return h('span', { class: 'badge text-bg-light border' }, 'in sync');
  return h('span', { class: 'badge text-bg-warning' }, `${drift} drifted`);
}

function hostRow(s) {
  const tags = [...s.tags.map((t) => h('span', { class: 'badge text-bg-light border me-1' }, t)),
    s.group ? h('span', { class: 'badge text-bg-info me-1', title: 'group' }, s.group) : null];
  if (s.error) {
    return h('tr', { 'data-host': s.host },
      h('td', { class: 'fw-semibold' }, s.host),
      h('td', { class: 'small' }, h('code', {}, s.destination)),
      h('td', {}, tags),
      h('td', { colspan: 4, class: 'small text-danger' }, s.error),
      h('td', {}, outcomeBadge(s.last_apply)));
  }
  const g = s.generation;
  const pending = s.pending_confirm
    ? h('span', { class: 'badge text-bg-warning', title: `else back to ${s.pending_confirm.previous ?? 'none'}` },
      `${s.pending_confirm.generation} waits until ${when(s.pending_confirm.deadline)}`)
    : muted('—');
  return h('tr', { 'data-host': s.host },
    h('td', { class: 'fw-semibold' }, s.host),
    h('td', { class: 'small' }, h('code', {}, s.destination)),
    h('td', {}, tags),
    h('td', { class: 'small' }, s.ctm_version ?? muted('?')),
    h('td', { class: 'generation' }, g ? h('span', { title: `${g.created}: ${g.summary}` }, String(g.number)) : muted('none')),
    h('td', {}, driftBadge(s.drift)),
    h('td', {}, pending),
    h('td', {}, outcomeBadge(s.last_apply)));
}

async function hosts() {
  const answer = await api('GET', '/api/fleet');
  fill($('fleet-hosts'), h('div', { class: 'table-responsive' },
    h('table', { class: 'table table-sm align-middle mb-0' },
      h('thead', {}, h('tr', {}, ['Host', 'Destination', 'Tags', 'ctm', 'Generation', 'Drift', 'Confirmation', 'Last apply']
        .map((t) => h('th', { scope: 'col', class: 'text-nowrap' }, t)))),
      h('tbody', {}, answer.hosts.map(hostRow)))),
  answer.canary ? h('p', { class: 'small text-body-secondary mt-2 mb-0' }, `Canary: the ${answer.canary.kind} ${answer.canary.name}.`) : null);
  fill($('refreshed'), `as of ${new Date().toLocaleTimeString()}`);
}

async function plan(button) {
  button.disabled = true;
  fill($('fleet-plan'), h('p', { class: 'text-body-secondary mb-0' }, 'Planning every host…'));
  try {
    const answer = await api('POST', '/api/fleet/plan');
    const t = answer.totals;
    fill($('fleet-plan'),
      h('p', { class: 'fw-semibold', id: 'fleet-totals' },
        `${t.hosts_changing} of ${t.hosts} host${t.hosts === 1 ? '' : 's'} would change `
        + `(${t.add} to add, ${t.change} to change, ${t.destroy} to destroy; ${t.actions} actions)`
        + (t.failed ? `; ${t.failed} could not be planned.` : '.')),
      answer.hosts.map((host) => h('details', { class: 'mb-2 fleet-host-plan', open: !!host.error || (host.plan && host.plan.summary.actions > 0) },
        h('summary', { class: 'fw-semibold' }, host.host, ' ', muted(`(${host.destination}, ${host.host_file})`)),
        host.error ? h('div', { class: 'alert alert-danger py-2 small mb-0' }, host.error) : renderPlan(host.plan))));
  } catch (e) {
    showError(e);
  } finally {
    button.disabled = false;
  }
}

export async function fleetPage() {
  const refresh = $('fleet-refresh');
  refresh.addEventListener('click', () => hosts().catch(showError));
  const go = $('fleet-plan-go');
  go.addEventListener('click', () => plan(go));
  await hosts();
}
