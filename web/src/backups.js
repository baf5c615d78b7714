// The container page's "Snapshots & backups" card: its snapshots and its
// archives (GET /api/containers/NAME/backups), Snapshot now and Back up
// now (jobs whose progress streams in), a download link per archive, and
// Restore per snapshot or archive: the restore's preview is shown first
// (GET …/restore: what is stopped, replaced, kept, the space it needs),
// and only its Restore button sends the restore, with the preview's key
// (refused if what the restore does changed since; then the new preview
// is shown).
//
// A download is a plain link: the browser sends the session cookie
// (HttpOnly) with it, as with every other GET, so no token is ever put in
// a URL, where logs and history would keep it.
import { api } from './api.js';
import { h, $, fill, muted, bytes } from './dom.js';
import { follow } from './jobs.js';

let name = '';
let busy = false;

const when = (unix) => new Date(unix * 1000).toLocaleString();
const base = () => `/api/containers/${encodeURIComponent(name)}`;

function table(headers, rows, empty) {
  if (!rows.length) return muted(empty);
  return h('div', { class: 'table-responsive' },
    h('table', { class: 'table table-sm align-middle mb-0' },
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col', class: 'text-nowrap' }, t)))),
      h('tbody', {}, rows)));
}

function restoreButton(kind, id) {
  return h('button', {
    class: 'btn btn-outline-danger btn-sm', type: 'button', 'data-restore': kind, 'data-id': id,
    disabled: busy || Boolean($('backups-card')?.dataset.refused) || undefined,
    onclick: () => preview(kind, id),
  }, 'Restore…');
}

function render(d) {
  fill($('snapshots'), table(['Taken', 'Size', 'Id', ''],
    [...d.snapshots].reverse().map((s) => h('tr', { 'data-snapshot': s.id },
      h('td', { class: 'text-nowrap small' }, when(s.created), h('div', { class: 'text-body-secondary' }, s.reason)),
      h('td', { class: 'text-nowrap small' }, bytes(s.bytes),
        s.volumes?.length ? h('div', { class: 'text-body-secondary' }, `with ${s.volumes.join(', ')}`) : null),
      h('td', { class: 'font-monospace small' }, s.id),
      h('td', { class: 'text-end' }, restoreButton('snapshot', s.id)))),
    'No snapshots.'));
  fill($('archives'), table(['Written', 'Size', 'Id', ''],
    [...d.archives].reverse().map((a) => h('tr', { 'data-archive': a.id },
      h('td', { class: 'text-nowrap small' }, when(a.modified)),
      h('td', { class: 'text-nowrap small' }, bytes(a.bytes)),
      h('td', { class: 'font-monospace small', title: a.path }, a.id),
      h('td', { class: 'text-end text-nowrap' },
        h('a', {
          class: 'btn btn-outline-secondary btn-sm me-1', 'data-download': a.id, download: '',
          href: `${base()}/archives/${encodeURIComponent(a.id)}/download`,
        }, 'Download'),
        restoreButton('archive', a.id)))),
    'No archives.'));
}

export async function loadBackups() {
  render(await api('GET', `${base()}/backups`));
}

function say(ok, message, help) {
  fill($('backup-result'), h('div', { class: `alert alert-${ok ? 'success' : 'danger'} py-2 small`, role: 'status' },
    message, help ? h('div', { class: 'mt-1' }, help) : null));
}

function setBusy(on) {
  busy = on;
  for (const b of document.querySelectorAll('#backups-card button')) {
    b.disabled = on || Boolean($('backups-card').dataset.refused);
  }
}

/// Runs a job (POST `path` with `body`) and follows it in the card.
async function job(path, body) {
  setBusy(true);
  try {
    const { job: id } = await api('POST', path, body);
    const box = h('div', { class: 'small mb-2', id: 'backup-progress' });
    fill($('backup-result'), box);
    await new Promise((resolve) => {
      follow(id, box, (ok, event) => {
        box.append(h('div', { class: `alert alert-${ok ? 'success' : 'danger'} py-2 small mt-2 mb-0`, role: 'status' }, event.message));
        resolve();
      }, { quiet: true });
    });
    return true;
  } catch (e) {
    say(false, e.message, e.data?.help);
    return e;
  } finally {
    setBusy(false);
    await loadBackups().catch(() => {});
  }
}

function previewBox(kind, id, p) {
  const space = p.space.needed === null
    ? `needs the archive's uncompressed size (checked when it is verified); ${p.space.free === null ? 'free space unknown' : `${bytes(p.space.free)} free`} at ${p.space.at}`
    : `needs ${bytes(p.space.needed)}; ${p.space.free === null ? 'free space unknown' : `${bytes(p.space.free)} free`} at ${p.space.at}`;
  const go = h('button', { class: 'btn btn-warning btn-sm', type: 'button', id: 'restore-go', disabled: p.blocked.length > 0 || undefined },
    `Restore ${kind} ${id}`);
  const cancel = h('button', { class: 'btn btn-outline-secondary btn-sm', type: 'button', id: 'restore-cancel' }, 'Cancel');
  cancel.addEventListener('click', () => fill($('restore-preview')));
  go.addEventListener('click', async () => {
    fill($('restore-preview'));
    const answer = await job(`${base()}/${kind}s/${encodeURIComponent(id)}/restore`, { key: p.key });
    if (answer instanceof Error && answer.status === 409) {
      // Stale or blocked: show what it would do now.
      await preview(kind, id, answer.message);
    }
    document.dispatchEvent(new CustomEvent('ctm:state'));
  });
  return h('div', { class: 'border rounded p-2 mb-3', id: 'restore-plan', 'data-key': p.key },
    h('h3', { class: 'h6' }, `Restore ${kind} ${id} into container ${p.container}`),
    h('ol', { class: 'small mb-2', id: 'restore-steps' }, p.steps.map((s) => h('li', {}, s))),
    h('div', { class: 'small mb-1' }, h('span', { class: 'fw-semibold' }, 'Kept: '), p.kept, ` (${bytes(p.kept_bytes)})`),
    h('div', { class: 'small mb-2' }, h('span', { class: 'fw-semibold' }, 'Space: '), space),
    p.blocked.length
      ? h('div', { class: 'alert alert-danger py-2 small', id: 'restore-blocked' }, 'It cannot be done now:',
        h('ul', { class: 'mb-0' }, p.blocked.map((b) => h('li', {}, b))))
      : null,
    h('div', { class: 'd-flex gap-2' }, go, cancel));
}

/// Shows what restoring `kind` `id` does, with its Restore button.
async function preview(kind, id, note) {
  try {
    const p = await api('GET', `${base()}/${kind}s/${encodeURIComponent(id)}/restore`);
    fill($('restore-preview'),
      note ? h('div', { class: 'alert alert-warning py-2 small' }, note) : null,
      previewBox(kind, id, p));
  } catch (e) {
    say(false, e.message, e.data?.help);
  }
}

export function backups(container) {
  name = container;
  const card = $('backups-card');
  if (!card) return;
  $('snapshot-now').addEventListener('click', () => job(`${base()}/snapshot`));
  $('backup-now').addEventListener('click', () => job(`${base()}/backup`));
  if (card.dataset.refused) {
    for (const b of card.querySelectorAll('button')) { b.disabled = true; b.title = card.dataset.refused; }
  }
  loadBackups().catch((e) => say(false, e.message, e.data?.help));
}
