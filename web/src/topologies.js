// The topologies page: each topology of the current generation, up or
// down, with its members (each container with its state, from the status
// document); Up and Down show the plan of `ctm up NAME` / `ctm down NAME`
// in a dialog first, then apply that plan (by its fingerprint: a stale one
// is refused) as a job whose progress shows under the list.
import { api } from './api.js';
import { h, $, fill, showError } from './dom.js';
import { renderPlan } from './plan.js';
import { follow } from './jobs.js';
import { stateBadge } from './dashboard.js';

let returnFocus = null;

function closeDialog() {
  $('topology-dialog').classList.add('d-none');
  returnFocus?.focus();
  returnFocus = null;
}

function buttons(disabled) {
  for (const b of document.querySelectorAll('#topologies button[data-move]')) {
    b.disabled = disabled || Boolean($('topologies').dataset.refused) || b.dataset.current === 'true';
  }
}

async function showPlan(name, direction, button) {
  returnFocus = button;
  const dialog = $('topology-dialog');
  const go = $('topology-go');
  go.disabled = true;
  go.className = direction === 'down' ? 'btn btn-danger btn-sm' : 'btn btn-success btn-sm';
  go.textContent = direction === 'down' ? `Bring ${name} down` : `Bring ${name} up`;
  fill($('topology-dialog-title'), `ctm ${direction} ${name}: the plan`);
  fill($('topology-plan'), h('p', { class: 'text-body-secondary mb-0' }, 'Planning…'));
  dialog.classList.remove('d-none');
  $('topology-cancel').focus();
  let plan;
  try {
    ({ plan } = await api('GET', `/api/topologies/${encodeURIComponent(name)}/${direction}`));
  } catch (e) {
    closeDialog();
    showError(e);
    return;
  }
  fill($('topology-plan'), renderPlan(plan));
  go.disabled = plan.conflicts.length > 0 || (plan.unsupported_links ?? []).length > 0;
  go.onclick = async () => {
    go.disabled = true;
    closeDialog();
    buttons(true);
    try {
      const { job } = await api('POST', `/api/topologies/${encodeURIComponent(name)}/${direction}`,
        { fingerprint: plan.fingerprint });
      follow(job, $('topology-progress'), () => list().catch(showError));
    } catch (e) {
      showError(e);
      buttons(false);
    }
  };
}

function members(label, names, render = (n) => n) {
  if (names.length === 0) return null;
  return h('div', { class: 'small' },
    h('span', { class: 'text-body-secondary' }, `${label}: `),
    names.map((n, i) => [i ? ', ' : '', render(n)]));
}

async function list() {
  const [topologies, status] = await Promise.all([
    api('GET', '/api/topologies'),
    api('GET', '/api/status').catch(() => null),
  ]);
  const states = new Map((status?.containers ?? []).map((c) => [c.name, c.state]));
  const container = (n) => h('span', { class: 'text-nowrap' },
    h('a', { href: `/containers/${encodeURIComponent(n)}` }, n),
    states.get(n) ? [' ', stateBadge(states.get(n))] : null);
  const move = (t, direction) => h('button', {
    class: `btn btn-sm ${direction === 'down' ? 'btn-outline-danger' : 'btn-outline-success'}`,
    type: 'button',
    'data-move': direction,
    'data-topology': t.name,
    'data-current': String(t.down === (direction === 'down')),
    title: $('topologies').dataset.refused || null,
    onclick: (e) => showPlan(t.name, direction, e.currentTarget).catch(showError),
  }, direction === 'down' ? 'Down…' : 'Up…');
  const rows = topologies.map((t) => h('tr', { 'data-topology': t.name, 'data-down': String(t.down) },
    h('td', { class: 'fw-semibold' }, t.name),
    h('td', { class: 'topology-state' }, t.down
      ? h('span', { class: 'badge text-bg-secondary' }, 'down')
      : h('span', { class: 'badge text-bg-success' }, 'up')),
    h('td', {},
      members('Containers', t.containers, container),
      members('Networks', t.networks),
      members('Links', t.links)),
    h('td', { class: 'text-end text-nowrap' },
      h('div', { class: 'btn-group', role: 'group', 'aria-label': `Bring ${t.name} up or down` },
        move(t, 'up'), move(t, 'down')))));
  fill($('topologies'), rows.length
    ? h('div', { class: 'table-responsive' }, h('table', { class: 'table table-sm align-middle mb-0' },
      h('thead', {}, h('tr', {}, ['Name', 'State', 'Members', ''].map((t) => h('th', { scope: 'col' },
        t || h('span', { class: 'visually-hidden' }, 'Actions'))))),
      h('tbody', {}, rows)))
    : h('p', { class: 'text-body-secondary mb-0', id: 'no-topologies' },
      'No topologies: the current generation\'s host file defines none (',
      h('code', {}, 'topology "NAME" { … }'), ', docs/config.md).'));
  buttons(false);
}

export async function topologies() {
  $('topology-cancel').addEventListener('click', closeDialog);
  $('topology-dialog').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeDialog();
  });
  await list();
  document.addEventListener('ctm:state', () => list().catch(showError));
}
