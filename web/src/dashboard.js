// The dashboard: what GET /api/status says, refreshed every 5 seconds.
// CPU use is the growth of the cgroup's CPU time between two samples.
// The volumes card adds each volume's archives from GET /api/volumes.
import { api } from './api.js';
import { h, $, fill, muted, bytes } from './dom.js';
import { filterRows } from './filter.js';

let previous = { at: 0, cpu: {} };

function live(status, value) {
  return status.live ? value : muted('unknown');
}

const plural = (n, what) => `${n} ${what}${n === 1 ? '' : 's'}`;

export function stateBadge(state) {
  if (state === 'running') return h('span', { class: 'badge text-bg-success' }, 'running');
  if (state === 'paused') return h('span', { class: 'badge text-bg-warning' }, 'paused');
  if (state === 'stopped') return h('span', { class: 'badge text-bg-secondary' }, 'stopped');
  if (state) return h('span', { class: 'badge text-bg-info' }, state);
  return muted('unknown');
}

/// Shows the containers the search and the state filter let through.
function applyFilter() {
  const state = $('filter-state').value;
  const rows = [...document.querySelectorAll('#containers tbody tr')];
  const shown = filterRows(rows, $('filter-text').value, (row) => !state
    || (state === 'drift' ? row.dataset.drift === 'true' : row.dataset.state === state));
  const note = $('filter-note');
  if (note) note.textContent = rows.length && shown < rows.length ? `${shown} of ${rows.length} shown` : '';
}

function driftCell(drift) {
  if (!drift.length) return h('span', { class: 'badge text-bg-light border' }, 'in sync');
  return h('span', { class: 'badge text-bg-warning', title: drift.map((d) => `${d.path}: ${d.reason}`).join('\n') },
    `${drift.length} file${drift.length === 1 ? '' : 's'} drifted`);
}

function linkState(link) {
  if (!link || link.exists === null) return muted('unknown');
  if (!link.exists) return h('span', { class: 'badge text-bg-danger' }, 'missing');
  const lacking = link.drift.filter((d) => d.startsWith('lacks '));
  return lacking.length
    ? h('span', { class: 'badge text-bg-warning', title: lacking.join('\n') }, 'up, addresses missing')
    : h('span', { class: 'badge text-bg-success' }, 'up');
}

/// How full a volume with a quota is, as a bar that turns amber at 80 %
/// and red at 95 %.
function usageBar(v) {
  if (v.quota === null || v.used === null) return null;
  const percent = Math.min(100, (v.used / v.quota) * 100);
  const colour = percent >= 95 ? 'bg-danger' : percent >= 80 ? 'bg-warning' : 'bg-success';
  return h('div', {
    class: 'progress mt-1', style: 'height: 6px', role: 'progressbar',
    'aria-label': `${v.name}: ${percent.toFixed(0)} % of its quota`,
    'aria-valuenow': percent.toFixed(0), 'aria-valuemin': '0', 'aria-valuemax': '100',
  }, h('div', { class: `progress-bar ${colour}`, style: `width: ${percent.toFixed(1)}%` }));
}

function volumeDrift(v) {
  if (v.kept) {
    return h('span', { class: 'badge text-bg-secondary', title: 'ctm apply --prune deletes it, with its data' },
      'kept until --prune');
  }
  if (!v.drift.length) return h('span', { class: 'badge text-bg-light border' }, 'in sync');
  return h('span', { class: 'badge text-bg-warning', title: v.drift.join('\n') }, v.drift[0]);
}

function cpuCell(status, c) {
  if (!c.usage) return live(status, muted('—'));
  const before = previous.cpu[c.name];
  const elapsed = (status.sampled_at_ms - previous.at) * 1000;
  if (before === undefined || elapsed <= 0) return muted('measuring…');
  return `${(((c.usage.cpu_usec - before) / elapsed) * 100).toFixed(1)} %`;
}

function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'text-body-secondary mb-0' }, empty);
  return h('div', { class: 'table-responsive' },
    h('table', { class: 'table table-sm table-hover align-middle mb-0' },
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col', class: 'text-nowrap' }, t)))),
      h('tbody', {}, rows)));
}

