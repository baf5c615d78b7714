// The apply page: the plan of the saved host file, a confirmation, then
// the apply's progress as it happens.
import { api } from './api.js';
import { h, $, fill, alert, showError } from './dom.js';
import { renderPlan } from './plan.js';
import { follow } from './jobs.js';

async function loadPlan() {
  const button = $('apply-button');
  button.disabled = true;
  const box = $('plan');
  try {
    const answer = await api('POST', '/api/plan', {});
    if (!answer.plan) {
      const n = answer.check.diagnostics.length;
      fill(box, h('div', { class: 'alert alert-danger mb-0' },
        `The saved host file has ${n} problem${n === 1 ? '' : 's'}. `,
        h('a', { href: '/editor' }, 'Fix them in the editor'), '.'));
      return null;
    }
    fill(box, renderPlan(answer.plan));
    const p = answer.plan;
    const refused = button.dataset.refused;
    button.disabled = Boolean(refused) || p.conflicts.length > 0 || (p.unsupported_links ?? []).length > 0
      || (p.files.length === 0 && p.actions.length === 0);
    if (refused) box.prepend(h('div', { class: 'alert alert-secondary small', id: 'apply-refused' }, refused));
    return answer.plan;
  } catch (e) {
    fill(box, h('div', { class: 'alert alert-warning mb-0' }, e.message));
    return null;
  }
}

export async function applyPage() {
  let plan = await loadPlan();
  $('apply-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!plan) return;
    const button = $('apply-button');
    button.disabled = true;
    const timeout = $('confirm-timeout').value.trim();
    try {
      const { job } = await api('POST', '/api/apply', {
        fingerprint: plan.fingerprint,
        confirm_timeout: timeout ? Number(timeout) : null,
        git_commit: $('git-commit').checked,
      });
      follow(job, $('progress'), async () => { plan = await loadPlan(); });
    } catch (err) {
      showError(err);
      plan = await loadPlan();
    }
  });
}
