// Generations: the list, the diff between two, and a rollback that shows
// its plan before it does anything.
import { api } from './api.js';
import { h, $, fill, showError, diffBlock } from './dom.js';
import { renderPlan } from './plan.js';
import { filterRows } from './filter.js';
import { follow } from './jobs.js';

async function showRollback(n) {
  const box = $('rollback');
  fill(box, h('p', { class: 'text-body-secondary' }, 'Planning…'));
  const { plan } = await api('GET', `/api/rollback/${n}`);
  const go = h('button', { class: 'btn btn-danger btn-sm', type: 'button', id: 'rollback-go' }, `Roll back to generation ${n}`);
  go.disabled = plan.conflicts.length > 0;
  go.addEventListener('click', async () => {
    go.disabled = true;
    try {
      const { job } = await api('POST', '/api/rollback', { generation: n, fingerprint: plan.fingerprint });
      follow(job, $('progress'), () => list());
    } catch (e) {
      showError(e);
      go.disabled = false;
    }
  });
  fill(box, h('p', { class: 'fw-semibold' }, `The plan of returning to generation ${n}:`), renderPlan(plan), go);
  box.scrollIntoView({ behavior: 'smooth' });
}

async function list() {
  const answer = await api('GET', '/api/generations');
  const rows = answer.generations.map(({ generation: g, current, reverted }) => h('tr', {},
    h('td', { class: 'fw-semibold' }, String(g.number),
      current ? h('span', { class: 'badge text-bg-primary ms-2' }, 'current') : null,
      reverted ? h('span', {
        class: 'badge text-bg-danger ms-2 reverted',
        title: `rolled back at ${new Date(reverted.at * 1000).toISOString()} for want of a confirmation`,
      }, 'rolled back: not confirmed') : null),
    h('td', { class: 'text-nowrap small' }, g.created),
    h('td', { class: 'small' }, g.source_name),
    h('td', { class: 'font-monospace small' }, g.source_sha256.slice(0, 12)),
    h('td', { class: 'small' }, g.summary),
    h('td', { class: 'text-end' }, current ? null : h('button', {
      class: 'btn btn-outline-danger btn-sm text-nowrap',
      type: 'button',
      'data-rollback': g.number,
      onclick: () => showRollback(g.number).catch(showError),
    }, 'Roll back…'))));
  const search = h('input', {
    class: 'form-control form-control-sm mb-2', type: 'search', id: 'generations-filter',
    placeholder: 'Search by number, date, summary…', 'aria-label': 'Search the generations',
    value: $('generations-filter')?.value ?? '',
    oninput: (e) => filterRows(rows, e.currentTarget.value, () => true),
  });
  fill($('generations'), rows.length
    ? [search, h('div', { class: 'table-responsive' }, h('table', { class: 'table table-sm align-middle mb-0' },
      h('thead', {}, h('tr', {}, ['Generation', 'Created', 'Source', 'SHA-256', 'Summary', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)))]
    : h('p', { class: 'text-body-secondary mb-0' }, 'No generations yet: nothing has been applied to this root.'));
  filterRows(rows, search.value, () => true);
  const numbers = answer.generations.map((x) => x.generation.number).reverse();
  for (const [id, pick] of [['diff-a', numbers.at(-2) ?? numbers[0]], ['diff-b', numbers.at(-1)]]) {
    fill($(id), numbers.map((n) => h('option', { value: n, selected: n === pick }, String(n))));
  }
}

export async function generations() {
  await list();
  document.addEventListener('ctm:state', () => list().catch(showError));
  $('diff-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const a = $('diff-a').value;
    const b = $('diff-b').value;
    if (!a || !b) return;
    try {
      const answer = await api('GET', `/api/generations/${a}/diff/${b}`);
      fill($('diff'), answer.files.length
        ? answer.files.map((f) => h('details', { class: 'mb-1', open: answer.files.length === 1 },
          h('summary', { class: 'small' }, h('code', {}, f.path)), diffBlock(f.diff)))
        : h('p', { class: 'text-body-secondary mb-0' }, `Generations ${a} and ${b} have the same files.`));
    } catch (err) {
      showError(err);
    }
  });
}
