// On every page: while an apply waits for its confirmation, a banner with
// the time left and a Confirm button; at the deadline the page asks the
// server again, and says so plainly if the host went back. Pages that show
// the host's state listen for `ctm:state` to refresh themselves.
import { api } from './api.js';
import { h, $, fill, showError } from './dom.js';

const POLL_MS = 5000;
let timer = null;
let poll = null;

function left(deadline) {
  const s = Math.max(0, Math.round(deadline - Date.now() / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function changed() {
  document.dispatchEvent(new CustomEvent('ctm:state'));
}

async function confirmIt(generation, button) {
  button.disabled = true;
  try {
    await api('POST', '/api/confirm', { generation });
  } catch (err) {
    showError(err);
  }
  await refresh();
  changed();
}

function render(answer) {
  const box = $('confirm-banner');
  if (!box) return;
  clearInterval(timer);
  const pending = answer.pending_confirm;
  if (pending) {
    const clock = h('strong', { class: 'countdown font-monospace' }, left(pending.deadline));
    const back = pending.previous ?? 'none';
    fill(box, h('div', { class: 'alert alert-warning d-flex flex-wrap align-items-center gap-2', role: 'status' },
      h('span', { class: 'flex-grow-1' }, `Generation ${pending.generation} is waiting for confirmation: `, clock,
        ` left, then the host returns to generation ${back}.`),
      h('button', {
        class: 'btn btn-warning btn-sm', type: 'button', id: 'confirm-pending',
        onclick: (e) => confirmIt(pending.generation, e.currentTarget),
      }, 'Confirm')));
    timer = setInterval(() => {
      clock.textContent = left(pending.deadline);
      if (Date.now() / 1000 >= pending.deadline + 1) {
        clearInterval(timer);
        clock.textContent = 'no time';
        // The deadline passed: see what became of it.
        refresh().then(changed, () => {});
      }
    }, 1000);
    return;
  }
  const newest = answer.generations[0];
  if (newest && newest.reverted && !newest.current) {
    const at = new Date(newest.reverted.at * 1000).toISOString().replace('.000Z', 'Z');
    fill(box, h('div', { class: 'alert alert-danger', role: 'status', id: 'reverted-note' },
      `Generation ${newest.generation.number} was rolled back at ${at} for want of a confirmation; `
      + `the host is on generation ${answer.current ?? 'none'}.`));
    return;
  }
  fill(box);
}

export async function refresh() {
  render(await api('GET', '/api/generations'));
}

export function watchConfirmation() {
  refresh().catch(() => {});
  clearInterval(poll);
  poll = setInterval(() => refresh().catch(() => {}), POLL_MS);
  document.addEventListener('ctm:confirm-waiting', () => refresh().catch(() => {}));
}