function summaryCard(title, value, detail) {
  return h('div', { class: 'col-6 col-lg-3' },
    h('div', { class: 'card shadow-sm h-100' },
      h('div', { class: 'card-body py-2' },
        h('div', { class: 'small text-body-secondary' }, title),
        h('div', { class: 'fs-5 fw-semibold text-truncate' }, value),
        detail ? h('div', { class: 'small text-body-secondary text-truncate' }, detail) : null)));
}

function lastBackup(view) {
  if (!view) return muted('unknown');
  const last = view.last_backup;
  const where = view.backup_to ? h('div', { class: 'small text-body-secondary font-monospace' }, `to ${view.backup_to}`) : null;
  if (!last) return [muted('none'), where];
  return [h('span', { class: 'text-nowrap', title: last.path }, new Date(last.at * 1000).toLocaleString()),
    h('div', { class: 'small text-body-secondary' }, `${bytes(last.bytes)} · ${view.archives} archive${view.archives === 1 ? '' : 's'}`), where];
}

function render(s, views = {}) {
  const g = s.generation;
  const drifted = s.drift.files.length + s.drift.conflicts.length;
  fill($('summary'),
    summaryCard('Generation', g ? String(g.number) : 'none', g ? `${g.created} · ${g.source_name}` : 'nothing applied yet'),
    summaryCard('Containers', String(s.containers.length), `${plural(s.networks.length, 'network')} · ${plural(s.tunnels.length, 'tunnel')}${
      s.volumes?.length ? ` · ${plural(s.volumes.length, 'volume')}` : ''}`),
    summaryCard('Drift', drifted ? `${drifted} file${drifted === 1 ? '' : 's'}` : 'none',
      s.drift.actions.length ? `${s.drift.actions.length} action(s) needed` : 'the host matches its generation'),
    summaryCard('System', s.live ? 'live' : 'files only', s.live ? 'the running system' : s.root));
  const notes = [];
  // A pending confirmation and a generation rolled back for want of one
  // are in the banner every page shows (confirm.js).
  for (const note of s.notes) notes.push(h('div', { class: 'alert alert-secondary py-2 small' }, note));
  if (s.host_file_changed) {
    notes.push(h('div', { class: 'alert alert-info' }, 'The host file has changes that are not applied. ',
      h('a', { href: '/apply' }, 'See the plan'), '.'));
  }
  if (!s.live) {
    notes.push(h('div', { class: 'alert alert-secondary py-2 small' },
      `State, CPU, memory and link state: ${s.live_note}. ctm manages the files under ${s.root}, not a running system.`));
  }
  if (!g) {
    notes.push(h('div', { class: 'alert alert-info' }, 'Nothing has been applied to this root yet. ',
      h('a', { href: '/editor' }, 'Open the editor'), ' to write the host file, then apply it.'));
  }
  const summary = $('summary');
  summary.parentNode.querySelectorAll('.status-note').forEach((n) => n.remove());
  for (const n of notes) { n.classList.add('status-note'); summary.before(n); }

  fill($('containers'), table(
    ['Name', 'State', 'IPv4', 'IPv6', 'Network', 'Autostart', 'CPU', 'Memory', 'Drift'],
    s.containers.map((c) => h('tr', { 'data-state': c.state ?? '', 'data-drift': String(c.drift.length > 0) },
      h('td', {}, h('a', { href: `/containers/${encodeURIComponent(c.name)}`, class: 'fw-semibold' }, c.name),
        c.docker ? h('span', { class: 'badge text-bg-info ms-1' }, 'docker') : null,
        c.nested ? h('span', { class: 'badge text-bg-info ms-1' }, 'nested') : null,
        h('div', { class: 'small text-body-secondary' }, c.image, c.forwards.length ? ` · ${c.forwards.join(', ')}` : '')),
      h('td', {}, live(s, stateBadge(c.state))),
      h('td', { class: 'font-monospace small' }, c.ipv4 ?? '—'),
      h('td', { class: 'font-monospace small' }, c.ipv6 ?? '—'),
      h('td', {}, c.network ?? muted('none')),
      h('td', {}, c.autostart ? 'yes' : 'no'),
      h('td', { class: 'text-nowrap' }, cpuCell(s, c)),
      h('td', { class: 'text-nowrap' }, c.usage ? bytes(c.usage.memory_bytes) : live(s, muted('—'))),
      h('td', {}, driftCell(c.drift)))),
    'No containers in the current generation.'),
  h('p', { class: 'small text-body-secondary mb-0 mt-1', id: 'filter-note', 'aria-live': 'polite' }));
  applyFilter();
  fill($('networks'), table(
    ['Name', 'Bridge', 'IPv4', 'IPv6', 'Containers', 'State', 'Drift'],
    s.networks.map((n) => h('tr', {},
      h('td', { class: 'fw-semibold' }, n.name),
      h('td', { class: 'font-monospace small' }, n.bridge),
      h('td', { class: 'font-monospace small' }, n.ipv4 ?? '—', n.ipv4_nat ? h('span', { class: 'badge text-bg-light border ms-1' }, 'NAT') : null),
      h('td', { class: 'font-monospace small' }, n.ipv6 ?? '—', n.ipv6_nat ? h('span', { class: 'badge text-bg-light border ms-1' }, 'NAT') : null),
      h('td', {}, String(n.containers)),
      h('td', {}, live(s, linkState(n.link))),
      h('td', {}, driftCell(n.drift)))),
    'No networks.'));
  fill($('tunnels'), table(
    ['Name', 'Local', 'Remote', 'Addresses', 'State', 'Drift'],
    s.tunnels.map((t) => h('tr', {},
      h('td', { class: 'fw-semibold' }, t.name),
      h('td', { class: 'font-monospace small' }, t.local),
      h('td', { class: 'font-monospace small' }, t.remote),
      h('td', { class: 'font-monospace small' }, t.addresses.join(', ')),
      h('td', {}, live(s, linkState(t.link))),
      h('td', {}, driftCell(t.drift)))),
    'No tunnels.'));
  fill($('volumes'), table(
    ['Name', 'Used', 'Quota', 'Containers', 'Last backup', 'Drift'],
    (s.volumes ?? []).map((v) => h('tr', { 'data-volume': v.name },
      h('td', {}, h('span', { class: 'fw-semibold' }, v.name),
        h('div', { class: 'small text-body-secondary font-monospace' }, v.path),
        v.kind ? h('div', { class: 'small text-body-secondary' }, v.kind) : null),
      h('td', { class: 'text-nowrap' }, v.used === null ? muted('—') : bytes(v.used), usageBar(v)),
      h('td', { class: 'text-nowrap' }, v.quota === null ? muted('none') : bytes(v.quota)),
      h('td', {}, v.containers.length
        ? v.containers.flatMap((c, i) => [i ? ', ' : null,
          h('a', { href: `/containers/${encodeURIComponent(c)}` }, c)])
        : muted(v.kept ? 'none: not in the host file' : 'none')),
      h('td', { class: 'small' }, lastBackup(views[v.name])),
      h('td', {}, volumeDrift(v)))),
    'No volumes.'));
  $('refreshed').textContent = `updated ${new Date(s.sampled_at_ms).toLocaleTimeString()}`;
  previous = {
    at: s.sampled_at_ms,
    cpu: Object.fromEntries(s.containers.filter((c) => c.usage).map((c) => [c.name, c.usage.cpu_usec])),
  };
}

export async function dashboard() {
  const refresh = async () => {
    try {
      const [status, volumes] = await Promise.all([
        api('GET', '/api/status'),
        api('GET', '/api/volumes').catch(() => ({ volumes: [] })),
      ]);
      render(status, Object.fromEntries(volumes.volumes.map((v) => [v.name, v])));
    } catch (e) {
      $('refreshed').textContent = `not updated: ${e.message}`;
    }
  };
  $('filter-text').addEventListener('input', applyFilter);
  $('filter-state').addEventListener('change', applyFilter);
  await refresh();
  setInterval(refresh, 5000);
  document.addEventListener('ctm:state', refresh);
}
